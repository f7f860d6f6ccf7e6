"""Trust and review through the real stack: a trained adapter's calibration, auto-accept at the
label set's review_precision, the job's coverage, the review queue, and a review that becomes an
example with its provenance."""
from __future__ import annotations

import math

from reft_core.calibration import threshold_for

PER_LABEL = 12
N_ITEMS = 40


def test_tag_results_are_auto_accepted_above_the_adapters_threshold_and_the_rest_queue_for_review(stack, news_en):
    client, base = stack.client(), stack.base_url
    label_set_id, trained = stack.create_trained_label_set(news_en, PER_LABEL, config={"epochs": 2, "min_steps": 0})
    metrics = trained["metrics"]
    assert metrics["evaluation"] == "k-fold"
    assert {"ece_before", "ece_after"} <= set(metrics["calibration"]) and metrics["review"]["thresholds"]

    patched = client.patch(f"{base}/v1/label-sets/{label_set_id}", json={"review_precision": 0.9})
    assert patched.status_code == 200 and patched.json()["review_precision"] == 0.9
    threshold = threshold_for(metrics["review"], 0.9)
    assert threshold is not None

    rows = news_en.test_rows(N_ITEMS)
    submitted = client.post(f"{base}/v1/jobs", json={
        "label_set_id": label_set_id, "items": [{"id": f"r{i}", "text": r["text"]} for i, r in enumerate(rows)]})
    assert submitted.status_code == 202, submitted.text
    job = stack.wait_for_job(submitted.json()["id"])
    assert job["status"] == "succeeded", job
    results = stack.results(job["id"])
    assert all(r["confidence"] is not None for r in results)
    # needs_review is exactly "confidence below the adapter's threshold for 0.9"
    assert [r["needs_review"] for r in results] == [r["confidence"] < threshold for r in results]
    needing = [r for r in results if r["needs_review"]]
    review = job["review"]
    assert review["review_precision"] == 0.9 and review["needs_review"] == len(needing)
    assert review["coverage"] == round((N_ITEMS - len(needing)) / N_ITEMS, 4)

    predicted = client.post(f"{base}/v1/predict", json={"label_set_id": label_set_id,
                                                        "items": [{"text": rows[0]["text"]}]}).json()["results"][0]
    assert predicted["needs_review"] == (predicted["confidence"] < threshold)
    assert math.isclose(predicted["confidence"], results[0]["confidence"], abs_tol=1e-4)

    queue = client.get(f"{base}/v1/jobs/{job['id']}/review").json()
    assert [i["item_id"] for i in queue["items"]] == [r["item_id"] for r in sorted(
        needing, key=lambda r: (r["confidence"], int(r["item_id"][1:])))][:50]
    if not needing:  # everything was auto-accepted: review the least confident anyway
        needing = sorted(results, key=lambda r: r["confidence"])
    item = needing[0]
    truth = rows[int(item["item_id"][1:])]["label"]
    before = client.get(f"{base}/v1/label-sets/{label_set_id}").json()["example_count"]
    reviewed = client.post(f"{base}/v1/jobs/{job['id']}/items/{item['item_id']}/review", json={"label": truth})
    assert reviewed.status_code == 200, reviewed.text
    assert reviewed.json()["result"]["review"]["labels"] == [truth]
    assert client.get(f"{base}/v1/label-sets/{label_set_id}").json()["example_count"] == before + 1
