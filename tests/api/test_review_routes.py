"""Review: a tag job's queue of results that need a person, and accepting or correcting one
(GET /v1/jobs/{id}/review, POST /v1/jobs/{id}/items/{item_id}/review), the label set's
`review_precision`, and the job's coverage. Results are arranged in the database as a tag worker
writes them (tests/workers and tests/e2e run the model)."""
from __future__ import annotations

import pytest

from store import jobs as _jobs  # noqa: F401  (store.jobs and store.results import each other; jobs first)
from store import results
from store.models import Example, Job, Result
from store.results import ResultRow

TEXTS = {
    "a": ("I was charged twice for one order", ["billing"], 0.55, 0.10, True),
    "b": ("where is my parcel", ["delivery"], 0.97, 0.90, False),
    "c": ("refund the fee please", ["billing"], 0.40, 0.05, True),
    "d": ("the box arrived crushed", ["delivery"], 0.62, 0.02, True),
    "e": ("hello", ["other"], 0.99, 0.95, False),
}


@pytest.fixture
def tagged_job(client, auth, make_label_set, add_adapter, clean_redis, db):
    """A tag job of five items, every one with a result; three need review."""
    label_set = make_label_set()
    add_adapter(label_set["id"])
    response = client.post("/v1/jobs", headers=auth, json={
        "label_set_id": label_set["id"], "items": [{"id": k, "text": v[0]} for k, v in TEXTS.items()]})
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    with db() as session:
        results.insert_new(session, job["id"], [
            ResultRow(position, item_id, labels, {labels[0]: confidence}, needs, 1, confidence=confidence,
                      margin=margin)
            for position, (item_id, (_text, labels, confidence, margin, needs)) in enumerate(TEXTS.items())])
        session.get(Job, job["id"]).done = len(TEXTS)
    return {"job": job, "label_set": label_set}


def test_the_queue_lists_only_results_that_need_review_least_confident_first_with_their_text(client, auth,
                                                                                             tagged_job):
    body = client.get(f"/v1/jobs/{tagged_job['job']['id']}/review", headers=auth).get_json()
    assert [item["item_id"] for item in body["items"]] == ["c", "a", "d"]
    assert body["items"][0]["text"] == "refund the fee please"
    assert body["items"][0]["confidence"] == pytest.approx(0.40)
    assert body["remaining"] == 3 and body["next_cursor"] is None


def test_disagreement_order_puts_the_smallest_margin_first(client, auth, tagged_job):
    body = client.get(f"/v1/jobs/{tagged_job['job']['id']}/review?order=disagreement", headers=auth).get_json()
    assert [item["item_id"] for item in body["items"]] == ["d", "c", "a"]


def test_the_queue_pages_with_a_cursor_and_reviewed_items_leave_it_without_shifting_pages(client, auth, tagged_job):
    job_id = tagged_job["job"]["id"]
    first = client.get(f"/v1/jobs/{job_id}/review?limit=1", headers=auth).get_json()
    assert [i["item_id"] for i in first["items"]] == ["c"] and first["next_cursor"]
    assert client.post(f"/v1/jobs/{job_id}/items/c/review", headers=auth, json={"label": "billing"}).status_code == 200
    second = client.get(f"/v1/jobs/{job_id}/review?limit=1&cursor={first['next_cursor']}", headers=auth).get_json()
    assert [i["item_id"] for i in second["items"]] == ["a"]
    assert second["remaining"] == 2
    third = client.get(f"/v1/jobs/{job_id}/review?limit=1&cursor={second['next_cursor']}", headers=auth).get_json()
    assert [i["item_id"] for i in third["items"]] == ["d"] and third["next_cursor"] is None


def test_a_correction_marks_the_result_reviewed_by_the_key_and_makes_an_example_with_its_provenance(
        client, auth, tenant, tagged_job, db):
    job_id = tagged_job["job"]["id"]
    response = client.post(f"/v1/jobs/{job_id}/items/d/review", headers=auth, json={"label": "other"})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["example_created"] is True
    assert body["result"]["labels"] == ["delivery"]  # the model's answer stays as it was
    assert body["result"]["review"]["labels"] == ["other"]
    assert tenant.key.startswith(body["result"]["review"]["by"])
    with db() as session:
        example = session.get(Example, body["example_id"])
        assert (example.text, example.labels) == ("the box arrived crushed", ["other"])
        assert (example.source_job_id, example.source_item_id) == (job_id, "d")
    page = client.get(f"/v1/jobs/{job_id}/results", headers=auth).get_json()
    reviewed = {r["item_id"]: r["review"] for r in page["results"]}
    assert reviewed["d"]["labels"] == ["other"] and reviewed["a"] is None


def test_reviewing_twice_replaces_the_first_review_one_example_not_two(client, auth, tagged_job, count_rows):
    job_id, ls_id = tagged_job["job"]["id"], tagged_job["label_set"]["id"]
    first = client.post(f"/v1/jobs/{job_id}/items/a/review", headers=auth, json={"label": "other"}).get_json()
    second = client.post(f"/v1/jobs/{job_id}/items/a/review", headers=auth, json={"label": "billing"}).get_json()
    assert second["example_created"] is False and second["example_id"] == first["example_id"]
    assert second["result"]["review"]["labels"] == ["billing"]
    assert count_rows(Example, label_set_id=ls_id) == 1


