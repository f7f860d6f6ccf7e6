"""Label sets of kind `spans` over the API: creating one, adding span examples (every bad span
refused with a JSON pointer, nothing stored), the review threshold, training refused for a type
nobody marked, and the labeling loop's routes refused for spans sets with a clear 422. Results
and exports are tested where a worker writes them (tests/workers/test_span_tasks.py,
tests/e2e/test_spans.py)."""
from __future__ import annotations

import pytest

from store.models import Example, LabelSet

TEXT = "Alice Martin joined Google in Paris."
ZH = "张伟在北京的华为公司工作。"


@pytest.fixture
def spans_set(client, auth):
    response = client.post("/v1/label-sets", headers=auth, json={
        "name": "entities", "kind": "spans", "labels": [{"name": "PER"}, {"name": "ORG"}, {"name": "LOC"}]})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def post_examples(client, auth, label_set_id, examples):
    return client.post(f"/v1/label-sets/{label_set_id}/examples", headers=auth, json={"examples": examples})


def test_a_spans_set_is_created_with_its_kind_and_review_threshold(client, auth, spans_set):
    assert (spans_set["kind"], spans_set["multi_label"], spans_set["span_review_threshold"]) == ("spans", False, 0.5)
    got = client.get(f"/v1/label-sets/{spans_set['id']}", headers=auth).get_json()
    assert got["kind"] == "spans"
    classification = client.post("/v1/label-sets", headers=auth, json={
        "name": "topics", "labels": [{"name": "a"}, {"name": "b"}]}).get_json()
    assert (classification["kind"], classification["span_review_threshold"]) == ("classification", None)
    # one entity type is enough for spans; a classification set still needs two labels
    one = client.post("/v1/label-sets", headers=auth, json={"name": "people", "kind": "spans",
                                                           "labels": [{"name": "PER"}]})
    assert one.status_code == 201 and one.get_json()["labels"] == [{"name": "PER", "description": None}]
    refused = client.post("/v1/label-sets", headers=auth, json={"name": "x", "labels": [{"name": "a"}]})
    assert refused.status_code == 422 and refused.get_json()["error"]["code"] == "too_few_labels"


@pytest.mark.parametrize(("body", "pointer", "code"), [
    ({"kind": "spans", "multi_label": True}, "/multi_label", "spans_not_multi_label"),
    ({"kind": "spans", "review_precision": 0.9}, "/review_precision", "not_for_spans"),
    ({"kind": "tokens"}, "/kind", None),
])
def test_a_spans_set_with_options_that_do_not_apply_is_refused(client, auth, db, body, pointer, code):
    response = client.post("/v1/label-sets", headers=auth, json={"name": "bad", "labels": [{"name": "PER"}], **body})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert pointer in [d.get("pointer") for d in error["details"]], error
    if code:
        assert error["code"] == code
    with db() as session:
        assert session.query(LabelSet).count() == 0


def test_span_examples_are_stored_with_their_types_english_and_chinese(client, auth, db, spans_set):
    response = post_examples(client, auth, spans_set["id"], [
        {"text": TEXT, "spans": [{"start": 30, "end": 35, "label": "LOC"}, {"start": 0, "end": 12, "label": "PER"},
                                 {"start": 20, "end": 26, "label": "ORG", "text": "Google"}]},
        {"text": ZH, "spans": [{"start": 0, "end": 2, "label": "PER"}, {"start": 3, "end": 5, "label": "LOC"},
                               {"start": 6, "end": 10, "label": "ORG"}]},
        {"text": "Nothing to see here.", "spans": []},
        {"text": TEXT, "spans": []},  # the same text again: a duplicate, its first spans stay
    ])
    assert response.status_code == 201, response.get_json()
    assert (response.get_json()["added"], response.get_json()["duplicates"]) == (3, 1)
    with db() as session:
        rows = {e.text: e for e in session.query(Example).all()}
    assert rows[TEXT].spans == [{"start": 0, "end": 12, "label": "PER"}, {"start": 20, "end": 26, "label": "ORG"},
                                {"start": 30, "end": 35, "label": "LOC"}]  # in text order, the extra key dropped
    assert rows[TEXT].labels == ["PER", "ORG", "LOC"]
    assert [ZH[s["start"]:s["end"]] for s in rows[ZH].spans] == ["张伟", "北京", "华为公司"]
    assert (rows["Nothing to see here."].spans, rows["Nothing to see here."].labels) == ([], [])
    assert client.get(f"/v1/label-sets/{spans_set['id']}", headers=auth).get_json()["example_count"] == 3


