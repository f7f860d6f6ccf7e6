"""The whole flow over HTTP against the real stack: label set → examples → train → tag → results."""
from __future__ import annotations

import time

TRAIN_PER_LABEL = 50
N_TEST = 240  # the fixture's whole test split


def test_english_news_label_set_trains_and_tags_the_test_split(stack, news_en):
    client, base = stack.client(), stack.base_url
    test_rows = news_en.test_rows(N_TEST)

    t0 = time.monotonic()
    label_set_id, trained = stack.create_trained_label_set(news_en, TRAIN_PER_LABEL)
    train_s = time.monotonic() - t0
    version = trained["adapter_version"]
    assert version == 1 and trained["metrics"]["macro_f1"] > 0.5

    predicted = client.post(f"{base}/v1/predict", json={
        "label_set_id": label_set_id, "items": [{"text": "Stocks and oil prices fell as the dollar rose"}],
    })
    assert predicted.status_code == 200, predicted.text
    [answer] = predicted.json()["results"]
    assert set(answer["scores"]) == set(news_en.label_names) and answer["adapter_version"] == version

    items = [{"id": f"en-{i}", "text": r["text"]} for i, r in enumerate(test_rows)]
    t0 = time.monotonic()
    submitted = client.post(f"{base}/v1/jobs", json={"label_set_id": label_set_id, "items": items},
                            headers={"Idempotency-Key": f"news-en-{label_set_id}"})
    assert submitted.status_code == 202, submitted.text
    job = stack.wait_for_job(submitted.json()["id"])
    tag_s = time.monotonic() - t0
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"total": N_TEST, "done": N_TEST, "failed": 0}
    assert job["adapter_version"] == version

    results = stack.results(job["id"])
    assert [r["item_id"] for r in results] == [item["id"] for item in items]  # each once, in order
    assert all(len(r["labels"]) == 1 and set(r["scores"]) == set(news_en.label_names) for r in results)
    assert all(r["adapter_version"] == version for r in results)
    accuracy = sum(r["labels"] == [row["label"]] for r, row in zip(results, test_rows)) / N_TEST
    print(f"English news on {stack.database_url.split(':')[0]}: accuracy {accuracy:.3f}, "
          f"train {train_s:.1f}s ({TRAIN_PER_LABEL * 4} examples), tag {N_TEST} items {tag_s:.1f}s")
    assert accuracy >= 0.6  # chance is 0.25
