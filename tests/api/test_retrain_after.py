"""Retraining on its own: `retrain_after` changed examples since the set's latest training
started queue a train job, through the same coalescing as a train request."""
from __future__ import annotations

from datetime import timedelta

import pytest

from store.models import Job, JobStatus, utcnow


def examples(prefix: str, n: int, label: str = "billing") -> dict:
    return {"examples": [{"text": f"{prefix} {i}", "label": label} for i in range(n)]}


@pytest.fixture
def trained_set(client, auth, db, clean_redis):
    """A label set with 3 examples per label and a train job that started after they were added (done)."""
    made = client.post("/v1/label-sets", headers=auth, json={
        "name": "tickets", "labels": [{"name": "billing"}, {"name": "other"}], "retrain_after": 5}).get_json()
    for label in ("billing", "other"):
        assert client.post(f"/v1/label-sets/{made['id']}/examples", headers=auth,
                           json=examples(f"first {label}", 3, label)).status_code == 201
    with db() as session:
        started = utcnow()
        session.add(Job(tenant_id=made_tenant(session, made["id"]), type="train", label_set_id=made["id"],
                        status=JobStatus.SUCCEEDED, started_at=started, finished_at=started))
    return made


def made_tenant(session, label_set_id: str) -> str:
    from store.models import LabelSet

    return session.get(LabelSet, label_set_id).tenant_id


def train_jobs(db, label_set_id: str, status: str = JobStatus.QUEUED) -> list[Job]:
    from sqlalchemy import select

    with db() as session:
        return list(session.scalars(select(Job).where(Job.label_set_id == label_set_id, Job.type == "train",
                                                      Job.status == status)))


def test_examples_piling_up_past_retrain_after_queue_one_train_job_and_send_it(client, auth, trained_set, db,
                                                                               clean_redis):
    ls_id = trained_set["id"]
    # the 6 examples of the fixture came before the training started: they do not count
    first = client.post(f"/v1/label-sets/{ls_id}/examples", headers=auth, json=examples("new", 4)).get_json()
    assert first["train_job_id"] is None and train_jobs(db, ls_id) == []
    second = client.post(f"/v1/label-sets/{ls_id}/examples", headers=auth, json=examples("more", 1)).get_json()
    [queued] = train_jobs(db, ls_id)
    assert second["train_job_id"] == queued.id
    assert [t["args"] for t in clean_redis.queued_tasks("train")] == [[queued.id]]
    # more changes while it is queued join it: it reads every example when it starts
    third = client.post(f"/v1/label-sets/{ls_id}/examples", headers=auth, json=examples("later", 6)).get_json()
    assert third["train_job_id"] is None and len(train_jobs(db, ls_id)) == 1


def test_a_relabel_counts_as_a_change(client, auth, trained_set, db, clean_redis):
    ls_id = trained_set["id"]
    client.post(f"/v1/label-sets/{ls_id}/examples", headers=auth, json=examples("new", 4))
    from sqlalchemy import select

    from store import label_sets
    from store.models import Example

    with db() as session:
        tenant_id = made_tenant(session, ls_id)
        example = session.scalar(select(Example).where(Example.text == "first billing 0"))
        assert label_sets.relabel_example(session, tenant_id, ls_id, example.text, ["other"])
    with db() as session:
        from store import jobs

        job = jobs.retrain_if_due(session, tenant_id, ls_id, 1)
        assert job is not None and job.status == JobStatus.QUEUED


def test_a_set_never_trained_or_with_retrain_after_off_is_not_trained_on_its_own(client, auth, make_label_set, db,
                                                                                 trained_set, clean_redis):
    untrained = make_label_set(name="fresh", labels=("billing", "other"))
    answer = client.post(f"/v1/label-sets/{untrained['id']}/examples", headers=auth,
                         json=examples("x", 60)).get_json()
    assert answer["train_job_id"] is None and train_jobs(db, untrained["id"]) == []
    off = client.patch(f"/v1/label-sets/{trained_set['id']}", headers=auth, json={"retrain_after": None})
    assert off.status_code == 200 and off.get_json()["retrain_after"] is None
    answer = client.post(f"/v1/label-sets/{trained_set['id']}/examples", headers=auth,
                         json=examples("y", 20)).get_json()
    assert answer["train_job_id"] is None and train_jobs(db, trained_set["id"]) == []


def test_a_set_that_cannot_train_yet_still_takes_its_examples(client, auth, db, clean_redis):
    made = client.post("/v1/label-sets", headers=auth, json={
        "name": "lopsided", "labels": [{"name": "billing"}, {"name": "other"}], "retrain_after": 1}).get_json()
    with db() as session:
        session.add(Job(tenant_id=made_tenant(session, made["id"]), type="train", label_set_id=made["id"],
                        status=JobStatus.FAILED, started_at=utcnow() - timedelta(minutes=1)))
    # no example of "other" at all: training would be refused; the upload is not
    answer = client.post(f"/v1/label-sets/{made['id']}/examples", headers=auth, json=examples("z", 3))
    assert answer.status_code == 201 and answer.get_json()["train_job_id"] is None
    assert answer.get_json()["added"] == 3


def test_new_label_sets_retrain_after_50_by_default_and_bad_values_are_422(client, auth, make_label_set):
    made = make_label_set()
    assert made["retrain_after"] == 50
    for value in (0, -1, 1.5, "50", 10_000_001):
        response = client.patch(f"/v1/label-sets/{made['id']}", headers=auth, json={"retrain_after": value})
        assert response.status_code == 422, value
        assert any(d["pointer"] == "/retrain_after" for d in response.get_json()["error"]["details"])
