"""POST /v1/label-sets/{id}/train: enough examples, a valid config; requests coalesce into one queued job."""
from datetime import timedelta

import pytest

from store import jobs
from store.models import Job, JobStatus, utcnow


def add_examples(client, auth, ls, per_label):
    rows = [{"text": f"{label} text {i}", "label": label} for label, n in per_label.items() for i in range(n)]
    response = client.post(f"/v1/label-sets/{ls['id']}/examples", headers=auth, json={"examples": rows})
    assert response.status_code == 201


def test_train_queues_a_job_and_enqueues_it(client, auth, make_label_set, clean_redis, db):
    ls = make_label_set(labels=("a", "b"))
    add_examples(client, auth, ls, {"a": 4, "b": 5})
    response = client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth, json={"config": {"epochs": 2, "rank": 2}})
    assert response.status_code == 202
    job = response.get_json()
    assert job["type"] == "train" and job["status"] == "queued" and job["label_set_id"] == ls["id"]
    assert job["progress"] == {"total": 0, "done": 0, "failed": 0} and job["adapter_version"] is None
    assert clean_redis.queued_tasks("train") == [{"task": "reftag.train_adapter", "args": [job["id"]]}]
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth).get_json() == job
    with db() as session:
        assert session.get(Job, job["id"]).config == {"epochs": 2, "rank": 2}


def test_train_config_merges_over_the_label_set_config(client, auth, db):
    ls = client.post("/v1/label-sets", headers=auth, json={
        "name": "s", "labels": [{"name": "a"}, {"name": "b"}], "config": {"rank": 8, "epochs": 5}}).get_json()
    add_examples(client, auth, ls, {"a": 4, "b": 4})
    job = client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth, json={"config": {"epochs": 1}}).get_json()
    with db() as session:
        assert session.get(Job, job["id"]).config == {"rank": 8, "epochs": 1}


def test_train_accepts_an_empty_body(client, auth, make_label_set):
    ls = make_label_set(labels=("a", "b"))
    add_examples(client, auth, ls, {"a": 4, "b": 4})
    assert client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth).status_code == 202


def test_a_label_without_examples_is_refused_by_name(client, auth, make_label_set, count_rows, clean_redis):
    ls = make_label_set(labels=("a", "b", "c"))
    add_examples(client, auth, ls, {"a": 4, "b": 1})
    response = client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth, json={})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "too_few_examples"
    assert "1 per label are needed" in error["message"] and "'c' has 0" in error["message"]
    assert error["details"] == [{"label": "c", "examples": 0, "needed": 1}]
    assert count_rows(Job) == 0 and clean_redis.queue_length("train") == 0


def test_labels_with_one_to_three_examples_train_with_a_warning(client, auth, make_label_set, clean_redis):
    ls = make_label_set(labels=("a", "b", "c"))
    add_examples(client, auth, ls, {"a": 4, "b": 1, "c": 3})
    response = client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth, json={})
    assert response.status_code == 202
    [warning] = response.get_json()["warnings"]
    assert warning["code"] == "few_examples" and warning["labels"] == ["b", "c"]
    assert warning["examples"] == {"b": 1, "c": 3}
    assert "'b' (1)" in warning["message"] and "'c' (3)" in warning["message"]
    job = client.get(f"/v1/jobs/{response.get_json()['id']}", headers=auth).get_json()
    assert job["warnings"] == [warning]  # kept on the job
    enough = make_label_set(name="enough", labels=("a", "b"))
    add_examples(client, auth, enough, {"a": 4, "b": 4})
    assert client.post(f"/v1/label-sets/{enough['id']}/train", headers=auth, json={}).get_json()["warnings"] == []


def test_an_operator_can_ask_for_more_examples_per_label(make_app, auth, make_label_set, count_rows, clean_redis):
    client = make_app(min_examples_per_label=4).test_client()
    ls = make_label_set(labels=("a", "b", "c"))
    add_examples(client, auth, ls, {"a": 4, "b": 1})
    error = client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth, json={}).get_json()["error"]
    assert error["code"] == "too_few_examples" and "4 per label are needed" in error["message"]
    assert error["details"] == [{"label": "b", "examples": 1, "needed": 4}, {"label": "c", "examples": 0, "needed": 4}]
    assert count_rows(Job) == 0


def test_invalid_train_config_is_rejected_by_field(client, auth, make_label_set, count_rows):
    ls = make_label_set(labels=("a", "b"))
    add_examples(client, auth, ls, {"a": 4, "b": 4})
    response = client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth, json={
        "config": {"intervention": "lora", "lr": 0, "positions": "first", "layers": [-1], "epoch": 3}})
    assert response.status_code == 422
    pointers = {d["pointer"] for d in response.get_json()["error"]["details"]}
    assert {"/config/intervention", "/config/lr", "/config/positions", "/config/epoch"} <= pointers
    assert any(p.startswith("/config/layers") for p in pointers)
    assert count_rows(Job) == 0


