"""Load on the running service: N clients polling job status and submitting small tag jobs for a
fixed time, while one more client submits 1,000-item jobs; per kind of request, how many, how
many failed (any answer but 2xx, or no answer), and p50 / p99 / max latency.

    python -m bench.load [--clients 50] [--seconds 60] [--think 0.5] [--database sqlite|postgresql]
    python -m bench.load --scenario fairness [--clients 50] [--big-items 100000] [--seconds 60]

The stack is the one the end-to-end tests start (gunicorn with 2 processes x 4 threads, one
Celery worker on every queue, redis-server, the database), on loopback. Each client waits
`--think` seconds (x 0.5-1.5, at random) between requests, as a poller would, and submits a
job instead of polling with probability `--submit-share`; what it submitted joins the jobs
everyone polls. Submissions carry an Idempotency-Key, so a request re-sent on a fresh
connection cannot make a second job. The clients are asyncio coroutines on one thread with a
small HTTP/1.1 keep-alive client, so that they take little of the CPU the server needs.

`--scenario fairness`: `--clients` tenants; each but one submits a `--small-items` job, polls it
every 0.2 s until its first result, waits `--think`, and again, for `--seconds` — once alone and
once while the last tenant's `--big-items` job runs (submitted, and its first chunk running,
before the others start). Reported: p50 / p99 time-to-first-result of the small jobs, each way.
The tenants' label sets hold a copy of one trained adapter (copied in the database: training
the same adapter 50 times would measure nothing here).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shlex
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .data import read_jsonl

OUT = Path(__file__).resolve().parent / "out"
STATUS, SMALL, LARGE = "status read", "submit", "submit 1,000 items"


class Http:
    """One keep-alive HTTP/1.1 connection (JSON bodies with Content-Length, as reftag answers)."""

    def __init__(self, base_url: str, api_key: str) -> None:
        url = urlsplit(base_url)
        self.host, self.port = url.hostname, url.port
        self.auth = f"Bearer {api_key}"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: object = None,
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        payload = json.dumps(body).encode() if body is not None else b""
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Authorization: {self.auth}",
                f"Content-Length: {len(payload)}"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None:
            head.append("Content-Type: application/json")
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
        reused = self.writer is not None
        try:
            return await self._exchange(raw)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.close()
            if not reused:
                raise
            return await self._exchange(raw)  # the server had closed the idle connection: once more, afresh

    async def _exchange(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(raw)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionResetError("connection closed before an answer")
        status = int(status_line.split()[1])
        length, keep = 0, True
        while (line := await self.reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                keep = False
        body = await self.reader.readexactly(length)
        if not keep:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Report:
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: {STATUS: [], SMALL: [], LARGE: []})
    errors: dict[str, list[str]] = field(default_factory=lambda: {STATUS: [], SMALL: [], LARGE: []})
    job_ids: list[str] = field(default_factory=list)

    def error_count(self) -> int:
        return sum(len(e) for e in self.errors.values())

    def rows(self) -> list[dict]:
        rows = []
        for kind, values in self.latencies.items():
            ordered = sorted(values)
            rows.append({"request": kind, "count": len(values) + len(self.errors[kind]),
                         "errors": len(self.errors[kind]),
                         "p50_ms": percentile(ordered, 50), "p99_ms": percentile(ordered, 99),
                         "max_ms": ordered[-1] if ordered else None})
        return rows

    def table(self) -> str:
        lines = ["| request | count | errors | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|---|"]
        for r in self.rows():
            cells = [f"{r[k]:.1f}" if r[k] is not None else "–" for k in ("p50_ms", "p99_ms", "max_ms")]
            lines.append(f"| {r['request']} | {r['count']} | {r['errors']} | " + " | ".join(cells) + " |")
        total = sum(r["count"] for r in self.rows())
        lines.append(f"\n{total} requests in {self.seconds:.0f} s ({total / self.seconds:.0f}/s), "
                     f"{self.error_count()} errors")
        return "\n".join(lines)


def percentile(ordered: list[float], p: float) -> float | None:
    """Nearest-rank percentile of sorted values."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(len(ordered) * p / 100) - 1)]


async def timed(report: Report, kind: str, call) -> bytes | None:  # noqa: ANN001
    t0 = time.perf_counter()
    try:
        status, body = await call
    except Exception as e:  # no answer: counted, never hidden
        report.errors[kind].append(f"{type(e).__name__}: {e}")
        return None
    ms = (time.perf_counter() - t0) * 1000
    if not 200 <= status < 300:
        report.errors[kind].append(f"{status}: {body[:200].decode(errors='replace')}")
        return None
    report.latencies[kind].append(ms)
    return body


