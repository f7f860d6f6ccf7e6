"""Try training options for reftag's interventions on one data set, one after another.

Each configuration is reft_core's `TrainConfig` overrides (JSON), trained on the same rows and
tested the same way as `bench.accuracy`'s LoReFT column, so a row here and a row there compare.
Use it to choose defaults; the defaults themselves are then measured by `bench.accuracy`.

    python -m bench.sweep --data sst2 --configs '[{}, {"positions": "f128+l0"}, {"rank": 1, "layers": [0,1,2,3,4,5]}]'

Appends one JSON line per configuration to bench/out/sweep.jsonl and prints a table.
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from reft_core import Tagger, load_base, train

from .common import DEFAULTS, OUT_DIR, command_line, load_dataset, markdown_table, probs_from_predictions, test_metrics


def run(base, data, overrides: dict[str, Any]) -> dict[str, Any]:
    torch.manual_seed(DEFAULTS.seed)
    t0 = time.perf_counter()
    adapter = train(base, data.train.texts, data.train.labels, data.names, multi_label=data.multi_label,
                    config=overrides)
    seconds = time.perf_counter() - t0
    probs = probs_from_predictions(Tagger(base).predict(adapter, data.test.texts), data.names)
    metrics = test_metrics(probs, data.targets(data.test), data.names, data.multi_label, adapter.thresholds)
    return {"config": overrides, "test": metrics["micro_f1" if data.multi_label else "accuracy"], "metrics": metrics,
            "held_out": adapter.metrics["micro_f1" if data.multi_label else "accuracy"],
            "params": adapter.param_count["intervention"], "epochs_run": adapter.metrics["epochs_run"],
            "loss_curve": adapter.metrics["loss_curve"], "train_seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="sst2")
    parser.add_argument("--configs", required=True, help="JSON list of TrainConfig overrides")
    parser.add_argument("--train-rows", type=int, default=4000)
    parser.add_argument("--test-rows", type=int, default=2000)
    args = parser.parse_args(argv)
    base = load_base()
    data = load_dataset(args.data, args.train_rows, args.test_rows)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    results = []
    for overrides in json.loads(args.configs):
        r = run(base, data, overrides)
        r["data"] = args.data
        results.append(r)
        print(json.dumps({k: r[k] for k in ("config", "test", "held_out", "params", "epochs_run", "train_seconds")}),
              flush=True)
        with open(OUT_DIR / "sweep.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"\ncommand: {command_line('bench.sweep')}\n")
    print(markdown_table(["config", "test", "held-out", "params", "epochs", "seconds"],
                         [[json.dumps(r["config"]), f"{r['test']:.4f}", f"{r['held_out']:.4f}", r["params"],
                           r["epochs_run"], r["train_seconds"]] for r in results]))
    return results


if __name__ == "__main__":
    main()
