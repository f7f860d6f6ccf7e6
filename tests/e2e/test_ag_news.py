"""The whole flow over HTTP against the real stack: label set → examples → train → tag → results."""
from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

AG_NEWS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ag_news"
TRAIN_PER_LABEL = 75
N_TEST = 500


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def balanced(rows: list[dict], per_label: int) -> list[dict]:
    by_label: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if len(by_label[row["label"]]) < per_label:
            by_label[row["label"]].append(row)
    return [row for group in zip(*by_label.values()) for row in group]  # interleaved


def wait_for_job(client, base_url: str, job_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"{base_url}/v1/jobs/{job_id}", timeout=10).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s: {job}")


def read_all_results(client, base_url: str, job_id: str) -> list[dict]:
    results, cursor = [], None
    while True:
        params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"{base_url}/v1/jobs/{job_id}/results", params=params, timeout=30)
        assert page.status_code == 200, page.text
        body = page.json()
        results += body["results"]
        cursor = body.get("next_cursor")
        if not cursor:
            return results


def test_ag_news_label_set_trains_and_tags_500_items(stack):
    client, base = stack.client(), stack.base_url
    label_names = json.loads((AG_NEWS / "labels.json").read_text())
    examples = balanced(read_jsonl(AG_NEWS / "train.jsonl"), TRAIN_PER_LABEL)
    test_rows = read_jsonl(AG_NEWS / "test.jsonl")[:N_TEST]
    timings = {}

    created = client.post(f"{base}/v1/label-sets", json={
        "name": "ag-news", "multi_label": False, "labels": [{"name": n} for n in label_names],
    })
    assert created.status_code == 201, created.text
    label_set_id = created.json()["id"]

    added = client.post(f"{base}/v1/label-sets/{label_set_id}/examples", json={
        "examples": [{"text": r["text"], "label": r["label"]} for r in examples],
    })
    assert added.status_code == 201, added.text
    assert added.json()["added"] == len(examples) == 4 * TRAIN_PER_LABEL

    t0 = time.monotonic()
    train = client.post(f"{base}/v1/label-sets/{label_set_id}/train", json={})
    assert train.status_code == 202, train.text
    trained = wait_for_job(client, base, train.json()["id"], timeout=300)
    timings["train_s"] = time.monotonic() - t0
    assert trained["status"] == "succeeded", trained
    version = trained["adapter_version"]
    assert version == 1 and trained["metrics"]["macro_f1"] > 0.5

    items = [{"id": f"ag-{i}", "text": r["text"]} for i, r in enumerate(test_rows)]
    t0 = time.monotonic()
    submitted = client.post(f"{base}/v1/jobs", json={"label_set_id": label_set_id, "items": items},
                            headers={"Idempotency-Key": f"ag-news-{label_set_id}"})
    assert submitted.status_code == 202, submitted.text
    job = wait_for_job(client, base, submitted.json()["id"], timeout=300)
    timings["tag_s"] = time.monotonic() - t0
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"total": N_TEST, "done": N_TEST, "failed": 0}
    assert job["adapter_version"] == version

    results = read_all_results(client, base, job["id"])
    assert [r["item_id"] for r in results] == [item["id"] for item in items]  # each once, in order
    assert all(len(r["labels"]) == 1 and set(r["scores"]) == set(label_names) for r in results)
    assert all(r["adapter_version"] == version for r in results)
    accuracy = sum(r["labels"] == [row["label"]] for r, row in zip(results, test_rows)) / N_TEST
    print(f"ag_news on {stack.database_url.split(':')[0]}: accuracy {accuracy:.3f}, "
          f"train {timings['train_s']:.1f}s, tag {N_TEST} items {timings['tag_s']:.1f}s")
    assert accuracy >= 0.6  # chance is 0.25
