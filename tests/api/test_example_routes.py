"""POST /v1/label-sets/{id}/examples in JSON, JSONL and CSV; dedup; all-or-nothing rejection."""
import json

from store.models import Example


def examples_url(ls):
    return f"/v1/label-sets/{ls['id']}/examples"


def stored(db, ls_id):
    from sqlalchemy import select

    with db() as session:
        return {e.text: e.labels for e in session.scalars(select(Example).where(Example.label_set_id == ls_id))}


def test_json_examples_are_added_and_duplicates_counted(client, auth, make_label_set, db):
    ls = make_label_set()
    rows = [{"text": "refund please", "label": "billing"}, {"text": "where is my parcel", "label": "delivery"},
            {"text": "refund please", "label": "other"}]
    response = client.post(examples_url(ls), headers=auth, json={"examples": rows})
    assert response.status_code == 201
    assert response.get_json() == {"added": 2, "duplicates": 1, "rejected": [], "train_job_id": None}
    again = client.post(examples_url(ls), headers=auth, json={"examples": rows[:1]})
    assert again.get_json() == {"added": 0, "duplicates": 1, "rejected": [], "train_job_id": None}
    assert stored(db, ls["id"]) == {"refund please": ["billing"], "where is my parcel": ["delivery"]}
    assert client.get(f"/v1/label-sets/{ls['id']}", headers=auth).get_json()["example_count"] == 2


def test_multi_label_examples_take_label_lists(client, auth, make_label_set, db):
    ls = make_label_set(multi_label=True)
    response = client.post(examples_url(ls), headers=auth, json={"examples": [
        {"text": "late and overcharged", "labels": ["billing", "delivery"]}, {"text": "hi", "labels": []}]})
    assert response.status_code == 201 and response.get_json()["added"] == 2
    assert stored(db, ls["id"]) == {"late and overcharged": ["billing", "delivery"], "hi": []}


def test_jsonl_examples_by_content_type(client, auth, make_label_set, db):
    ls = make_label_set()
    body = "\n".join(json.dumps(r) for r in [{"text": "a", "label": "billing", "source": "ignored"},
                                             {"text": "b", "label": "other"}]) + "\n\n"
    response = client.post(examples_url(ls), headers={**auth, "Content-Type": "application/x-ndjson"}, data=body)
    assert response.status_code == 201 and response.get_json()["added"] == 2
    assert stored(db, ls["id"]) == {"a": ["billing"], "b": ["other"]}


def test_csv_examples_by_format_parameter(client, auth, make_label_set, db):
    ls = make_label_set(multi_label=True)
    body = 'text,labels\n"late, and overcharged",billing|delivery\nhello,"[""other""]"\n'
    response = client.post(examples_url(ls) + "?format=csv", headers=auth, data=body)
    assert response.status_code == 201, response.get_json()
    assert stored(db, ls["id"]) == {"late, and overcharged": ["billing", "delivery"], "hello": ["other"]}


def test_csv_single_label_by_content_type(client, auth, make_label_set, db):
    ls = make_label_set()
    response = client.post(examples_url(ls), headers={**auth, "Content-Type": "text/csv"},
                           data="\ufefftext,label\nrefund,billing\n")
    assert response.status_code == 201
    assert stored(db, ls["id"]) == {"refund": ["billing"]}


def test_unknown_label_is_rejected_with_its_name(client, auth, make_label_set, count_rows):
    ls = make_label_set()
    rows = [{"text": "ok", "label": "billing"}, {"text": "bad", "label": "shipping"}, {"text": "ok2", "label": "other"},
            {"text": "bad2", "label": "refunds"}]
    response = client.post(examples_url(ls), headers=auth, json={"examples": rows})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "invalid_examples"
    assert "'shipping'" in error["message"] and "'refunds'" in error["message"]
    assert [d["pointer"] for d in error["details"]] == ["/examples/1/label", "/examples/3/label"]
    assert count_rows(Example) == 0  # the valid rows were not stored either