@pytest.mark.parametrize(("example", "pointer", "says"), [
    ({"text": TEXT, "spans": [{"start": 30, "end": 99, "label": "LOC"}]}, "/examples/1/spans/0/end", "past the end"),
    ({"text": TEXT, "spans": [{"start": 5, "end": 5, "label": "LOC"}]}, "/examples/1/spans/0/end", "greater than"),
    ({"text": TEXT, "spans": [{"start": 0, "end": 12, "label": "PER"}, {"start": 6, "end": 19, "label": "PER"}]},
     "/examples/1/spans/1", "overlaps span 0"),
    ({"text": TEXT, "spans": [{"start": 0, "end": 5, "label": "PRODUCT"}]}, "/examples/1/spans/0/label",
     "unknown label 'PRODUCT'"),
    ({"text": TEXT, "spans": [{"start": -1, "end": 5, "label": "PER"}]}, "/examples/1/spans/0/start", None),
    ({"text": TEXT, "spans": [{"start": "0", "end": 5, "label": "PER"}]}, "/examples/1/spans/0/start", None),
    ({"text": TEXT, "spans": [{"start": 0, "label": "PER"}]}, "/examples/1/spans/0/end", None),
    ({"text": TEXT, "label": "PER"}, "/examples/1/spans", "needs `spans`"),
    ({"text": TEXT, "label": "PER", "spans": []}, "/examples/1", "exactly one of"),
    ({"text": ZH, "spans": [{"start": 6, "end": 14, "label": "ORG"}]}, "/examples/1/spans/0/end", "13 characters"),
])
def test_a_bad_span_is_refused_with_its_pointer_and_nothing_is_stored(client, auth, db, spans_set, example, pointer,
                                                                       says):
    good = {"text": "Bob Chen flew to Tokyo.", "spans": [{"start": 0, "end": 8, "label": "PER"}]}
    response = post_examples(client, auth, spans_set["id"], [good, example])
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    details = [d for d in error["details"] if d.get("pointer") == pointer]
    assert details, error
    if says:
        assert says in details[0]["message"] or says in error["message"], error
    with db() as session:
        assert session.query(Example).count() == 0


def test_spans_sent_to_a_classification_set_are_refused(client, auth, db, make_label_set):
    label_set = make_label_set()
    response = post_examples(client, auth, label_set["id"], [
        {"text": "where is my parcel", "label": "delivery"},
        {"text": TEXT, "spans": [{"start": 0, "end": 12, "label": "billing"}]}])
    assert response.status_code == 422
    detail = response.get_json()["error"]["details"]
    assert detail[0]["pointer"] == "/examples/1/spans" and "classification" in detail[0]["message"]
    with db() as session:
        assert session.query(Example).count() == 0


def test_training_is_refused_naming_a_type_nobody_marked(client, auth, spans_set):
    post_examples(client, auth, spans_set["id"], [
        {"text": TEXT, "spans": [{"start": 0, "end": 12, "label": "PER"}, {"start": 30, "end": 35, "label": "LOC"}]}])
    response = client.post(f"/v1/label-sets/{spans_set['id']}/train", headers=auth, json={})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "too_few_examples" and "'ORG' has 0" in error["message"]


def test_the_span_review_threshold_changes_for_spans_sets_only(client, auth, spans_set, make_label_set):
    response = client.patch(f"/v1/label-sets/{spans_set['id']}", headers=auth, json={"span_review_threshold": 0.8})
    assert response.status_code == 200 and response.get_json()["span_review_threshold"] == 0.8
    for bad in (0, 1, 1.5, "high"):
        response = client.patch(f"/v1/label-sets/{spans_set['id']}", headers=auth, json={"span_review_threshold": bad})
        assert response.status_code == 422
    classification = make_label_set()
    response = client.patch(f"/v1/label-sets/{classification['id']}", headers=auth,
                            json={"span_review_threshold": 0.8})
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "not_a_spans_label_set"


def test_the_loop_routes_say_they_are_for_classification(client, auth, spans_set, add_adapter, db):
    add_adapter(spans_set["id"])
    job = client.post("/v1/jobs", headers=auth, json={"label_set_id": spans_set["id"],
                                                      "items": [{"id": "a", "text": TEXT}]}).get_json()
    for path, body in (("suggest", {"job_id": job["id"], "n": 1}), ("audit", {})):
        response = client.post(f"/v1/label-sets/{spans_set['id']}/{path}", headers=auth, json=body)
        assert response.status_code == 422, response.get_json()
        error = response.get_json()["error"]
        assert error["code"] == "not_for_spans" and "classification label sets" in error["message"]


# --- results and exports of a spans set (rows as a worker writes them) ----------------------------

EMOJI = "🙂 Bob Chen flew to Tokyo."


@pytest.fixture
def spans_job(client, auth, db, spans_set, add_adapter, clean_redis):
    from store.models import Result

    add_adapter(spans_set["id"])
    items = [{"id": "en", "text": TEXT}, {"id": "zh", "text": ZH}, {"id": "emoji", "text": EMOJI},
             {"id": "none", "text": "Nothing here."}]
    job = client.post("/v1/jobs", headers=auth, json={"label_set_id": spans_set["id"], "items": items}).get_json()
    found = {"en": [(0, 12, "PER", 0.91), (30, 35, "LOC", 0.72)], "zh": [(0, 2, "PER", 0.97), (6, 10, "ORG", 0.64)],
             "emoji": [(2, 10, "PER", 0.88)], "none": []}
    with db() as session:
        for position, item in enumerate(items):
            spans = [{"start": s, "end": e, "label": label, "text": item["text"][s:e], "score": score}
                     for s, e, label, score in found[item["id"]]]
            labels = [t for t in ("PER", "ORG", "LOC") if t in {x["label"] for x in spans}]
            session.add(Result(job_id=job["id"], position=position, item_id=item["id"], labels=labels,
                               scores={}, spans=spans, needs_review=position == 1, adapter_version=1,
                               confidence=min([x["score"] for x in spans], default=0.99)))
    return {"job": job, "items": items, "found": found}