def test_accepting_an_auto_accepted_result_is_allowed_and_counts_as_reviewed(client, auth, tagged_job):
    job_id = tagged_job["job"]["id"]
    assert client.post(f"/v1/jobs/{job_id}/items/e/review", headers=auth, json={"label": "other"}).status_code == 200
    job = client.get(f"/v1/jobs/{job_id}", headers=auth).get_json()
    assert job["review"] == {"review_precision": None, "needs_review": 3, "auto_accepted": 2, "coverage": 0.4,
                             "reviewed": 1}


@pytest.mark.parametrize("body, status, code, pointer", [
    ({"label": "refunds"}, 422, "unknown_label", "/label"),
    ({"label": "billing", "labels": ["billing"]}, 422, "invalid_review", ""),
    ({}, 422, "invalid_review", ""),
    ({"labels": ["billing", "other"]}, 422, "invalid_review", "/label"),
    ({"label": 3}, 422, None, "/label"),
])
def test_a_bad_review_is_a_clear_4xx_and_changes_nothing(client, auth, tagged_job, count_rows, body, status, code,
                                                         pointer):
    job_id = tagged_job["job"]["id"]
    response = client.post(f"/v1/jobs/{job_id}/items/a/review", headers=auth, json=body)
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    if code:
        assert error["code"] == code
    assert any(d.get("pointer") == pointer for d in error["details"]) or pointer == ""
    assert count_rows(Example) == 0
    assert count_rows(Result, job_id=job_id, reviewed_at=None) == len(TEXTS)


def test_an_unknown_job_an_item_not_in_the_job_and_another_tenants_job_are_404(client, auth, tagged_job,
                                                                               make_tenant):
    job_id = tagged_job["job"]["id"]
    assert client.post("/v1/jobs/job_0000000000000000/items/a/review", headers=auth,
                       json={"label": "billing"}).status_code == 404
    missing = client.post(f"/v1/jobs/{job_id}/items/zzz/review", headers=auth, json={"label": "billing"})
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "item_not_found"
    other = make_tenant("globex")
    assert client.get(f"/v1/jobs/{job_id}/review", headers=other.headers).status_code == 404
    assert client.post(f"/v1/jobs/{job_id}/items/a/review", headers=other.headers,
                       json={"label": "billing"}).status_code == 404


def test_an_item_not_tagged_yet_is_409(client, auth, make_label_set, add_adapter, clean_redis):
    label_set = make_label_set()
    add_adapter(label_set["id"])
    job = client.post("/v1/jobs", headers=auth, json={"label_set_id": label_set["id"],
                                                      "items": [{"id": "x", "text": "pending"}]}).get_json()
    response = client.post(f"/v1/jobs/{job['id']}/items/x/review", headers=auth, json={"label": "billing"})
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "item_not_tagged"


def test_a_bad_order_or_cursor_is_422(client, auth, tagged_job):
    job_id = tagged_job["job"]["id"]
    assert client.get(f"/v1/jobs/{job_id}/review?order=random", headers=auth).status_code == 422
    bad = client.get(f"/v1/jobs/{job_id}/review?cursor=notours", headers=auth)
    assert bad.status_code == 422 and bad.get_json()["error"]["code"] == "invalid_cursor"


def test_review_precision_is_set_on_create_and_patch_and_snapshotted_by_each_tag_job(client, auth, add_adapter,
                                                                                     clean_redis):
    created = client.post("/v1/label-sets", headers=auth, json={
        "name": "strict", "labels": [{"name": "a"}, {"name": "b"}], "review_precision": 0.95}).get_json()
    assert created["review_precision"] == 0.95
    add_adapter(created["id"])
    job = client.post("/v1/jobs", headers=auth, json={"label_set_id": created["id"],
                                                      "items": [{"text": "x"}]}).get_json()
    patched = client.patch(f"/v1/label-sets/{created['id']}", headers=auth, json={"review_precision": None})
    assert patched.status_code == 200 and patched.get_json()["review_precision"] is None
    assert patched.get_json()["base_model"] == "auto"  # untouched
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth).get_json()["review"]["review_precision"] == 0.95


@pytest.mark.parametrize("value", [0.5, 1.0, 1.5, "high", True])
def test_a_review_precision_outside_0_5_to_1_is_422(client, auth, make_label_set, value):
    label_set = make_label_set()
    response = client.patch(f"/v1/label-sets/{label_set['id']}", headers=auth, json={"review_precision": value})
    assert response.status_code == 422
    assert any(d["pointer"] == "/review_precision" for d in response.get_json()["error"]["details"])


def test_an_empty_patch_is_422(client, auth, make_label_set):
    label_set = make_label_set()
    response = client.patch(f"/v1/label-sets/{label_set['id']}", headers=auth, json={})
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "empty_update"
