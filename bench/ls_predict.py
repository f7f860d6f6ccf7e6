"""Label Studio's "Retrieve predictions": one `POST /ls/<id>/predict` of N AG News test texts
through the real stack, timed from the request until the answer, against the same texts through
reft_core's Tagger in this process (the work without the service).

    python -m bench.ls_predict [--tasks 2000] [--paths tag,predict]

Issue 14's target: 2,000 tasks answer in ≤ 40 s on the 2-core machine (Label Studio gives up
after 100 s). The stack is the one the end-to-end tests start (redis-server, gunicorn, SQLite,
one Celery worker on every queue unless --split-workers, which starts one for `train,tag` and
one for `predict`, as the Procfile has them). `--paths` times each way /predict can go:
`tag` (above REFTAG_PREDICT_VIA_TAG_ABOVE: a tag job, chunks on the `tag` queue) and `predict`
(the same request with the threshold above N: batches of REFTAG_MAX_PREDICT_ITEMS on the
`predict` queue); the web app is restarted between them with the other setting, the worker
and the adapter stay. The adapter is trained on `--per-label` AG News train rows per label (`--epochs 2` for a quick
run: the time to predict does not depend on what the adapter learned).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import requests
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from reft_core import Adapter, Tagger, load_base
from store.models import Adapter as AdapterRow
from tests.e2e.conftest import Stack

from .common import command_line, markdown_table
from .data import label_names, read_jsonl

THRESHOLD = "REFTAG_PREDICT_VIA_TAG_ABOVE"


def label_config(names: list[str]) -> str:
    choices = "".join(f'<Choice value="{name}"/>' for name in names)
    return (f'<View><Text name="text" value="$text"/><Choices name="topic" toName="text" choice="single">'
            f"{choices}</Choices></View>")


def trained_label_set(stack: Stack, per_label: int, epochs: int | None) -> str:
    client, names = stack.client(), label_names("ag_news")
    created = client.post(f"{stack.base_url}/v1/label-sets", json={
        "name": "bench-ls-predict", "labels": [{"name": n} for n in names]})
    assert created.status_code == 201, created.text
    label_set_id = created.json()["id"]
    taken: dict[str, int] = dict.fromkeys(names, 0)
    examples = []
    for row in read_jsonl("ag_news", "train"):
        if taken[row["label"]] < per_label:
            taken[row["label"]] += 1
            examples.append({"text": row["text"], "label": row["label"]})
    added = client.post(f"{stack.base_url}/v1/label-sets/{label_set_id}/examples", json={"examples": examples})
    assert added.status_code == 201, added.text
    config = {"epochs": epochs, "min_steps": 0} if epochs else None  # speed does not depend on what it learned
    job = stack.wait_for_job(stack.start_training(label_set_id, config), timeout=1800)
    assert job["status"] == "succeeded", job
    return label_set_id


def restart_web(stack: Stack, threshold: int) -> None:
    if stack.web is not None:
        stack.web.stop()
    stack.env[THRESHOLD] = str(threshold)
    stack.start_web()


def predict_seconds(stack: Stack, label_set_id: str, texts: list[str], config: str) -> float:
    tasks = [{"id": 1000 + i, "data": {"text": t}} for i, t in enumerate(texts)]
    session = requests.Session()
    session.auth = ("label-studio", stack.api_key)
    t0 = time.perf_counter()
    answer = session.post(f"{stack.base_url}/ls/{label_set_id}/predict", timeout=600,
                          json={"tasks": tasks, "label_config": config, "project": "bench"})
    seconds = time.perf_counter() - t0
    assert answer.status_code == 200, answer.text[:500]
    assert len(answer.json()["results"]) == len(texts)
    return seconds


def direct_seconds(stack: Stack, label_set_id: str, texts: list[str]) -> float:
    with Session(create_engine(stack.database_url)) as session:
        row = session.scalars(select(AdapterRow).where(AdapterRow.label_set_id == label_set_id)).one()
        weights, config_json = row.weights, row.config_json
    base = load_base(device="cpu")
    tagger, adapter = Tagger(base), Adapter.from_bytes(weights, config_json, base)
    tagger.predict(adapter, texts[:64])  # warm-up, as the worker is warm
    t0 = time.perf_counter()
    tagger.predict(adapter, texts)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--paths", default="tag,predict", help="comma-separated: tag, predict")
    parser.add_argument("--per-label", type=int, default=100, help="AG News train rows per label to train on")
    parser.add_argument("--epochs", type=int, help="train this many epochs (default: the training defaults)")
    parser.add_argument("--split-workers", action="store_true", help="a `train,tag` worker and a `predict` worker")
    parser.add_argument("--no-direct", action="store_true", help="skip the in-process Tagger reference")
    args = parser.parse_args()
    texts = [r["text"] for r in read_jsonl("ag_news", "test", args.tasks)]
    texts = [texts[i % len(texts)] for i in range(args.tasks)]
    run_dir = Path(tempfile.mkdtemp(prefix="reftag-bench-"))
    stack = Stack(f"sqlite:///{run_dir / 'reftag.db'}", run_dir)
    rows = []
    try:
        workers = ([stack.start_worker("train,tag"), stack.start_worker("predict")] if args.split_workers
                   else [stack.start_worker()])
        restart_web(stack, 256)
        for worker in workers:
            stack.wait_ready(worker, timeout=600)
        label_set_id = trained_label_set(stack, args.per_label, args.epochs)
        config = label_config(label_names("ag_news"))
        direct = None if args.no_direct else direct_seconds(stack, label_set_id, texts)
        for path in args.paths.split(","):
            restart_web(stack, 0 if path == "tag" else args.tasks)
            seconds = predict_seconds(stack, label_set_id, texts, config)
            rows.append([path, len(texts), f"{seconds:.1f}", f"{len(texts) / seconds:.0f}",
                         "–" if direct is None else f"{direct:.1f}",
                         "–" if direct is None else f"{seconds / direct:.2f}×"])
    finally:
        stack.stop()
    print(f"command: {command_line('bench.ls_predict')}")
    print(markdown_table(["path", "tasks", "/predict s", "tasks/s", "Tagger direct s", "/predict / direct"], rows))


if __name__ == "__main__":
    main()