def test_train_requests_coalesce_while_a_job_is_queued(client, auth, make_label_set, clean_redis, count_rows):
    ls = make_label_set(labels=("a", "b"))
    add_examples(client, auth, ls, {"a": 4, "b": 4})
    first = client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth, json={})
    assert first.status_code == 202
    # Examples added now are read when the queued job starts: the second request is the same job.
    add_examples(client, auth, ls, {"a": 1})
    again = client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth, json={})
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    assert count_rows(Job) == 1
    assert len(clean_redis.queued_tasks("train")) == 1  # sent once


def test_a_train_request_with_another_config_while_queued_is_a_conflict(client, auth, make_label_set, count_rows):
    ls = make_label_set(labels=("a", "b"))
    add_examples(client, auth, ls, {"a": 4, "b": 4})
    first = client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth, json={}).get_json()
    response = client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth, json={"config": {"rank": 2}})
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "training_in_progress"
    message = response.get_json()["error"]["message"]
    assert first["id"] in message and "another config" in message
    assert count_rows(Job) == 1


def test_a_train_request_naming_no_config_joins_a_queued_job_with_one(client, auth, make_label_set, count_rows):
    ls = make_label_set(labels=("a", "b"))
    add_examples(client, auth, ls, {"a": 4, "b": 4})
    first = client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth, json={"config": {"rank": 2}}).get_json()
    for body in ({}, {"config": {}}, None):  # as Label Studio's START_TRAINING: never a 4xx
        joined = client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth, json=body)
        assert joined.status_code == 200 and joined.get_json()["id"] == first["id"]
    same = client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth, json={"config": {"rank": 2}})
    assert same.status_code == 200
    assert count_rows(Job) == 1


def test_a_train_request_while_one_runs_waits_for_it(client, auth, make_label_set, clean_redis, db, count_rows):
    ls = make_label_set(labels=("a", "b"))
    add_examples(client, auth, ls, {"a": 4, "b": 4})
    running = client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth, json={}).get_json()["id"]
    assert jobs.lease_train_job(running) is not None  # a worker has started it
    waiting = client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth, json={})
    assert waiting.status_code == 202
    waiting_job = waiting.get_json()
    assert waiting_job["queued_after"] == running and waiting_job["status"] == "queued"
    # Not sent yet, and a worker that gets it anyway leaves it; further requests join it.
    assert len(clean_redis.queued_tasks("train")) == 1
    assert jobs.lease_train_job(waiting_job["id"]) is None
    third = client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth, json={})
    assert third.status_code == 200 and third.get_json()["id"] == waiting_job["id"]
    assert count_rows(Job) == 2
    # The reconciler does not take the waiting job for lost while the running one runs.
    with db() as session:
        session.get(Job, waiting_job["id"]).created_at = utcnow() - timedelta(hours=1)
    jobs.reconcile()
    with db() as session:
        assert session.get(Job, waiting_job["id"]).status == JobStatus.QUEUED
    assert jobs.start_waiting_train_job(running) is None  # the running one has not finished
    # Cancelling the running one starts the waiting one.
    assert client.post(f"/v1/jobs/{running}/cancel", headers=auth).status_code == 202
    assert [waiting_job["id"]] in [t["args"] for t in clean_redis.queued_tasks("train")]
    assert jobs.lease_train_job(waiting_job["id"]) is not None


def test_training_an_unknown_label_set_is_404(client, auth):
    response = client.post("/v1/label-sets/ls_nope/train", headers=auth, json={})
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


def test_train_progress_counts_the_trainers_steps(client, auth, make_label_set, db):
    ls = make_label_set(labels=("a", "b"))
    add_examples(client, auth, ls, {"a": 4, "b": 4})
    job_id = client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth, json={}).get_json()["id"]
    with db() as session:
        job = session.get(Job, job_id)
        job.status, job.detail = "running", {"step": 30, "total_steps": 120, "epoch": 2, "epochs": 10, "loss": 0.4}
    body = client.get(f"/v1/jobs/{job_id}", headers=auth).get_json()
    assert body["progress"] == {"total": 120, "done": 30, "failed": 0} and body["detail"]["epoch"] == 2
    with db() as session:
        job = session.get(Job, job_id)
        job.status, job.adapter_version, job.metrics = "succeeded", 1, {"accuracy": 0.9}
    body = client.get(f"/v1/jobs/{job_id}", headers=auth).get_json()
    assert body["progress"] == {"total": 120, "done": 120, "failed": 0}  # early stopping ends before the plan
    assert body["adapter_version"] == 1 and body["metrics"] == {"accuracy": 0.9}


def test_concurrent_train_requests_start_one_job(app, auth, make_label_set, count_rows, clean_redis):
    from concurrent.futures import ThreadPoolExecutor

    client = app.test_client()
    ls = make_label_set(labels=("a", "b"))
    add_examples(client, auth, ls, {"a": 4, "b": 4})

    def post(_):
        return app.test_client().post(f"/v1/label-sets/{ls['id']}/train", headers=auth, json={}).status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = sorted(pool.map(post, range(4)))
    assert statuses == [200, 200, 200, 202]  # one job made, the others joined it
    assert count_rows(Job) == 1 and clean_redis.queue_length("train") == 1


