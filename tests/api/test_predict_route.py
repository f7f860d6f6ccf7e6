"""POST /v1/predict: checks before the queue, and clear answers when no worker or no broker."""

from store.models import Job


def test_predict_without_adapter_is_a_conflict(client, auth, make_label_set, clean_redis):
    ls = make_label_set()
    response = client.post("/v1/predict", headers=auth, json={"label_set_id": ls["id"], "items": [{"text": "a"}]})
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "no_adapter"
    assert clean_redis.queue_length("predict") == 0


def test_predict_on_another_tenants_label_set_is_404(client, make_tenant, make_label_set, add_adapter, auth):
    other = make_tenant("globex")
    theirs = make_label_set(headers=other.headers)
    add_adapter(theirs["id"])
    response = client.post("/v1/predict", headers=auth, json={"label_set_id": theirs["id"], "items": [{"text": "a"}]})
    assert response.status_code == 404


def test_too_many_predict_items_is_refused_with_the_limit(make_app, auth, make_label_set, add_adapter):
    client = make_app(max_predict_items=2).test_client()
    ls = make_label_set()
    add_adapter(ls["id"])
    response = client.post("/v1/predict", headers=auth, json={"label_set_id": ls["id"], "items": [{"text": "a"}] * 3})
    assert response.status_code == 413 and "limit is 2" in response.get_json()["error"]["message"]


def test_predict_without_a_worker_times_out_with_504(make_app, auth, make_label_set, add_adapter, clean_redis):
    client = make_app(predict_timeout=0.5).test_client()
    ls = make_label_set()
    add_adapter(ls["id"])
    response = client.post("/v1/predict", headers=auth, json={"label_set_id": ls["id"], "items": [{"text": "a"}]})
    assert response.status_code == 504
    error = response.get_json()["error"]
    assert error["code"] == "predict_timeout" and "predict" in error["message"]
    assert clean_redis.queued_tasks("predict")[0]["args"][1:] == [ls["id"], None, ["a"]]


STAND_IN_WORKER = """
from celery import Celery

app = Celery("stand_in", broker="{url}", backend="{url}")
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])


@app.task(name="reftag.predict")
def predict(tenant_id, label_set_id, adapter_version, texts):
    return [{{"labels": ["billing"], "scores": {{"billing": 0.8, "other": 0.2}}, "needs_review": False,
             "confidence": 0.8, "adapter_version": 1}} for _ in texts]
"""


def test_predict_answers_what_the_worker_returns(make_app, auth, make_label_set, add_adapter, stand_in_predict_worker):
    """A stand-in predict worker — a real Celery worker process on the real broker and result
    backend, with a tiny task body instead of the model — answers the API's request."""
    stand_in_predict_worker(STAND_IN_WORKER)
    client = make_app(predict_timeout=30).test_client()
    ls = make_label_set(labels=("billing", "other"))
    add_adapter(ls["id"])
    response = client.post("/v1/predict", headers=auth,
                           json={"label_set_id": ls["id"], "items": [{"text": "refund", "id": "r1"}, {"text": "x"}]})
    assert response.status_code == 200, response.get_json()
    expected = {"labels": ["billing"], "scores": {"billing": 0.8, "other": 0.2}, "needs_review": False,
                "confidence": 0.8, "adapter_version": 1, "error": None}
    assert response.get_json()["results"] == [{"item_id": "r1", **expected}, {"item_id": "1", **expected}]


def test_predict_while_redis_is_down_is_503(client, auth, make_label_set, add_adapter, redis_server, count_rows):
    ls = make_label_set()
    add_adapter(ls["id"])
    redis_server.stop()
    try:
        response = client.post("/v1/predict", headers=auth, json={"label_set_id": ls["id"], "items": [{"text": "a"}]})
        assert response.status_code == 503 and response.headers["Retry-After"]
    finally:
        redis_server.start()
    assert count_rows(Job) == 0
