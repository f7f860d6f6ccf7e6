"""A short run of bench/load.py against the running stack: clients polling job status and
submitting small jobs while one submits 1,000-item jobs, with no error of any kind. (Latency
targets live in the benchmark, bench/RESULTS.md, never as timed assertions here.)"""
from __future__ import annotations

import asyncio

import pytest

from bench.load import LARGE, SMALL, STATUS, cancel_unfinished, generate_load


# SQLite only: PostgreSQL under concurrent writers is test_database_busy.py's.
@pytest.mark.parametrize("new_database", ["sqlite"], indirect=True)
def test_clients_polling_and_submitting_get_no_errors(stack, news_en):
    label_set_id, _ = stack.create_trained_label_set(news_en, per_label=8, config={"epochs": 1, "min_steps": 0})
    texts = [r["text"] for r in news_en.test]
    report = asyncio.run(generate_load(stack.base_url, stack.api_key, label_set_id, texts, clients=10, seconds=10,
                                       think=0.2, submit_share=0.1, large_pause=3.0))
    try:
        assert report.error_count() == 0, report.errors
        counts = {row["request"]: row["count"] for row in report.rows()}
        assert counts[STATUS] >= 100 and counts[SMALL] >= 5 and counts[LARGE] >= 2, counts
        client = stack.client()
        totals = [client.get(f"{stack.base_url}/v1/jobs/{job_id}", timeout=30).json()["progress"]["total"]
                  for job_id in report.job_ids]  # every job a 2xx answered for exists, whole
        assert sorted(totals) == [10] * counts[SMALL] + [1000] * counts[LARGE]
    finally:
        cancel_unfinished(stack, report.job_ids)