def json_schema_of(spec) -> list[dict]:
    """What the API's schema must say of a reft_core option: its type with the same bounds."""
    bounds = {k: v for k, v in (("minimum", spec.ge), ("exclusiveMinimum", spec.gt), ("maximum", spec.le),
                                ("pattern", spec.pattern)) if v is not None}
    if spec.choices is not None:
        return [{"enum": list(spec.choices), "type": "string"}]
    if spec.kind == "layers":
        return [{"const": "auto", "type": "string"},
                {"type": "array", "items": {"type": "integer", **bounds}, "minItems": 1, "maxItems": spec.max_items}]
    return [{"type": {"int": "integer", "float": "number", "str": "string"}[spec.kind], **bounds}]


def test_the_api_training_options_are_reft_cores_with_the_same_bounds():
    from api.v1.schemas import TrainConfig as ApiTrainConfig
    from reft_core.config import TrainConfig as CoreTrainConfig

    schema = ApiTrainConfig.model_json_schema()["properties"]
    options = CoreTrainConfig.options()
    assert set(schema) == set(options)
    for name, (spec, default) in options.items():
        assert schema[name]["anyOf"] == [*json_schema_of(spec), {"type": "null"}], name
        assert repr(default) in schema[name]["description"], name


@pytest.mark.parametrize("name", ["rank", "epochs", "lr", "dropout", "batch_size", "max_length", "eval_fraction",
                                  "seed", "patience"])
def test_a_value_just_past_a_bound_is_refused_by_the_api_and_by_reft_core_alike(client, auth, name):
    from reft_core.config import ReftConfigError
    from reft_core.config import TrainConfig as CoreTrainConfig

    spec, _ = CoreTrainConfig.options()[name]
    step = 1 if spec.kind == "int" else 1e-6
    edges = [(spec.le, True), (spec.le + step, False)]
    edges += [(spec.ge, True), (spec.ge - step, False)] if spec.ge is not None else [(spec.gt, False)]
    for value, ok in edges:
        value = int(value) if spec.kind == "int" else float(value)
        response = client.post("/v1/label-sets", headers=auth, json={
            "name": f"{name}-{value}", "labels": [{"name": "a"}, {"name": "b"}], "config": {name: value}})
        assert (response.status_code == 201) == ok, (name, value, response.get_json())
        if not ok:
            assert [d["pointer"] for d in response.get_json()["error"]["details"]] == [f"/config/{name}"]
            with pytest.raises(ReftConfigError):
                CoreTrainConfig.from_dict({name: value})
        else:
            CoreTrainConfig.from_dict({name: value})


def test_a_rule_beyond_types_is_checked_at_the_edge_by_reft_core(client, auth):
    # Distinct layers and at least one position: reft_core's own rules, before any job exists.
    response = client.post("/v1/label-sets", headers=auth, json={
        "name": "rules", "labels": [{"name": "a"}, {"name": "b"}], "config": {"layers": [2, 2], "positions": "f0+l0"}})
    assert response.status_code == 422
    assert {d["pointer"] for d in response.get_json()["error"]["details"]} == {"/config/layers", "/config/positions"}


def test_the_pairs_objective_is_refused_for_a_multi_label_or_spans_set(client, auth, make_label_set, db,
                                                                       count_rows, clean_redis):
    # pairs of texts are "same label" or not: a set whose texts carry several labels, or spans,
    # has no such pairs. Refused when given (422 naming /config/objective), not when a worker trains.
    from store.models import LabelSet

    for body in ({"multi_label": True}, {"kind": "spans"}):
        response = client.post("/v1/label-sets", headers=auth, json={
            "name": "bad", "labels": [{"name": "a"}, {"name": "b"}], "config": {"objective": "pairs"}, **body})
        assert response.status_code == 422
        error = response.get_json()["error"]
        assert error["code"] == "option_not_for_set" and error["details"][0]["pointer"] == "/config/objective"
        assert "single-label" in error["message"]
    with db() as session:
        assert session.query(LabelSet).count() == 0
    multi = make_label_set(name="multi", labels=("a", "b"), multi_label=True)
    rows = [{"text": f"text {i}", "labels": ["a", "b"][: 1 + i % 2]} for i in range(8)]
    assert client.post(f"/v1/label-sets/{multi['id']}/examples", headers=auth,
                       json={"examples": rows}).status_code == 201
    response = client.post(f"/v1/label-sets/{multi['id']}/train", headers=auth, json={"config": {"objective": "pairs"}})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "option_not_for_set" and "objective" in error["message"]
    assert error["details"][0]["pointer"] == "/config/objective"
    assert count_rows(Job) == 0 and clean_redis.queue_length("train") == 0
    # a single-label set takes it
    single = make_label_set(name="single", labels=("a", "b"))
    add_examples(client, auth, single, {"a": 4, "b": 4})
    assert client.post(f"/v1/label-sets/{single['id']}/train", headers=auth,
                       json={"config": {"objective": "pairs"}}).status_code == 202
