"""The labeling loop's routes: POST /v1/label-sets/{id}/suggest and /audit (bad input refused
with nothing stored, a job queued for the train queue's workers), a suggest or audit job's
answer at GET /v1/jobs/{id}/results (paged, exported), and a person's decision on a finding.
Answers are arranged in the database as a worker writes them (tests/workers and tests/e2e run
the model)."""
from __future__ import annotations

import csv
import io
import json

import pytest

from store import jobs as _jobs  # noqa: F401  (store.jobs and store.results import each other; jobs first)
from store import loop
from store.models import Example, Job, JobOutput

LABELS = ("billing", "delivery", "other")
TEXTS = {"billing": ["charged twice for one order", "refund the fee please", "my card was billed again",
                     "invoice shows the wrong amount", "why is there a late fee", "cancel the subscription charge",
                     "the price changed at checkout"],
         "delivery": ["where is my parcel", "the box arrived crushed", "tracking has not moved in days",
                      "courier left it at the wrong door", "delivery is a week late", "the package never came",
                      "can you ship to my office instead"],
         "other": ["hello", "do you have a shop in Lyon", "what are your opening hours", "thanks for the help",
                   "is this product vegan", "I love the new design", "who do I ask about jobs"]}


def add_examples(client, auth, label_set_id, per_label=7, labels=LABELS):
    examples = [{"text": text, "label": name} for name in labels for text in TEXTS[name][:per_label]]
    response = client.post(f"/v1/label-sets/{label_set_id}/examples", headers=auth, json={"examples": examples})
    assert response.status_code == 201, response.get_json()


def job_count(db) -> int:
    with db() as session:
        return session.query(Job).count()


@pytest.fixture
def tag_job(client, auth, make_label_set, add_adapter, clean_redis):
    label_set = make_label_set()
    add_adapter(label_set["id"])
    response = client.post("/v1/jobs", headers=auth, json={
        "label_set_id": label_set["id"], "items": [{"id": f"i{n}", "text": f"text number {n}"} for n in range(8)]})
    assert response.status_code == 202
    clean_redis.client().flushall()
    return {"label_set": label_set, "job": response.get_json()}


# --- suggest ------------------------------------------------------------------------------------


def test_suggest_queues_a_suggest_job_on_the_train_queue(client, auth, tag_job, clean_redis):
    ls, job = tag_job["label_set"], tag_job["job"]
    response = client.post(f"/v1/label-sets/{ls['id']}/suggest", headers=auth, json={"job_id": job["id"], "n": 5})
    assert response.status_code == 202, response.get_json()
    made = response.get_json()
    assert (made["type"], made["status"], made["label_set_id"], made["adapter_version"]) == ("suggest", "queued",
                                                                                           ls["id"], 1)
    assert made["progress"]["total"] == 5
    assert clean_redis.queued_tasks("train") == [{"task": "reftag.suggest", "args": [made["id"]]}]
    listed = client.get("/v1/jobs?type=suggest", headers=auth).get_json()["jobs"]
    assert [j["id"] for j in listed] == [made["id"]]


@pytest.mark.parametrize(("body", "status", "code", "pointer"), [
    ({"job_id": "job_0000000000000000", "n": 5}, 404, "job_not_found", "/job_id"),
    ({"n": 5}, 422, "invalid_request", "/job_id"),
    ("same", 422, "invalid_request", "/n"),
    ("negative", 422, "invalid_request", "/n"),
    ("huge", 422, "invalid_request", "/n"),
])
def test_suggest_refuses_bad_input_naming_it_and_stores_nothing(client, auth, tag_job, db, body, status, code,
                                                                  pointer):
    ls, job = tag_job["label_set"], tag_job["job"]
    body = {"same": {"job_id": job["id"], "n": 0}, "negative": {"job_id": job["id"], "n": -3},
            "huge": {"job_id": job["id"], "n": loop.MAX_SUGGEST + 1}}.get(body, body) if isinstance(body, str) else body
    before = job_count(db)
    response = client.post(f"/v1/label-sets/{ls['id']}/suggest", headers=auth, json=body)
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == code and any(d.get("pointer") == pointer for d in error["details"]), error
    assert job_count(db) == before


def test_suggest_refuses_a_tag_job_of_another_label_set_and_a_train_job(client, auth, tag_job, make_label_set, db,
                                                                         add_adapter):
    other = make_label_set(name="other set")
    add_adapter(other["id"])
    before = job_count(db)
    response = client.post(f"/v1/label-sets/{other['id']}/suggest", headers=auth,
                           json={"job_id": tag_job["job"]["id"], "n": 3})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "job_of_another_label_set" and tag_job["label_set"]["id"] in error["message"]
    with db() as session:
        train = Job(tenant_id=session.get(Job, tag_job["job"]["id"]).tenant_id, type="train",
                    label_set_id=tag_job["label_set"]["id"])
        session.add(train)
        session.flush()
        train_id = train.id
    response = client.post(f"/v1/label-sets/{tag_job['label_set']['id']}/suggest", headers=auth,
                           json={"job_id": train_id, "n": 3})
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "not_a_tag_job"
    assert job_count(db) == before + 1  # the train job this test made, nothing else


