"""Label Studio's ML backend contract at /ls/<label_set_id>/, replayed with the request bodies
Label Studio sends (label_studio/ml/api_connector.py: predict, setup, train; webhooks as
label_studio/webhooks/models.py serializes ANNOTATION_CREATED/UPDATED with their task)."""
import base64
import copy
import io
import json
import logging
import time

import pytest

from store.models import Example, Job

LABEL_CONFIG = """<View>
  <Text name="review" value="$body"/>
  <View style="box-shadow: 2px 2px 5px #999; padding: 20px; margin-top: 2em; border-radius: 5px;">
    <Header value="What is the ticket about?"/>
    <Choices name="topic" toName="review" choice="single" showInLine="true">
      <Choice value="billing"/>
      <Choice value="delivery"/>
      <Choice value="other"/>
    </Choices>
  </View>
</View><!-- {"data": {"body": "I was charged twice"}} -->"""

PROJECT = {  # the project as Label Studio's webhooks serialize it
    "id": 3, "title": "Support tickets", "description": "", "label_config": LABEL_CONFIG, "expert_instruction": "",
    "show_instruction": False, "show_skip_button": True, "enable_empty_annotation": True,
    "show_annotation_history": False, "show_collab_predictions": True, "evaluate_predictions_automatically": False,
    "token": "9105a1d897e52286", "result_count": 0, "color": "#FFFFFF", "maximum_annotations": 1,
    "min_annotations_to_start_training": 0, "control_weights": {"topic": {"overall": 1.0, "type": "Choices",
                                                                           "labels": {}}},
    "model_version": "", "data_types": {"body": "Text"}, "is_draft": False, "is_published": False,
    "created_at": "2024-05-02T09:12:44.218473Z", "updated_at": "2024-05-02T09:20:01.911271Z",
    "sampling": "Sequential sampling", "show_ground_truth_first": False, "show_overlap_first": False,
    "overlap_cohort_percentage": 100, "task_data_login": None, "task_data_password": None, "organization": 1,
    "created_by": 1,
}


def ls_task(task_id, text):
    """A task as TaskSimpleSerializer sends it to /predict."""
    return {"id": task_id, "data": {"body": text}, "meta": {}, "created_at": "2024-05-02T09:12:44.218473Z",
            "updated_at": "2024-05-02T09:12:44.218499Z", "is_labeled": False, "overlap": 1, "inner_id": task_id,
            "total_annotations": 0, "cancelled_annotations": 0, "total_predictions": 0, "comment_count": 0,
            "unresolved_comment_count": 0, "last_comment_updated_at": None, "project": 3, "updated_by": None,
            "file_upload": 2, "comment_authors": [], "annotations": [], "predictions": []}


def predict_body(texts):
    """MLApi._prep_prediction_req."""
    return {"tasks": [ls_task(101 + i, text) for i, text in enumerate(texts)], "project": "3.1714641164",
            "label_config": LABEL_CONFIG, "params": {"login": None, "password": None, "context": None}}


SETUP_BODY = {"project": "3.1714641164", "schema": LABEL_CONFIG, "hostname": "http://localhost:8080",
              "access_token": "f0d6c4e1f7bb0d2d6e1a9c1f0e6b7a1c2d3e4f50", "extra_params": None}


def annotation_webhook(choices, action="ANNOTATION_CREATED", text="I was charged twice", cancelled=False, task_id=19,
                       annotation_id=17):
    """ANNOTATION_CREATED / _UPDATED, with the nested task and the project."""
    return {
        "action": action,
        "annotation": {
            "id": annotation_id, "result": [] if cancelled else [
                {"value": {"choices": list(choices)}, "id": "WArqkkifYE", "from_name": "topic", "to_name": "review",
                 "type": "choices", "origin": "manual"}],
            "was_cancelled": cancelled, "ground_truth": False, "created_at": "2024-05-02T13:52:48.536303Z",
            "updated_at": "2024-05-02T13:52:48.536370Z", "draft_created_at": None, "lead_time": 37.13,
            "prediction": {}, "result_count": 0, "unique_id": "1b0c7a3e", "import_id": None,
            "last_action": None, "task": task_id, "project": 3, "updated_by": 1, "parent_prediction": None,
            "parent_annotation": None, "last_created_by": None, "completed_by": 1,
        },
        "task": {"id": task_id, "data": {"body": text}, "meta": {}, "created_at": "2024-05-02T13:51:02.590839Z",
                 "updated_at": "2024-05-02T13:52:48.590873Z", "is_labeled": True, "overlap": 1, "inner_id": 19,
                 "total_annotations": 1, "cancelled_annotations": 0, "total_predictions": 0, "comment_count": 0,
                 "unresolved_comment_count": 0, "last_comment_updated_at": None, "project": 3, "updated_by": 1,
                 "file_upload": 46, "comment_authors": []},
        "project": PROJECT,
    }