async def generate_load(base_url: str, api_key: str, label_set_id: str, texts: list[str], *, clients: int,
                        seconds: float, think: float, submit_share: float = 0.05, small_items: int = 10,
                        large_items: int = 1000, large_pause: float = 2.0, seed: int = 0) -> Report:
    """Run the load against a started service (one label set with an active adapter) and
    return what was measured. `large_pause` < 0 submits no 1,000-item jobs."""
    report = Report(seconds)
    rng = random.Random(seed)
    end = time.monotonic() + seconds

    def job_body(n: int) -> dict:
        start = rng.randrange(len(texts))
        return {"label_set_id": label_set_id,
                "items": [{"id": str(i), "text": texts[(start + i) % len(texts)]} for i in range(n)]}

    async def submit(http: Http, kind: str, n: int) -> None:
        body = await timed(report, kind, http.request("POST", "/v1/jobs", job_body(n),
                                                      {"Idempotency-Key": uuid.uuid4().hex}))
        if body is not None:
            report.job_ids.append(json.loads(body)["id"])

    async def client(number: int) -> None:
        http, own = Http(base_url, api_key), random.Random(seed * 1000 + number)
        await asyncio.sleep(own.uniform(0, think))  # do not all start in the same millisecond
        try:
            while time.monotonic() < end:
                if own.random() < submit_share or not report.job_ids:
                    await submit(http, SMALL, small_items)
                else:
                    job_id = own.choice(report.job_ids)
                    await timed(report, STATUS, http.request("GET", f"/v1/jobs/{job_id}"))
                await asyncio.sleep(think * own.uniform(0.5, 1.5))
        finally:
            http.close()

    async def large_submitter() -> None:
        http = Http(base_url, api_key)
        try:
            while large_pause >= 0 and time.monotonic() < end:
                await submit(http, LARGE, large_items)
                await asyncio.sleep(large_pause)
        finally:
            http.close()

    t0 = time.monotonic()
    await asyncio.gather(large_submitter(), *(client(n) for n in range(clients)))
    report.seconds = time.monotonic() - t0
    return report


async def time_to_first_results(base_url: str, tenants: list[tuple[str, str]], texts: list[str], *,
                                seconds: float, think: float, small_items: int, seed: int = 0) -> list[float]:
    """Each (api key, label set) in `tenants` submits small jobs in a loop for `seconds`; the
    seconds from each POST until a poll first sees a result."""
    found: list[float] = []
    end = time.monotonic() + seconds

    async def client(number: int, api_key: str, label_set_id: str) -> None:
        http, own = Http(base_url, api_key), random.Random(seed * 1000 + number)
        await asyncio.sleep(own.uniform(0, think))
        try:
            while time.monotonic() < end:
                start = own.randrange(len(texts))
                body = {"label_set_id": label_set_id,
                        "items": [{"text": texts[(start + i) % len(texts)]} for i in range(small_items)]}
                t0 = time.monotonic()
                status, answer = await http.request("POST", "/v1/jobs", body)
                assert status == 202, answer[:300]
                job_id = json.loads(answer)["id"]
                while True:
                    status, answer = await http.request("GET", f"/v1/jobs/{job_id}")
                    progress = json.loads(answer)["progress"]
                    if progress["done"] + progress["failed"] > 0:
                        found.append(time.monotonic() - t0)
                        break
                    await asyncio.sleep(0.2)
                await asyncio.sleep(think * own.uniform(0.5, 1.5))
        finally:
            http.close()

    await asyncio.gather(*(client(n, key, ls) for n, (key, ls) in enumerate(tenants)))
    return found


def fairness_tenants(stack, label_set_id: str, n: int) -> list[tuple[str, str]]:
    """`n` new tenants, each with a key and a label set holding a copy of `label_set_id`'s adapter."""
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from store import tenants
    from store.models import Adapter, Label, LabelSet

    engine = create_engine(stack.database_url)
    made = []
    try:
        with Session(engine) as s, s.begin():
            source = s.get_one(LabelSet, label_set_id)
            adapter = s.scalars(select(Adapter).where(Adapter.label_set_id == label_set_id)).one()
            for i in range(n):
                tenant = tenants.create_tenant(s, f"load-{i}")
                _, key = tenants.create_api_key(s, tenant.id, "load")
                copy = LabelSet(tenant_id=tenant.id, name=source.name, base_model=source.base_model,
                                base_model_resolved=source.base_model_resolved)
                copy.labels = [Label(name=label.name, position=label.position) for label in source.labels]
                s.add(copy)
                s.flush()
                s.add(Adapter(label_set_id=copy.id, version=1, is_active=True, weights=adapter.weights,
                              config_json=adapter.config_json, checksum=adapter.checksum, metrics=adapter.metrics,
                              param_count=adapter.param_count, size_bytes=adapter.size_bytes))
                made.append((key, copy.id))
    finally:
        engine.dispose()
    return made