def test_results_of_a_spans_job_carry_the_spans(client, auth, spans_job):
    results = client.get(f"/v1/jobs/{spans_job['job']['id']}/results", headers=auth).get_json()["results"]
    by_id = {r["item_id"]: r for r in results}
    assert [s["text"] for s in by_id["zh"]["spans"]] == ["张伟", "华为公司"]
    assert by_id["zh"]["labels"] == ["PER", "ORG"] and by_id["zh"]["needs_review"] is True
    assert by_id["none"]["spans"] == [] and by_id["emoji"]["spans"][0]["text"] == "Bob Chen"


def test_a_spans_job_exports_one_csv_row_per_span_and_reads_back(client, auth, db, spans_job, spans_set):
    import csv
    import io

    response = client.get(f"/v1/jobs/{spans_job['job']['id']}/results?format=csv", headers=auth)
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [(r["item_id"], r["span_text"], r["label"]) for r in rows] == [
        ("en", "Alice Martin", "PER"), ("en", "Paris", "LOC"), ("zh", "张伟", "PER"), ("zh", "华为公司", "ORG"),
        ("emoji", "Bob Chen", "PER"), ("none", "", "")]
    # the export is an upload: the spans come back as examples, character offsets intact
    back = client.post(f"/v1/label-sets/{spans_set['id']}/examples?format=csv", headers=auth,
                       data=response.get_data(), content_type="text/csv")
    assert back.status_code == 201, back.get_json()
    with db() as session:
        stored = {e.text: e.spans for e in session.query(Example).all()}
    assert [EMOJI[s["start"]:s["end"]] for s in stored[EMOJI]] == ["Bob Chen"] and stored["Nothing here."] == []


def test_a_spans_job_exports_label_studio_doccano_and_conll(client, auth, spans_job):
    job_id = spans_job["job"]["id"]
    tasks = client.get(f"/v1/jobs/{job_id}/results?format=label_studio&label_field=ner", headers=auth).get_json()
    emoji = next(t for t in tasks if t["data"]["text"] == EMOJI)
    [region] = emoji["predictions"][0]["result"]
    # Label Studio counts UTF-16 units: the emoji before the span is two of them
    assert (region["type"], region["from_name"], region["value"]["start"], region["value"]["end"],
            region["value"]["labels"]) == ("labels", "ner", 3, 11, ["PER"])
    lines = client.get(f"/v1/jobs/{job_id}/results?format=doccano", headers=auth).get_data(as_text=True).splitlines()
    import json
    assert json.loads(lines[1])["label"] == [[0, 2, "PER"], [6, 10, "ORG"]]
    conll = [json.loads(line) for line in
             client.get(f"/v1/jobs/{job_id}/results?format=conll", headers=auth).get_data(as_text=True).splitlines()]
    assert conll[0]["tokens"][:2] == ["Alice", "Martin"] and conll[0]["tags"][:3] == ["B-PER", "I-PER", "O"]


def test_formats_that_cannot_carry_spans_are_refused_by_name(client, auth, spans_job, make_label_set, add_adapter):
    for name in ("argilla", "label_studio_min", "label_studio_csv"):
        response = client.get(f"/v1/jobs/{spans_job['job']['id']}/results?format={name}", headers=auth)
        assert response.status_code == 422 and response.get_json()["error"]["code"] == "format_not_for_spans"
    classification = make_label_set(name="topics2")
    add_adapter(classification["id"])
    job = client.post("/v1/jobs", headers=auth, json={"label_set_id": classification["id"],
                                                      "items": [{"id": "a", "text": "hello"}]}).get_json()
    response = client.get(f"/v1/jobs/{job['id']}/results?format=conll", headers=auth)
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "format_only_for_spans"


def test_the_review_queue_lists_unsure_span_results_and_a_review_with_labels_is_refused(client, auth, spans_job):
    job_id = spans_job["job"]["id"]
    queue = client.get(f"/v1/jobs/{job_id}/review", headers=auth).get_json()
    assert [item["item_id"] for item in queue["items"]] == ["zh"]
    assert [s["text"] for s in queue["items"][0]["spans"]] == ["张伟", "华为公司"] and queue["items"][0]["text"] == ZH
    response = client.post(f"/v1/jobs/{job_id}/items/zh/review", headers=auth, json={"label": "PER"})
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "not_for_spans"
    assert "add the corrected spans as an example" in response.get_json()["error"]["message"]