def basic(key, user="labelstudio"):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}


@pytest.fixture
def ls_set(make_label_set):
    return make_label_set(labels=("billing", "delivery", "other"))


# --- auth ---------------------------------------------------------------------------------------


def test_basic_auth_password_is_the_api_key_and_any_user_name_works(client, tenant, ls_set):
    for headers in (basic(tenant.key), basic(tenant.key, user="用户"), tenant.headers):
        response = client.get(f"/ls/{ls_set['id']}/health", headers=headers)
        assert response.status_code == 200, response.get_json()
        assert response.get_json() == {"status": "UP", "model_class": "reftag", "model_version": "reftag-untrained"}
    assert client.get(f"/ls/{ls_set['id']}/", headers=basic(tenant.key)).status_code == 200


@pytest.mark.parametrize("headers", [{}, basic("rt_wrong"), {"Authorization": "Basic !!notbase64"},
                                     {"Authorization": "Bearer rt_wrong"}], ids=["none", "wrong", "garbled", "bearer"])
def test_wrong_or_missing_credentials_are_401_without_a_challenge(client, ls_set, headers):
    """No `WWW-Authenticate: Basic`: a browser that met one would ask for the key, remember it, and
    send it with every request to this origin, those another site makes it send included."""
    for response in (client.post(f"/ls/{ls_set['id']}/predict", headers=headers, json=predict_body(["x"])),
                     client.get(f"/ls/{ls_set['id']}/health", headers=headers)):
        assert response.status_code == 401
        assert "WWW-Authenticate" not in response.headers
        assert response.get_json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("route", ["webhook", "train", "setup", "predict"])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None],
                         ids=["text", "urlencoded", "multipart", "none"])
def test_a_body_that_does_not_say_it_is_json_is_415(client, tenant, ls_set, count_rows, route, content_type):
    """What a cross-site `<form enctype="text/plain">` sends: JSON-shaped text with a form's type.
    Refused before it is read, and nothing is stored."""
    body = {"webhook": annotation_webhook(["billing"]), "train": {"annotations": [], "label_config": LABEL_CONFIG},
            "setup": SETUP_BODY, "predict": predict_body(["x"])}[route]
    headers = {**basic(tenant.key), **({"Content-Type": content_type} if content_type else {})}
    response = client.post(f"/ls/{ls_set['id']}/{route}", headers=headers, data=json.dumps(body))
    assert response.status_code == 415, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "unsupported_media_type" and "application/json" in error["message"]
    assert count_rows(Example) == 0 and count_rows(Job) == 0


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON", "application/vnd.labelstudio+json"])
def test_json_types_are_read(client, tenant, ls_set, count_rows, content_type):
    response = client.post(f"/ls/{ls_set['id']}/webhook", data=json.dumps(annotation_webhook(["billing"])),
                           headers={**basic(tenant.key), "Content-Type": content_type})
    assert response.status_code == 201, response.get_json()
    assert count_rows(Example) == 1


def test_another_tenants_label_set_is_404(client, tenant, make_tenant, make_label_set):
    other = make_tenant("globex")
    theirs = make_label_set(name="theirs", headers=other.headers)
    assert client.get(f"/ls/{theirs['id']}/health", headers=basic(tenant.key)).status_code == 404
    assert client.post(f"/ls/{theirs['id']}/webhook", headers=basic(tenant.key),
                       json=annotation_webhook(["billing"])).status_code == 404


# --- setup ----------------------------------------------------------------------------------------


