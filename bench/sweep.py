"""Try training options for reftag's interventions on one data set, one after another.

Each configuration is reft_core's `TrainConfig` overrides (JSON), trained on the same rows and
tested the same way as `bench.accuracy`'s LoReFT column, so a row here and a row there compare.
Use it to choose defaults; the defaults themselves are then measured by `bench.accuracy`.

    python -m bench.sweep --data sst2 --configs '[{}, {"positions": "f128+l0"}, {"rank": 1, "layers": [0,1,2,3,4,5]}]'
    python -m bench.sweep --data sst2 --configs '[{}, {"layers": [4], "rank": 6}]' --seeds 0,1,2

`--seeds` trains each configuration once per seed (the seed moves the held-out split, the
initialisation and the batch order) and the table gives the mean and standard deviation.
Appends one JSON line per run to bench/out/sweep.jsonl and prints a table.
"""
from __future__ import annotations

import argparse
import json
import statistics
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
    metrics = test_metrics(probs, data.targets(data.test), data.names, data.multi_label, adapter.thresholds,
                           adapter.min_labels)
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
    parser.add_argument("--seeds", default=None, help="comma-separated seeds: each configuration once per seed")
    args = parser.parse_args(argv)
    base = load_base()
    data = load_dataset(args.data, args.train_rows, args.test_rows)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    results = []
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [None]
    for overrides in json.loads(args.configs):
        for seed in seeds:
            r = run(base, data, overrides if seed is None else {**overrides, "seed": seed})
            r["data"] = args.data
            results.append(r)
            print(json.dumps({k: r[k] for k in ("config", "test", "held_out", "params", "epochs_run",
                                                "train_seconds")}),
                  flush=True)
            with open(OUT_DIR / "sweep.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"\ncommand: {command_line('bench.sweep')}\n")
    print(summary(results))
    return results


def summary(results: list[dict[str, Any]]) -> str:
    """One row per configuration: mean ± standard deviation over its seeds, and each run's figure."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        key = json.dumps({k: v for k, v in r["config"].items() if k != "seed"}, sort_keys=True)
        groups.setdefault(key, []).append(r)
    rows = []
    for key, runs in groups.items():
        test = [r["test"] for r in runs]
        sd = statistics.stdev(test) if len(test) > 1 else 0.0
        rows.append([key, len(runs), f"{statistics.mean(test):.4f} ± {sd:.4f}", " ".join(f"{t:.4f}" for t in test),
                     f"{statistics.mean(r['held_out'] for r in runs):.4f}", runs[0]["params"],
                     " ".join(str(r["epochs_run"]) for r in runs)])
    return markdown_table(["config", "runs", "test mean ± sd", "each run", "held-out mean", "params", "epochs"], rows)


if __name__ == "__main__":
    main()