def test_suggest_does_not_see_another_tenants_job(client, tag_job, make_tenant, make_label_set, add_adapter):
    other_auth = make_tenant("someone else").headers
    theirs = make_label_set(headers=other_auth)
    add_adapter(theirs["id"])
    response = client.post(f"/v1/label-sets/{theirs['id']}/suggest", headers=other_auth,
                           json={"job_id": tag_job["job"]["id"], "n": 3})
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "job_not_found"


# --- audit --------------------------------------------------------------------------------------


def test_audit_queues_an_audit_job(client, auth, make_label_set, clean_redis):
    ls = make_label_set()
    add_examples(client, auth, ls["id"])
    response = client.post(f"/v1/label-sets/{ls['id']}/audit", headers=auth)
    assert response.status_code == 202, response.get_json()
    made = response.get_json()
    assert (made["type"], made["status"]) == ("audit", "queued")
    assert clean_redis.queued_tasks("train") == [{"task": "reftag.audit", "args": [made["id"]]}]


def test_audit_with_too_few_examples_names_the_minimum_and_stores_nothing(client, auth, make_label_set, db,
                                                                          clean_redis):
    ls = make_label_set()
    add_examples(client, auth, ls["id"], per_label=4)  # 12 examples, 4 of each label
    before = job_count(db)
    response = client.post(f"/v1/label-sets/{ls['id']}/audit", headers=auth, json={})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "too_few_examples"
    assert "at least 20 examples" in error["message"] and "at least 5 examples of every label" in error["message"]
    assert {"minimum_examples": 20, "examples": 12} in error["details"]
    assert {"label": "billing", "examples": 4, "minimum_per_label": 5} in error["details"]
    add_examples(client, auth, ls["id"], per_label=7, labels=("billing", "delivery"))
    response = client.post(f"/v1/label-sets/{ls['id']}/audit", headers=auth)
    error = response.get_json()["error"]  # 'billing' and 'delivery' have 7 now, 'other' still 4
    assert response.status_code == 422 and "'other' has 4" in error["message"]
    assert "'billing'" not in error["message"]
    assert job_count(db) == before
    assert clean_redis.queued_tasks("train") == []


def test_audit_of_an_unknown_label_set_is_404(client, auth):
    response = client.post("/v1/label-sets/ls_0000000000000000/audit", headers=auth)
    assert response.status_code == 404


# --- answers and decisions ----------------------------------------------------------------------


def finish_with(db, job_id: str, rows: list[dict]) -> None:
    """Write a job's answer as the worker does (store.loop.complete_loop_job)."""
    with db() as session:
        job = session.get(Job, job_id)
        job.status, job.attempts = "running", 1
    assert loop.complete_loop_job(job_id, 1, rows, {"picked": len(rows)})


def test_a_suggest_jobs_picks_page_in_rank_order_and_export_as_label_studio_tasks(client, auth, tag_job, db):
    ls, job = tag_job["label_set"], tag_job["job"]
    made = client.post(f"/v1/label-sets/{ls['id']}/suggest", headers=auth,
                       json={"job_id": job["id"], "n": 3}).get_json()
    assert client.get(f"/v1/jobs/{made['id']}/results", headers=auth).get_json() == {"results": [],
                                                                                     "next_cursor": None}
    picks = [{"item_id": f"i{n}", "text": f"text number {n}", "score": 0.9 - n / 10, "reason": f"why {n}",
              "labels": ["billing"]} for n in (4, 1, 6)]
    finish_with(db, made["id"], picks)
    first = client.get(f"/v1/jobs/{made['id']}/results?limit=2", headers=auth).get_json()
    assert [r["item_id"] for r in first["results"]] == ["i4", "i1"] and first["next_cursor"]
    rest = client.get(f"/v1/jobs/{made['id']}/results?limit=2&cursor={first['next_cursor']}", headers=auth).get_json()
    assert [r["item_id"] for r in rest["results"]] == ["i6"] and rest["next_cursor"] is None
    assert rest["results"][0] == picks[2]
    assert client.get(f"/v1/jobs/{made['id']}", headers=auth).get_json()["status"] == "succeeded"

    tasks = json.loads(client.get(f"/v1/jobs/{made['id']}/results?format=label_studio&label_field=topic",
                                  headers=auth).get_data(as_text=True))
    assert [t["data"]["item_id"] for t in tasks] == ["i4", "i1", "i6"]
    assert tasks[0]["data"]["text"] == "text number 4" and tasks[0]["data"]["reftag_reason"] == "why 4"
    region = tasks[0]["predictions"][0]["result"][0]
    assert region["from_name"] == "topic" and region["value"] == {"choices": ["billing"]}
    rows = list(csv.DictReader(io.StringIO(client.get(f"/v1/jobs/{made['id']}/results?format=csv",
                                                       headers=auth).get_data(as_text=True))))
    assert [r["item_id"] for r in rows] == ["i4", "i1", "i6"] and rows[0]["reason"] == "why 4"
    response = client.get(f"/v1/jobs/{made['id']}/results?format=doccano", headers=auth)
    assert response.status_code == 422 and "doccano" in response.get_json()["error"]["message"]
    assert client.get(f"/v1/jobs/{made['id']}/results?cursor=garbage", headers=auth).status_code == 422