def test_setup_answers_the_active_adapters_version(client, tenant, ls_set, add_adapter):
    url = f"/ls/{ls_set['id']}/setup"
    assert client.post(url, headers=basic(tenant.key), json=SETUP_BODY).get_json() == {
        "model_version": "reftag-untrained"}
    add_adapter(ls_set["id"], version=1, active=False)
    add_adapter(ls_set["id"], version=2)
    assert client.post(url, headers=basic(tenant.key), json=SETUP_BODY).get_json() == {"model_version": "reftag-v2"}


def test_setup_refuses_a_config_whose_choices_are_not_the_labels(client, tenant, ls_set):
    body = {**SETUP_BODY, "schema": LABEL_CONFIG.replace('<Choice value="other"/>', '<Choice value="spam"/>')}
    response = client.post(f"/ls/{ls_set['id']}/setup", headers=basic(tenant.key), json=body)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "label_config_mismatch" and "'spam'" in error["message"] and "'other'" in error["message"]
    assert error["details"][0]["pointer"] == "/schema"


@pytest.mark.parametrize("config, problem", [
    ("<View><Text name='t' value='$text'/></View>", "no <Choices"),
    ("<View><Choices name='c' toName='t'><Choice value='a'/>", "not valid XML"),
    ('<!DOCTYPE x [<!ENTITY a "aaaa">]><View/>', "DOCTYPE"),
    ("<View><Image name='t' value='$image'/><Choices name='c' toName='t'/></View>", "no <Choices"),
])
def test_an_unusable_labeling_config_is_422_naming_the_problem(client, tenant, ls_set, config, problem):
    response = client.post(f"/ls/{ls_set['id']}/predict", headers=basic(tenant.key),
                           json={**predict_body(["x"]), "label_config": config})
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "invalid_label_config"
    assert problem in response.get_json()["error"]["message"]


# --- refusals in reftag's log (Label Studio shows only "422 Client Error … check the ML backend
# server console logs") --------------------------------------------------------------------------


def refusals(caplog):
    return [r for r in caplog.records if r.name == "reftag.label_studio" and r.levelno == logging.WARNING]


def test_a_refused_setup_is_logged_at_warning_with_the_reason_and_the_label_set(client, tenant, ls_set, caplog):
    body = {**SETUP_BODY, "schema": LABEL_CONFIG.replace('<Choice value="other"/>', '<Choice value="spam"/>')}
    with caplog.at_level(logging.INFO, logger="reftag"):
        assert client.post(f"/ls/{ls_set['id']}/setup", headers=basic(tenant.key), json=body).status_code == 422
    [line] = refusals(caplog)
    assert line.label_set_id == ls_set["id"] and line.status == 422 and line.code == "label_config_mismatch"
    message = line.getMessage()
    assert ls_set["id"] in message and "/setup" in message and "'spam'" in message and "'other'" in message


def test_a_setup_that_fits_is_logged_at_info_without_a_warning(client, tenant, ls_set, caplog):
    with caplog.at_level(logging.INFO, logger="reftag"):
        assert client.post(f"/ls/{ls_set['id']}/setup", headers=basic(tenant.key), json=SETUP_BODY).status_code == 200
    assert refusals(caplog) == []
    [line] = [r for r in caplog.records if r.name == "reftag.label_studio"]
    assert line.levelno == logging.INFO and "'topic'" in line.getMessage() and "$body" in line.getMessage()


@pytest.mark.parametrize("route, credentials, body, status, code, words", [
    ("predict", "key", predict_body(["x"]), 409, "no_adapter", "no trained adapter"),
    ("predict", "key", {**predict_body(["x"]), "label_config": "<View/>"}, 422, "invalid_label_config", "no <Choices"),
    ("webhook", "key", annotation_webhook(["refunds"]), 422, "invalid_examples", "'refunds'"),
    ("webhook", None, annotation_webhook(["billing"]), 401, "unauthorized", "Settings → Webhooks"),
    ("predict", "rt_wrong", predict_body(["x"]), 401, "unauthorized", "unknown or revoked"),
    ("webhook", "key", {"no": "action"}, 422, "invalid_request", "/action"),
], ids=["409-no-adapter", "422-config", "422-unknown-choice", "401-webhook-without-credentials", "401-wrong-key",
        "422-malformed"])
