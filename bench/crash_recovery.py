"""How long a killed tag worker costs a job: a black-box run of `--items` AG News texts through the
real stack (gunicorn, redis-server, Celery workers, the reconciler), once unbroken and once with
the only tag worker SIGKILLed at 34 % and 77 % of the job and restarted at once. Prints a table
and the command; the broken run must answer every item once, with the unbroken run's labels.

    python -m bench.crash_recovery [--items 3000] [--database sqlite|postgresql] [--kill-at 0.34 0.77]

Settings are the defaults (chunk size, chunk lease, reconcile interval) unless the environment
sets them. Each killed chunk is taken over once its lease runs out — by the next token in the
`tag` queue, or by the reconciler's — so the cost of a kill is about a lease length plus the
restarted worker's start, not the old 120 s lease.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from .data import read_jsonl

OUT = Path(__file__).resolve().parent / "out"


def run_job(stack, label_set_id: str, texts: list[str], kill_at: list[float]) -> dict:
    """Submit one job, kill and restart the tag worker as its progress passes each share of
    `kill_at`; return its seconds, the job and its results."""
    client, base = stack.client(), stack.base_url
    items = [{"id": f"i-{i}", "text": text} for i, text in enumerate(texts)]
    started = time.monotonic()
    submitted = client.post(f"{base}/v1/jobs", json={"label_set_id": label_set_id, "items": items}, timeout=120)
    assert submitted.status_code == 202, submitted.text
    job_id, kills = submitted.json()["id"], []
    pending = sorted(kill_at)
    while True:
        job = client.get(f"{base}/v1/jobs/{job_id}", timeout=30).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            break
        if pending and job["progress"]["done"] >= pending[0] * len(texts):
            tagger = next(w for w in reversed(stack.workers) if w.alive() and w.name.startswith("tag"))
            tagger.kill()
            kills.append({"at_done": job["progress"]["done"], "at_s": round(time.monotonic() - started, 1)})
            restarted = stack.start_worker("tag")
            restarted.name = f"tag-{len(kills)}"
            pending.pop(0)
        time.sleep(0.1)
    seconds = time.monotonic() - started
    return {"job": job, "seconds": seconds, "kills": kills, "results": stack.results(job_id, page_size=1000)}


def redone_chunks(database_url: str, job_id: str) -> int:
    from sqlalchemy import create_engine, func, select
    from sqlalchemy.orm import Session

    from store.models import Chunk

    engine = create_engine(database_url)
    try:
        with Session(engine) as s:
            return int(s.scalar(select(func.sum(Chunk.attempts - 1)).where(Chunk.job_id == job_id)) or 0)
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--kill-at", type=float, nargs="*", default=[0.34, 0.77])
    args = parser.parse_args()

    from service.settings import get_settings
    from tests.e2e.conftest import LabelledData, PostgresCluster, Stack, _postgres_bindir

    settings = get_settings()
    run_dir = Path(tempfile.mkdtemp(prefix="reftag-crash-"))
    cluster = PostgresCluster(_postgres_bindir()) if args.database == "postgresql" else None
    url = cluster.create_database("reftag_crash") if cluster else f"sqlite:///{run_dir / 'reftag.db'}"
    stack = Stack(url, run_dir, **{k: v for k, v in os.environ.items() if k.startswith("REFTAG_")})
    try:
        stack.start_worker("train,predict")
        tagger = stack.start_worker("tag")
        tagger.name = "tag-0"
        stack.start_beat()
        stack.start_web()
        label_set_id, _ = stack.create_trained_label_set(LabelledData("news_en"), per_label=12,
                                                         config={"epochs": 2, "min_steps": 0})
        stack.wait_ready(tagger)
        rows = read_jsonl("ag_news", "test")
        texts = [rows[i % len(rows)]["text"] for i in range(args.items)]
        unbroken = run_job(stack, label_set_id, texts, [])
        broken = run_job(stack, label_set_id, texts, args.kill_at)
        redone = redone_chunks(url, broken["job"]["id"])
    finally:
        stack.stop()
        if cluster:
            cluster.stop()

    expected = [r["labels"] for r in unbroken["results"]]
    got = broken["results"]
    correct = (broken["job"]["status"] == "succeeded"
               and broken["job"]["progress"] == {"total": args.items, "done": args.items, "failed": 0}
               and [r["item_id"] for r in got] == [f"i-{i}" for i in range(args.items)]
               and [r["labels"] for r in got] == expected)
    ratio = broken["seconds"] / unbroken["seconds"]
    print(f"command: python -m bench.crash_recovery {shlex.join(sys.argv[1:])}")
    print(f"database: {args.database}; chunk size {settings.chunk_size}, "
          f"chunk lease {settings.chunk_lease_seconds:g} s, reconcile every {settings.reconcile_interval:g} s")
    print("| run | items | seconds | × unbroken | kills (done, s) | chunks redone | every item once, same labels |")
    print("|---|---|---|---|---|---|---|")
    print(f"| unbroken | {args.items} | {unbroken['seconds']:.1f} | 1.00 | – | – | – |")
    kills = ", ".join(f"{k['at_done']} @ {k['at_s']} s" for k in broken["kills"])
    print(f"| tag worker SIGKILLed {len(broken['kills'])}× | {args.items} | {broken['seconds']:.1f} | {ratio:.2f} | "
          f"{kills} | {redone} | {'yes' if correct else 'NO'} |")
    OUT.mkdir(exist_ok=True)
    (OUT / "crash_recovery.json").write_text(json.dumps({
        "args": vars(args), "unbroken_s": unbroken["seconds"], "broken_s": broken["seconds"], "ratio": ratio,
        "kills": broken["kills"], "redone_chunks": redone, "correct": correct,
        "chunk_lease_seconds": settings.chunk_lease_seconds, "reconcile_interval": settings.reconcile_interval,
    }, indent=1))
    if not correct:
        sys.exit("the broken run's results differ from the unbroken run's")


if __name__ == "__main__":
    main()
