"""Label Studio's ML backend calls against the real stack with a trained adapter: connect (health,
setup), pre-annotate 1,000 tasks in one /predict (a tag job, as it is above 256 tasks), and an
annotation arriving by webhook."""
from __future__ import annotations

import time

import pytest
import requests

N_TASKS = 1000


def label_config(label_names: list[str]) -> str:
    choices = "".join(f'<Choice value="{name}"/>' for name in label_names)
    return (f'<View><Text name="news" value="$headline"/><Choices name="topic" toName="news" choice="single">'
            f"{choices}</Choices></View>")


@pytest.mark.parametrize("new_database", ["sqlite"], indirect=True)
def test_label_studio_connects_and_pre_annotates_1000_tasks(stack, news_en):
    label_set_id, trained = stack.create_trained_label_set(news_en, per_label=12, config={"epochs": 2, "min_steps": 0})
    backend = f"{stack.base_url}/ls/{label_set_id}"
    session = requests.Session()
    session.auth = ("label-studio", stack.api_key)  # Label Studio's "Basic auth" option
    config = label_config(news_en.label_names)

    assert session.get(f"{backend}/health", timeout=10).json()["status"] == "UP"
    setup = session.post(f"{backend}/setup", timeout=10, json={
        "project": "7.1714641164", "schema": config, "hostname": "http://localhost:8080",
        "access_token": "token", "extra_params": None})
    assert setup.status_code == 200 and setup.json() == {"model_version": f"reftag-v{trained['adapter_version']}"}

    rows = news_en.test_rows(N_TASKS)
    tasks = [{"id": 5000 + i, "data": {"headline": r["text"]}, "meta": {}, "project": 7, "annotations": [],
              "predictions": [], "is_labeled": False} for i, r in enumerate(rows)]
    body = {"tasks": tasks, "project": "7.1714641164", "label_config": config,
            "params": {"login": None, "password": None, "context": None}}
    t0 = time.monotonic()
    answer = session.post(f"{backend}/predict", json=body, timeout=600)
    predict_s = time.monotonic() - t0
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert len(results) == N_TASKS
    chosen = [r["result"][0]["value"]["choices"] for r in results]
    assert all(r["result"][0]["from_name"] == "topic" and r["result"][0]["to_name"] == "news" for r in results)
    assert all(len(c) == 1 and c[0] in news_en.label_names for c in chosen)
    accuracy = sum(c == [row["label"]] for c, row in zip(chosen, rows)) / N_TASKS
    print(f"Label Studio /predict: {N_TASKS} tasks in {predict_s:.2f}s ({N_TASKS / predict_s:.0f} tasks/s), "
          f"accuracy {accuracy:.3f}")
    assert accuracy > 0.4  # chance is 0.25; a small adapter (12 examples per label, 2 epochs)
    # Above REFTAG_PREDICT_VIA_TAG_ABOVE (256) it ran as a tag job, listed with the tenant's jobs.
    tag_jobs = stack.client().get(f"{stack.base_url}/v1/jobs", params={"type": "tag", "label_set_id": label_set_id},
                                  timeout=10).json()["jobs"]
    assert [(j["status"], j["progress"]["done"], j["detail"]["made_by"]) for j in tag_jobs] == [
        ("succeeded", N_TASKS, "label_studio_predict")]

    # The same answers as reftag's own predict: batching changes nothing, in order.
    sample = [0, 1, 417, 998]
    own = stack.client().post(f"{stack.base_url}/v1/predict", timeout=60, json={
        "label_set_id": label_set_id, "items": [{"text": rows[i]["text"]} for i in sample]}).json()["results"]
    for i, mine in zip(sample, own):
        assert chosen[i] == mine["labels"]
        assert results[i]["score"] == pytest.approx(mine["scores"][mine["labels"][0]], abs=1e-5)

    annotated = session.post(f"{backend}/webhook", timeout=10, json={
        "action": "ANNOTATION_CREATED",
        "annotation": {"id": 1, "result": [{"from_name": "topic", "to_name": "news", "type": "choices",
                                            "value": {"choices": [rows[0]["label"]]}}], "was_cancelled": False,
                       "task": 5000},
        "task": tasks[0], "project": {"id": 7, "label_config": config}})
    assert annotated.status_code == 201 and annotated.json()["detail"]["added"] == 1
    label_set = stack.client().get(f"{stack.base_url}/v1/label-sets/{label_set_id}", timeout=10).json()
    assert label_set["example_count"] == 12 * len(news_en.label_names) + 1