def test_every_refusal_on_ls_is_logged_at_warning_with_its_reason(client, tenant, ls_set, clean_redis, caplog, route,
                                                                  credentials, body, status, code, words):
    headers = {} if credentials is None else basic(tenant.key if credentials == "key" else credentials)
    with caplog.at_level(logging.INFO, logger="reftag"):
        response = client.post(f"/ls/{ls_set['id']}/{route}", headers=headers, json=body)
    assert response.status_code == status, response.get_json()
    [line] = refusals(caplog)
    assert line.label_set_id == ls_set["id"] and line.status == status and line.code == code
    assert words in line.getMessage() and f"/ls/{ls_set['id']}/{route}" in line.getMessage()


def test_another_tenants_label_set_is_logged_as_a_404(client, tenant, make_tenant, make_label_set, caplog):
    theirs = make_label_set(name="theirs", headers=make_tenant("globex").headers)
    with caplog.at_level(logging.INFO, logger="reftag"):
        assert client.get(f"/ls/{theirs['id']}/health", headers=basic(tenant.key)).status_code == 404
    [line] = refusals(caplog)
    assert line.label_set_id == theirs["id"] and line.status == 404


def test_the_refusal_is_a_json_log_line_with_the_label_set_id_as_a_field(client, tenant, ls_set):
    from service import logs

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter("web"))
    handler.addFilter(logs.ContextFilter())
    logger = logging.getLogger("reftag.label_studio")
    logger.addHandler(handler)
    try:
        client.post(f"/ls/{ls_set['id']}/setup", headers=basic(tenant.key), json={**SETUP_BODY, "schema": "<View/>"})
    finally:
        logger.removeHandler(handler)
    [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line["level"] == "warning" and line["label_set_id"] == ls_set["id"] and line["status"] == 422
    assert line["code"] == "invalid_label_config" and "no <Choices" in line["message"]


# --- versions ---------------------------------------------------------------------------------------


NOT_PROMOTED = {"promoted": False, "rule": "held_out", "metric": "macro_f1", "new_score": 0.81, "active_version": 2,
                "active_score": 0.84, "reason": "not activated: macro_f1 0.8100 < active version 2's 0.8400 on the "
                                                "40 evaluation examples"}


def add_train_job(db, tenant, ls_id, status, adapter_version=None, promotion=None, error=None):
    with db() as session:
        job = Job(tenant_id=tenant.id, type="train", status=status, label_set_id=ls_id, adapter_version=adapter_version,
                  metrics={"macro_f1": 0.81, "promotion": promotion} if promotion else None, error=error)
        session.add(job)
    return job.id


def test_versions_before_training_lists_none(client, tenant, ls_set):
    response = client.get(f"/ls/{ls_set['id']}/versions", headers=basic(tenant.key))
    assert response.status_code == 200
    body = response.get_json()
    assert body["versions"] == [] and body["model_version"] == "reftag-untrained" and body["detail"] == []
    assert body["message"] == "no version is active yet; no training yet" and body["latest_train_job"] is None


def test_versions_name_every_version_newest_first_the_active_one_and_a_version_not_promoted(
        client, tenant, ls_set, add_adapter, db):
    from sqlalchemy import update

    from store.models import Adapter

    add_adapter(ls_set["id"], version=1, active=False)
    add_adapter(ls_set["id"], version=2)
    add_adapter(ls_set["id"], version=3, active=False)
    with db() as session:
        session.execute(update(Adapter).where(Adapter.version == 3).values(note=NOT_PROMOTED["reason"]))
    job_id = add_train_job(db, tenant, ls_set["id"], "succeeded", adapter_version=3, promotion=NOT_PROMOTED)
    body = client.get(f"/ls/{ls_set['id']}/versions", headers=basic(tenant.key)).get_json()
    # Label Studio reads `versions`: the very strings predictions carry, so any one can select them.
    assert body["versions"] == ["reftag-v3", "reftag-v2", "reftag-v1"]
    assert body["model_version"] == "reftag-v2"
    assert client.post(f"/ls/{ls_set['id']}/setup", headers=basic(tenant.key),
                       json=SETUP_BODY).get_json()["model_version"] == body["model_version"]
    assert body["message"] == ("reftag-v2 is active; the latest training made reftag-v3, not activated: macro_f1 "
                               "0.8100 < active version 2's 0.8400 on the 40 evaluation examples")
    assert body["latest_train_job"]["id"] == job_id
    assert body["latest_train_job"]["metrics"]["promotion"]["promoted"] is False
    assert [(v["model_version"], v["active"], v["note"]) for v in body["detail"]] == [
        ("reftag-v3", False, NOT_PROMOTED["reason"]), ("reftag-v2", True, None), ("reftag-v1", False, None)]


@pytest.mark.parametrize("status, extra, says", [
    ("running", {}, "reftag-v1 is active; training {job} is running"),
    ("failed", {"error": {"code": "training_failed", "message": "out of memory"}},
     "reftag-v1 is active; the latest training {job} failed: out of memory"),
    ("cancelled", {}, "reftag-v1 is active; the latest training {job} was cancelled"),
    ("succeeded", {"adapter_version": 1, "promotion": {"promoted": True, "reason": "the first version of the set is "
                                                                                  "active"}},
     "reftag-v1 is active; the latest training made reftag-v1: the first version of the set is active"),
])
def test_versions_say_what_the_latest_training_did(client, tenant, ls_set, add_adapter, db, status, extra, says):
    add_adapter(ls_set["id"], version=1)
    job_id = add_train_job(db, tenant, ls_set["id"], status, **extra)
    body = client.get(f"/ls/{ls_set['id']}/versions", headers=basic(tenant.key)).get_json()
    assert body["message"] == says.format(job=job_id)


# --- predict --------------------------------------------------------------------------------------


def test_predict_before_training_is_409(client, tenant, ls_set, clean_redis):
    response = client.post(f"/ls/{ls_set['id']}/predict", headers=basic(tenant.key), json=predict_body(["x"]))
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "no_adapter"
    assert clean_redis.queue_length("predict") == 0


def test_a_task_without_the_configs_text_is_named(client, tenant, ls_set, add_adapter, clean_redis):
    add_adapter(ls_set["id"])
    body = predict_body(["fine", "also fine"])
    body["tasks"][1]["data"] = {"text": "the config reads $body"}
    response = client.post(f"/ls/{ls_set['id']}/predict", headers=basic(tenant.key), json=body)
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["pointer"] == "/tasks/1/data/body"
    assert clean_redis.queue_length("predict") == 0


def test_many_tasks_go_to_the_predict_queue_in_few_length_grouped_batches(make_app, tenant, ls_set, add_adapter,
                                                                          clean_redis):
    """No worker here: the request times out (504), leaving its messages to count."""
    add_adapter(ls_set["id"], version=4)
    client = make_app(max_predict_items=4, predict_timeout=0.3).test_client()
    texts = [f"ticket {'x' * (i * 7 % 23)} {i}" for i in range(10)]
    response = client.post(f"/ls/{ls_set['id']}/predict", headers=basic(tenant.key), json=predict_body(texts))
    assert response.status_code == 504 and response.get_json()["error"]["code"] == "predict_timeout"
    batches = [task["args"] for task in clean_redis.queued_tasks("predict")]
    assert len(batches) == 3  # 10 tasks, 4 per batch: 3 messages, not 10
    assert all(args[:3] == [tenant.id, ls_set["id"], 4] for args in batches)  # the version is pinned
    sent = [text for args in batches for text in args[3]]
    assert sorted(sent) == sorted(texts)
    lengths = sorted([len(t) for t in args[3]] for args in batches)
    assert all(max(a) <= min(b) for a, b in zip(lengths, lengths[1:]))  # grouped by length


STAND_IN_WORKER = """
from celery import Celery

app = Celery("stand_in", broker="{url}", backend="{url}")
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
LABELS = ["billing", "delivery", "other"]


@app.task(name="reftag.predict")
def predict(tenant_id, label_set_id, adapter_version, texts):
    answers = []
    for text in texts:
        label = "billing" if "charge" in text else "delivery" if "parcel" in text else "other"
        answers.append({{"labels": [label], "scores": {{n: 0.8 if n == label else 0.1 for n in LABELS}},
                        "needs_review": False, "adapter_version": adapter_version}})
    return answers
"""


def test_predict_answers_one_label_studio_prediction_per_task_in_order(make_app, tenant, ls_set, add_adapter,
                                                                       stand_in_predict_worker):
    """A stand-in predict worker — a real Celery worker process on the real broker, with a tiny
    task body instead of the model (the e2e test runs the model) — answers batches of 3."""
    add_adapter(ls_set["id"], version=2)
    stand_in_predict_worker(STAND_IN_WORKER)
    client = make_app(max_predict_items=3, predict_timeout=30).test_client()
    texts = ["I was charged twice", "my parcel is lost", "", "hello there", "charge me less, a longer one",
             "parcel", "ok"]
    response = client.post(f"/ls/{ls_set['id']}/predict", headers=basic(tenant.key), json=predict_body(texts))
    assert response.status_code == 200, response.get_json()
    results = response.get_json()["results"]
    expected = ["billing", "delivery", None, "other", "billing", "delivery", "other"]
    assert len(results) == len(texts)
    for result, label in zip(results, expected):
        if label is None:  # an empty text gets an empty prediction
            assert result == {"result": [], "score": 0.0, "model_version": "reftag-v2"}
        else:
            assert result == {"result": [{"from_name": "topic", "to_name": "review", "type": "choices",
                                          "value": {"choices": [label]}}],
                              "score": 0.8, "model_version": "reftag-v2"}
    started = time.monotonic()
    assert client.post(f"/ls/{ls_set['id']}/predict", headers=basic(tenant.key),
                       json=predict_body([])).get_json() == {"results": []}
    assert time.monotonic() - started < 5


def test_a_large_predict_runs_as_a_tag_job_on_the_tag_queue_not_the_predict_queue(make_app, tenant, ls_set,
                                                                                  add_adapter, clean_redis):
    """No worker here: nothing is written, so the request gives up (504) and cancels the job it
    made, leaving its messages and rows to inspect."""
    add_adapter(ls_set["id"], version=4)
    client = make_app(predict_via_tag_above=4, chunk_size=3, predict_timeout=0.3).test_client()
    texts = [f"ticket {i}" for i in range(10)]
    response = client.post(f"/ls/{ls_set['id']}/predict", headers=basic(tenant.key), json=predict_body(texts))
    assert response.status_code == 504 and response.get_json()["error"]["code"] == "predict_timeout"
    assert clean_redis.queue_length("predict") == 0
    assert clean_redis.queue_length("tag") == 4  # 10 tasks, 3 per chunk: a token per chunk
    [job] = client.get("/v1/jobs", headers=tenant.headers).get_json()["jobs"]  # an ordinary job of the tenant's
    job_id = job["id"]
    assert job["type"] == "tag" and job["adapter_version"] == 4 and job["status"] == "cancelled"
    assert job["detail"] == {"made_by": "label_studio_predict", "project": "3.1714641164"}
    assert job_id in response.get_json()["error"]["message"]


def test_a_predict_at_the_threshold_stays_on_the_predict_queue(make_app, tenant, ls_set, add_adapter, clean_redis):
    add_adapter(ls_set["id"])
    client = make_app(predict_via_tag_above=4, predict_timeout=0.3).test_client()
    response = client.post(f"/ls/{ls_set['id']}/predict", headers=basic(tenant.key),
                           json=predict_body(["a", "b", "c", "d"]))
    assert response.status_code == 504
    assert clean_redis.queue_length("predict") == 1 and clean_redis.queue_length("tag") == 0


@pytest.fixture
def stand_in_tag_worker(clean_redis):
    """A thread that takes chunk messages off the real `tag` queue and runs them through the real
    chunk life (store.jobs: claim, write results), labelling by keyword instead of a model."""
    import threading

    from store import jobs
    from store.results import ResultRow

    stop = threading.Event()

    def label(text):
        return "billing" if "charge" in text else "delivery" if "parcel" in text else "other"

    def work():
        redis = clean_redis.client()
        while not stop.is_set():
            raw = redis.lpop("tag")
            if raw is None:
                time.sleep(0.02)
                continue
            chunk = jobs.claim_next_chunk()  # the message is a token: "tag the next chunk"
            if chunk is not None:
                jobs.write_chunk_results(chunk.job_id, chunk.index, [
                    ResultRow(position, item_id, [label(text)], {label(text): 0.8}, False, chunk.adapter_version)
                    for position, item_id, text in zip(chunk.positions, chunk.item_ids, chunk.texts)])

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(5)


def test_a_large_predict_answers_from_its_tag_jobs_results_in_task_order(make_app, tenant, ls_set, add_adapter,
                                                                         clean_redis, stand_in_tag_worker, db):
    add_adapter(ls_set["id"], version=2)
    client = make_app(predict_via_tag_above=3, chunk_size=2, predict_timeout=30).test_client()
    texts = ["I was charged twice", "my parcel is lost", "", "hello there", "charge me less, a longer one",
             "parcel", "ok"]
    response = client.post(f"/ls/{ls_set['id']}/predict", headers=basic(tenant.key), json=predict_body(texts))
    assert response.status_code == 200, response.get_json()
    chosen = [r["result"][0]["value"]["choices"][0] if r["result"] else None for r in response.get_json()["results"]]
    assert chosen == ["billing", "delivery", None, "other", "billing", "delivery", "other"]
    assert {r["model_version"] for r in response.get_json()["results"]} == {"reftag-v2"}
    assert clean_redis.queue_length("predict") == 0
    with db() as session:
        from sqlalchemy import select

        from store.models import JobItem

        job = session.scalars(select(Job)).one()
        assert job.status == "succeeded" and job.done == 6  # the empty task is not asked
        items = session.scalars(select(JobItem.item_id).where(JobItem.job_id == job.id)
                                .order_by(JobItem.position)).all()
    assert items == ["101", "102", "104", "105", "106", "107"]  # named by Label Studio's task ids


@pytest.mark.parametrize("tasks, names", [
    ([{"id": 7}, {"id": 9}], ["7", "9"]),
    ([{"id": 7}, {"id": 7}], ["0", "1"]),  # repeated: item ids must be unique within a job
    ([{"id": 7}, {"data": {}}], ["0", "1"]),  # missing
])
def test_a_tag_jobs_items_are_named_by_task_id_else_by_position(tasks, names):
    from api.interop.label_studio import task_ids

    assert task_ids(tasks) == names


# --- webhook --------------------------------------------------------------------------------------


def stored(db, ls_id):
    from sqlalchemy import select

    with db() as session:
        return {e.text: e.labels for e in session.scalars(select(Example).where(Example.label_set_id == ls_id))}


def test_annotation_created_is_stored_once_however_often_it_is_sent(client, tenant, ls_set, db):
    url = f"/ls/{ls_set['id']}/webhook"
    first = client.post(url, headers=basic(tenant.key), json=annotation_webhook(["billing"]))
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["detail"] == {"added": 1, "duplicates": 0, "relabelled": False, "labels": ["billing"]}
    again = client.post(url, headers=basic(tenant.key), json=annotation_webhook(["billing"]))
    assert again.status_code == 201 and again.get_json()["detail"]["duplicates"] == 1
    assert stored(db, ls_set["id"]) == {"I was charged twice": ["billing"]}


def test_annotation_updated_relabels_the_example(client, tenant, ls_set, db):
    url = f"/ls/{ls_set['id']}/webhook"
    client.post(url, headers=basic(tenant.key), json=annotation_webhook(["billing"]))
    updated = client.post(url, headers=basic(tenant.key), json=annotation_webhook(["other"], "ANNOTATION_UPDATED"))
    assert updated.status_code == 201 and updated.get_json()["detail"]["relabelled"] is True
    assert stored(db, ls_set["id"]) == {"I was charged twice": ["other"]}


def test_an_unknown_choice_is_422_naming_it_and_pointing_at_it(client, tenant, ls_set, count_rows):
    response = client.post(f"/ls/{ls_set['id']}/webhook", headers=basic(tenant.key),
                           json=annotation_webhook(["refunds"]))
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert "'refunds'" in error["message"]
    assert error["details"][0]["pointer"] == "/annotation/result/0/value/choices/0"
    assert count_rows(Example) == 0


def test_an_annotation_of_an_empty_text_is_422_pointing_at_the_task(client, tenant, ls_set, count_rows):
    response = client.post(f"/ls/{ls_set['id']}/webhook", headers=basic(tenant.key),
                           json=annotation_webhook(["billing"], text="   "))
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["pointer"] == "/task/data/body"
    assert count_rows(Example) == 0


def test_skipped_annotations_and_other_actions_are_ignored(client, tenant, ls_set, count_rows):
    url = f"/ls/{ls_set['id']}/webhook"
    skipped = client.post(url, headers=basic(tenant.key), json=annotation_webhook([], cancelled=True))
    assert skipped.status_code == 200 and skipped.get_json()["status"] == "ignored"
    for action in ("TASKS_CREATED", "PROJECT_UPDATED", "ANNOTATIONS_DELETED"):
        response = client.post(url, headers=basic(tenant.key), json={"action": action, "project": PROJECT})
        assert response.status_code == 200 and response.get_json() == {"status": "ignored", "action": action,
                                                                        "detail": {}}
    assert count_rows(Example) == 0


def test_start_training_starts_a_train_job(client, tenant, ls_set, clean_redis, db, count_rows):
    url = f"/ls/{ls_set['id']}/webhook"
    too_few = client.post(url, headers=basic(tenant.key), json={"action": "START_TRAINING", "project": PROJECT})
    assert too_few.status_code == 422 and too_few.get_json()["error"]["code"] == "too_few_examples"
    for i in range(12):
        body = annotation_webhook([("billing", "delivery", "other")[i % 3]], text=f"ticket number {i}", task_id=100 + i)
        assert client.post(url, headers=basic(tenant.key), json=body).status_code == 201
    started = client.post(url, headers=basic(tenant.key), json={"action": "START_TRAINING", "project": PROJECT})
    assert started.status_code == 201, started.get_json()
    job = started.get_json()["detail"]["train_job"]
    assert job["type"] == "train" and job["status"] == "queued" and job["label_set_id"] == ls_set["id"]
    assert clean_redis.queued_tasks("train") == [{"task": "reftag.train_adapter", "args": [job["id"]]}]
    # Label Studio sends START_TRAINING on every annotation when its training webhook is on: they
    # join the queued job (200), one job is trained.
    again = client.post(url, headers=basic(tenant.key), json={"action": "START_TRAINING", "project": PROJECT})
    assert again.status_code == 200 and again.get_json()["detail"]["train_job"]["id"] == job["id"]
    assert count_rows(Job) == 1 and len(clean_redis.queued_tasks("train")) == 1


def test_train_stores_label_studios_annotated_tasks_then_trains(client, tenant, ls_set, clean_redis, db):
    """What Label Studio sends to /train when training webhooks are off: its JSON export."""
    tasks = []
    for i in range(13):
        webhook = annotation_webhook([("billing", "delivery", "other")[i % 3]], text=f"ticket {i}", task_id=100 + i)
        tasks.append({**copy.deepcopy(webhook["task"]), "annotations": [webhook["annotation"]], "predictions": []})
    tasks[12]["annotations"] = []  # not labelled yet: skipped, and said so
    body = {"annotations": tasks, "project": "3.1714641164", "label_config": LABEL_CONFIG,
            "params": {"login": None, "password": None}}
    response = client.post(f"/ls/{ls_set['id']}/train", headers=basic(tenant.key), json=body)
    assert response.status_code == 201, response.get_json()
    detail = response.get_json()["detail"]
    assert detail["added"] == 12 and [s["index"] for s in detail["skipped"]] == [12]
    assert len(stored(db, ls_set["id"])) == 12
    assert clean_redis.queued_tasks("train")[0]["args"] == [detail["train_job"]["id"]]


def test_chinese_choices_and_texts_pass_through_unchanged(client, tenant, make_label_set, db):
    ls = make_label_set(name="新闻", labels=("财经", "体育", "教育"))
    config = ('<View><Text name="标题" value="$标题"/><Choices name="类别" toName="标题">'
              '<Choice value="财经"/><Choice value="体育"/><Choice value="教育"/></Choices></View>')
    setup = client.post(f"/ls/{ls['id']}/setup", headers=basic(tenant.key), json={**SETUP_BODY, "schema": config})
    assert setup.status_code == 200, setup.get_json()
    body = annotation_webhook(["体育"], text="国足客场两球击败对手")
    body["annotation"]["result"][0].update(from_name="类别", to_name="标题")
    body["task"]["data"] = {"标题": "国足客场两球击败对手"}
    body["project"] = {**PROJECT, "label_config": config}
    response = client.post(f"/ls/{ls['id']}/webhook", headers=basic(tenant.key), json=body)
    assert response.status_code == 201, response.get_json()
    assert '"体育"' in response.get_data(as_text=True)  # not \\u-escaped
    assert stored(db, ls["id"]) == {"国足客场两球击败对手": ["体育"]}