@pytest.fixture
def audited(client, auth, make_label_set, clean_redis, db):
    ls = make_label_set(name="audited")
    add_examples(client, auth, ls["id"])
    made = client.post(f"/v1/label-sets/{ls['id']}/audit", headers=auth).get_json()
    with db() as session:
        ids = {e.text: e.id for e in session.query(Example).filter_by(label_set_id=ls["id"])}
    wrong = [("hello", "other", "billing"), ("where is my parcel", "delivery", "other")]
    finish_with(db, made["id"], [{"example_id": ids[text], "text": text, "given": given, "suggested": suggested,
                                  "confidence": 0.9, "given_score": 0.05} for text, given, suggested in wrong])
    return {"label_set": ls, "job": made, "ids": ids}


def test_accepting_a_fix_relabels_the_example_and_keeps_its_history(client, auth, audited, db):
    job_id, example_id = audited["job"]["id"], audited["ids"]["hello"]
    response = client.post(f"/v1/jobs/{job_id}/findings/{example_id}", headers=auth, json={"decision": "accept"})
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["finding"]["decision"] == "accepted"
    assert answer["example"]["labels"] == ["billing"]
    assert [h["labels"] for h in answer["example"]["history"]] == [["other"]]
    assert f"audit {job_id}" in answer["example"]["history"][0]["why"] and answer["example"]["history"][0]["by"]
    with db() as session:
        assert session.get(Example, example_id).labels == ["billing"]
    results = client.get(f"/v1/jobs/{job_id}/results", headers=auth).get_json()["results"]
    assert [r["decision"] for r in results] == ["accepted", None]
    # accepting again changes nothing more
    again = client.post(f"/v1/jobs/{job_id}/findings/{example_id}", headers=auth, json={"decision": "accept"})
    assert again.status_code == 200 and len(again.get_json()["example"]["history"]) == 1


def test_keeping_a_label_marks_the_finding_and_leaves_the_example(client, auth, audited, db):
    job_id, example_id = audited["job"]["id"], audited["ids"]["where is my parcel"]
    response = client.post(f"/v1/jobs/{job_id}/findings/{example_id}", headers=auth, json={"decision": "keep"})
    assert response.status_code == 200 and response.get_json()["finding"]["decision"] == "kept"
    with db() as session:
        example = session.get(Example, example_id)
        assert (example.labels, example.history) == (["delivery"], [])
        assert session.query(JobOutput).filter_by(job_id=job_id, example_id=example_id).one().decided_by is not None


def test_a_decision_on_bad_targets_is_refused(client, auth, audited, tag_job, db):
    job_id, ids = audited["job"]["id"], audited["ids"]
    not_found = client.post(f"/v1/jobs/{job_id}/findings/{ids['thanks for the help']}", headers=auth,
                            json={"decision": "accept"})
    assert not_found.status_code == 404 and not_found.get_json()["error"]["code"] == "finding_not_found"
    bad = client.post(f"/v1/jobs/{job_id}/findings/{ids['hello']}", headers=auth, json={"decision": "maybe"})
    assert bad.status_code == 422
    wrong_job = client.post(f"/v1/jobs/{tag_job['job']['id']}/findings/{ids['hello']}", headers=auth,
                            json={"decision": "keep"})
    assert wrong_job.status_code == 422 and wrong_job.get_json()["error"]["code"] == "not_an_audit_job"
    with db() as session:
        session.get(Example, ids["hello"]).labels = ["delivery"]  # relabelled by someone since the audit
    changed = client.post(f"/v1/jobs/{job_id}/findings/{ids['hello']}", headers=auth, json={"decision": "accept"})
    assert changed.status_code == 409 and changed.get_json()["error"]["code"] == "example_changed"
    with db() as session:
        assert session.get(Example, ids["hello"]).labels == ["delivery"]
