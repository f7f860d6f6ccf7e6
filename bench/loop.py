"""The labeling loop's numbers (issues 16 and 17): calibration and auto-accept at a precision.

Scenario `calibration`: per data set and seed, reftag trains its default adapter on 4,000 training
rows (a seeded sample) — calibration is fitted at training time on the held-out rows — then
tags the first 2,000 test rows. Reported on those test rows:

- ECE (15 equal-width bins) of the uncalibrated and of the calibrated scores: single-label over
  each item's top score, multi-label over every (item, label) pair;
- auto-accept at `review_precision` 0.95 (and 0.9): the confidence threshold training chose, the
  share of test items above it (coverage), and the precision of those items (an item is right
  when its labels are exactly right).

Every cell is one JSON line in bench/measured/loop.jsonl (appended as it finishes); `--resume`
skips the cells already there, `--table` prints RESULTS.md's table from the file.

    python -m bench.loop --scenario calibration --data sst2,ag_news,goemotions --seeds 0,1,2 --resume
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from reft_core import Tagger, load_base, train
from reft_core import calibration as cal

from .common import Dataset, Split, command_line, machine, markdown_table, probs_from_predictions
from .data import label_names, read_jsonl, row_labels

RESULTS = Path(__file__).resolve().parent / "measured" / "loop.jsonl"
PRECISIONS = (0.9, 0.95)


def sample(name: str, train_rows: int, test_rows: int, seed: int) -> Dataset:
    """A seeded sample of `train_rows` training rows; the first `test_rows` test rows."""
    rows = read_jsonl(name, "train")
    random.Random(seed).shuffle(rows)
    rows = rows[:train_rows]
    test = read_jsonl(name, "test", test_rows)
    train_split = Split([r["text"] for r in rows], [row_labels(r) for r in rows])
    return Dataset(name, label_names(name), isinstance(train_split.labels[0], list), train_split,
                   Split([r["text"] for r in test], [row_labels(r) for r in test]))


def run_calibration(base: Any, data: Dataset, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    adapter = train(base, data.train.texts, data.train.labels, data.names, multi_label=data.multi_label,
                    config={"seed": seed})
    train_seconds = time.perf_counter() - t0
    fitted = cal.Calibration.from_dict(adapter.config.calibration)
    # The tagger's scores without the calibration, then with it: the same logits both ways.
    adapter.with_config(calibration={})
    raw = probs_from_predictions(Tagger(base).predict(adapter, data.test.texts), data.names)
    adapter.with_config(calibration=fitted.to_dict())
    scores = cal.calibrated(fitted, raw, data.multi_label)
    truth = data.targets(data.test)
    confidence = cal.item_confidence(scores, data.multi_label, adapter.thresholds)
    correct = cal.item_correct(scores, truth, data.multi_label, adapter.thresholds)
    auto: dict[str, Any] = {}
    for precision in PRECISIONS:
        threshold = cal.threshold_for(adapter.metrics["review"], precision)
        accepted = confidence >= (threshold if threshold is not None else float("inf"))
        auto[f"{precision:g}"] = {
            # None: no threshold reaches the precision (everything needs review)
            "threshold": threshold if threshold is not None and threshold != float("inf") else None,
            "coverage": round(float(accepted.double().mean()), 4),
            "precision": round(float(correct[accepted].double().mean()), 4) if accepted.any() else None,
            "held_out_coverage": adapter.metrics["review"]["coverage"].get(f"{precision:g}"),
        }
    return {"accuracy": round(float(correct.double().mean()), 4),
            "ece_before": cal.ece(raw, truth, data.multi_label), "ece_after": cal.ece(scores, truth, data.multi_label),
            "calibration": fitted.to_dict(), "held_out": adapter.metrics["calibration"], "auto_accept": auto,
            "train_seconds": round(train_seconds, 1)}


def read_results() -> list[dict[str, Any]]:
    if not RESULTS.exists():
        return []
    return [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]


def append_result(cell: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(cell, ensure_ascii=False) + "\n")


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def calibration_table(cells: list[dict[str, Any]]) -> str:
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for c in cells:
        if c["scenario"] == "calibration":
            latest[(c["data"], c["seed"])] = c
    rows = []
    for name in dict.fromkeys(d for d, _ in latest):
        runs = [c["result"] for (d, _), c in latest.items() if d == name]
        row = [name, len(runs), _mean_sd([r["accuracy"] for r in runs]), _mean_sd([r["ece_before"] for r in runs]),
               _mean_sd([r["ece_after"] for r in runs])]
        for precision in PRECISIONS:
            a = [r["auto_accept"][f"{precision:g}"] for r in runs]
            row += [_mean_sd([x["precision"] for x in a if x["precision"] is not None]),
                    _mean_sd([x["coverage"] for x in a])]
        rows.append(row)
    header = ["data", "seeds", "accuracy", "ECE before", "ECE after"]
    for precision in PRECISIONS:
        header += [f"precision of auto-accepted @ {precision:g}", f"coverage @ {precision:g}"]
    return markdown_table(header, rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", default="calibration", choices=["calibration"])
    parser.add_argument("--data", default="sst2,ag_news,goemotions")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--train-rows", type=int, default=4000)
    parser.add_argument("--test-rows", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resume", action="store_true", help="skip the cells bench/measured/loop.jsonl holds")
    parser.add_argument("--table", action="store_true", help="print the tables from bench/measured/loop.jsonl")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.table:
        print(calibration_table(read_results()))
        return
    torch.set_num_threads(args.threads)
    base = load_base()  # the bundled MiniLM
    done = {(c["scenario"], c["data"], c["seed"]) for c in read_results()} if args.resume else set()
    for name in args.data.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            if (args.scenario, name, seed) in done:
                continue
            data = sample(name, args.train_rows, args.test_rows, seed)
            result = run_calibration(base, data, seed)
            cell = {"scenario": args.scenario, "data": name, "seed": seed, "train_rows": args.train_rows,
                    "test_rows": args.test_rows, "command": command_line("bench.loop"), "machine": machine(),
                    "result": result}
            append_result(cell)
            print(json.dumps({k: cell[k] for k in ("data", "seed")} | {
                "accuracy": result["accuracy"], "ece_before": result["ece_before"], "ece_after": result["ece_after"],
                "auto_accept_0.95": result["auto_accept"]["0.95"]}), flush=True)
    print(calibration_table(read_results()))


if __name__ == "__main__":
    main()