def run_fairness(stack, label_set_id: str, texts: list[str], args: argparse.Namespace) -> list[dict]:
    """Time-to-first-result of the small jobs without, then with, the big job; one row each."""
    import requests

    tenants = fairness_tenants(stack, label_set_id, args.clients)
    small, (big_key, big_set) = tenants[:-1], tenants[-1]
    rows = []
    for with_big in (False, True):
        big_id, submit_s = None, None
        if with_big:
            big = requests.Session()
            big.headers["Authorization"] = f"Bearer {big_key}"
            t0 = time.monotonic()
            answer = big.post(f"{stack.base_url}/v1/jobs", timeout=600, json={
                "label_set_id": big_set, "items": [{"text": texts[i % len(texts)]} for i in range(args.big_items)]})
            submit_s = time.monotonic() - t0
            assert answer.status_code == 202, answer.text[:300]
            big_id = answer.json()["id"]
            while big.get(f"{stack.base_url}/v1/jobs/{big_id}").json()["status"] != "running":
                time.sleep(0.2)
        found = sorted(asyncio.run(time_to_first_results(
            stack.base_url, small, texts, seconds=args.seconds, think=args.think, small_items=args.small_items)))
        row = {"big job": f"{args.big_items:,} items" if with_big else "none", "small jobs": len(found),
               "p50_s": percentile(found, 50), "p99_s": percentile(found, 99), "max_s": found[-1] if found else None,
               "big_submit_s": submit_s}
        if big_id is not None:
            progress = big.get(f"{stack.base_url}/v1/jobs/{big_id}").json()["progress"]
            row["big_done"] = progress["done"]
            big.post(f"{stack.base_url}/v1/jobs/{big_id}/cancel")
        rows.append(row)
    return rows


def fairness_table(rows: list[dict]) -> str:
    lines = ["| big job | small jobs | p50 s | p99 s | max s | big job's items done meanwhile |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['big job']} | {r['small jobs']} | {r['p50_s']:.2f} | {r['p99_s']:.2f} | {r['max_s']:.2f} | "
                     f"{r.get('big_done', '–')} |")
    if len(rows) == 2 and rows[0]["p99_s"]:
        lines.append(f"\np99 with the big job / without: {rows[1]['p99_s'] / rows[0]['p99_s']:.2f} "
                     f"(target ≤ 2); the big job's POST took {rows[1]['big_submit_s']:.1f} s")
    return "\n".join(lines)


def cancel_unfinished(stack, job_ids: list[str]) -> None:
    """Cancel what the load left queued (the worker then skips its chunks)."""
    client = stack.client()
    for job_id in job_ids:
        client.post(f"{stack.base_url}/v1/jobs/{job_id}/cancel", timeout=30)  # 409 for finished ones


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--think", type=float, default=0.5, help="mean seconds between a client's requests")
    parser.add_argument("--submit-share", type=float, default=0.05, help="share of client requests that submit a job")
    parser.add_argument("--small-items", type=int, default=10)
    parser.add_argument("--large-pause", type=float, default=2.0,
                        help="seconds between 1,000-item submissions (one client); < 0: none")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--scenario", choices=["mixed", "fairness"], default="mixed")
    parser.add_argument("--big-items", type=int, default=100_000, help="fairness: the big job's items")
    args = parser.parse_args()

    from tests.e2e.conftest import LabelledData, PostgresCluster, Stack, _postgres_bindir

    run_dir = Path(tempfile.mkdtemp(prefix="reftag-load-"))
    cluster = PostgresCluster(_postgres_bindir()) if args.database == "postgresql" else None
    url = cluster.create_database("reftag_load") if cluster else f"sqlite:///{run_dir / 'reftag.db'}"
    stack = Stack(url, run_dir)
    try:
        worker = stack.start_worker()
        stack.start_web()
        stack.wait_ready(worker)
        label_set_id, _ = stack.create_trained_label_set(LabelledData("news_en"), per_label=8,
                                                         config={"epochs": 2, "min_steps": 0})
        texts = [r["text"] for r in read_jsonl("ag_news", "test")]
        if args.scenario == "fairness":
            load_before = os.getloadavg()
            rows = run_fairness(stack, label_set_id, texts, args)
            load_after = os.getloadavg()
            print(f"command: python -m bench.load {shlex.join(sys.argv[1:])}")
            print(f"database: {args.database}; {args.clients} tenants; "
                  f"load average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f}")
            print(fairness_table(rows))
            OUT.mkdir(exist_ok=True)
            (OUT / "load_fairness.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
            return
        load_before = os.getloadavg()
        report = asyncio.run(generate_load(
            stack.base_url, stack.api_key, label_set_id, texts, clients=args.clients, seconds=args.seconds,
            think=args.think, submit_share=args.submit_share, small_items=args.small_items,
            large_pause=args.large_pause))
        load_after = os.getloadavg()
        cancel_unfinished(stack, report.job_ids)
    finally:
        stack.stop()
        if cluster:
            cluster.stop()

    print(f"command: python -m bench.load {shlex.join(sys.argv[1:])}")
    print(f"database: {args.database}; load average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f}")
    print(report.table())
    for kind, errors in report.errors.items():
        for message in errors[:5]:
            print(f"error ({kind}): {message}")
    OUT.mkdir(exist_ok=True)
    (OUT / "load.json").write_text(json.dumps({"args": vars(args), "rows": report.rows(),
                                               "seconds": report.seconds, "errors": report.errors,
                                               "loadavg": [load_before, load_after]}, indent=1))


if __name__ == "__main__":
    main()