def test_unknown_label_in_a_multi_label_row_points_at_it(client, auth, make_label_set, count_rows):
    ls = make_label_set(multi_label=True)
    response = client.post(examples_url(ls), headers=auth,
                           json={"examples": [{"text": "x", "labels": ["billing", "nope"]}]})
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["pointer"] == "/examples/0/labels/1"
    assert count_rows(Example) == 0


def test_two_labels_in_a_single_label_set_are_rejected(client, auth, make_label_set, count_rows):
    ls = make_label_set()
    response = client.post(examples_url(ls), headers=auth,
                           json={"examples": [{"text": "x", "labels": ["billing", "other"]}]})
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["pointer"] == "/examples/0/label"
    assert count_rows(Example) == 0


def test_empty_example_text_is_rejected(client, auth, make_label_set, count_rows):
    ls = make_label_set()
    response = client.post(examples_url(ls), headers=auth, json={"examples": [{"text": "ok", "label": "billing"},
                                                                             {"text": "  ", "label": "billing"}]})
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["pointer"] == "/examples/1/text"
    assert count_rows(Example) == 0


def test_oversized_example_text_is_rejected_with_the_limit(make_app, auth, make_label_set, count_rows):
    client = make_app(max_text_chars=50).test_client()
    ls = make_label_set()
    response = client.post(examples_url(ls), headers=auth, json={"examples": [{"text": "x" * 51, "label": "billing"}]})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["details"][0]["pointer"] == "/examples/0/text" and "limit is 50" in error["message"]
    assert count_rows(Example) == 0


def test_too_many_examples_in_one_request_is_refused(make_app, auth, make_label_set, count_rows):
    client = make_app(max_examples_per_request=3).test_client()
    ls = make_label_set()
    rows = [{"text": f"t{i}", "label": "billing"} for i in range(4)]
    response = client.post(examples_url(ls), headers=auth, json={"examples": rows})
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_many_examples"
    assert "limit is 3" in response.get_json()["error"]["message"]
    assert count_rows(Example) == 0


def test_example_needs_label_or_labels(client, auth, make_label_set, count_rows):
    ls = make_label_set()
    response = client.post(examples_url(ls), headers=auth, json={"examples": [{"text": "x"}]})
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["pointer"] == "/examples/0"
    assert count_rows(Example) == 0


def test_malformed_jsonl_line_is_a_400_naming_the_line(client, auth, make_label_set, count_rows):
    ls = make_label_set()
    body = '{"text": "a", "label": "billing"}\n{"text": "b", "label"\n'
    response = client.post(examples_url(ls) + "?format=jsonl", headers=auth, data=body)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "malformed_jsonl" \
        and "line 2" in response.get_json()["error"]["message"]
    assert count_rows(Example) == 0


def test_csv_without_a_label_column_is_rejected(client, auth, make_label_set):
    ls = make_label_set()
    response = client.post(examples_url(ls) + "?format=csv", headers=auth, data="text,tag\na,billing\n")
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "invalid_csv"


def test_an_unknown_format_is_unsupported(client, auth, make_label_set):
    ls = make_label_set()
    response = client.post(examples_url(ls) + "?format=xml", headers=auth, data="<examples/>")
    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_format"


def test_a_whole_upload_of_bad_rows_lists_at_most_100_and_counts_all(client, auth, make_label_set, count_rows):
    ls = make_label_set()
    rows = [{"text": f"t{i}", "label": "nope"} for i in range(500)]
    error = client.post(examples_url(ls), headers=auth, json={"examples": rows}).get_json()["error"]
    assert error["message"].startswith("500 problem(s)") and len(error["details"]) == 100
    assert count_rows(Example) == 0


def test_jsonl_texts_may_hold_unicode_line_separators(client, auth, make_label_set, db):
    ls = make_label_set()
    body = json.dumps({"text": "one\u2028two\x85three", "label": "other"}, ensure_ascii=False) + "\r\n"
    response = client.post(examples_url(ls) + "?format=jsonl", headers=auth, data=body.encode("utf-8"))
    assert response.status_code == 201, response.get_json()
    assert stored(db, ls["id"]) == {"one\u2028two\x85three": ["other"]}
