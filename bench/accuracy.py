"""Accuracy per trained parameter: reftag's interventions against the usual baselines (issue 4).

On the bundled MiniLM, for each data set: the first `--train-rows` training rows, tested on the
first `--test-rows` test rows (all of them where fewer). Every method trains on the same 85 %
of those rows (reft_core's stratified held-out split, seed 0) and uses the other 15 % for model
selection (early stopping, the probe's C, multi-label thresholds). Methods:

- probe: logistic regression (sklearn; one-vs-rest for multi-label) on frozen mean-pooled embeddings;
- lora:  peft LoRA r=8, alpha 16, dropout 0.05 on query/value, lr 5e-4, + reftag's head;
- full:  every weight trained, lr 5e-5, + reftag's head;
- loreft / direft / red: `reft_core.train(..., config={"intervention": ...})` with reftag's defaults,
  tested through `reft_core.Tagger`.
The LoRA and full fine-tuning runs use reftag's loop (bench/common.py): epochs/patience, batch 32,
max_length 128, length-bucketed batches, warm-up + linear decay, best held-out epoch kept.

Full run (hours on 2 CPU cores):
    python -m bench.accuracy --data sst2,ag_news,goemotions,tnews --methods probe,lora,full,loreft,direft,red \
        --train-rows 4000 --test-rows 2000
Seeds:      python -m bench.accuracy --data sst2 --methods loreft,lora --seeds 0,1,2
Smoke run:  python -m bench.accuracy --quick
Writes bench/out/accuracy.json (every number) and prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from typing import Any

import numpy as np
import torch

from reft_core import Base, Tagger, load_base, train
from reft_core.metrics import main_score, tune_thresholds
from reft_core.training import split_held_out

from .common import (
    DEFAULTS,
    Dataset,
    command_line,
    encode,
    finetune,
    finetuned_probs,
    load_dataset,
    machine,
    markdown_table,
    mean_pooled,
    probs_from_predictions,
    test_metrics,
    write_json,
)

DATASETS = ["sst2", "ag_news", "goemotions", "tnews"]
METHODS = ["probe", "lora", "full", "loreft", "direft", "red"]
REFT_METHODS = {"loreft", "direft", "red"}
PROBE_C = (0.01, 0.1, 1.0, 10.0)


# -- linear probe ------------------------------------------------------------------------------------
def _probe_classifier(c: float, multi_label: bool):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    lr = LogisticRegression(C=c, max_iter=2000)
    return make_pipeline(StandardScaler(), OneVsRestClassifier(lr) if multi_label else lr)


def _probe_probs(clf, x: np.ndarray, n_labels: int, multi_label: bool) -> torch.Tensor:
    """(N, n_labels) probabilities; single-label classes absent from training get 0."""
    raw = clf.predict_proba(x)
    if multi_label:
        return torch.tensor(raw, dtype=torch.float32)
    probs = np.zeros((len(x), n_labels), dtype=np.float32)
    probs[:, clf.classes_.astype(int)] = raw
    return torch.from_numpy(probs)


def run_probe(base: Base, data: Dataset, epochs: int | None, seed: int = DEFAULTS.seed) -> dict[str, Any]:
    t0 = time.perf_counter()
    targets = data.targets(data.train)
    fit_rows, held_rows = split_held_out(targets, DEFAULTS.eval_fraction, seed)
    x = encode(base, mean_pooled(base.model), data.train.texts, max_length=DEFAULTS.max_length).numpy()
    y = targets.numpy()
    best = None
    for c in PROBE_C:  # C chosen on the held-out rows by the same main score reftag early-stops on
        with warnings.catch_warnings():  # a label absent from the fit rows gets a constant predictor
            warnings.filterwarnings("ignore", message="Label not .* is present in all training examples")
            clf = _probe_classifier(c, data.multi_label).fit(x[fit_rows], y[fit_rows])
        held = _probe_probs(clf, x[held_rows], len(data.names), data.multi_label)
        thresholds = tune_thresholds(held, targets[held_rows]) if data.multi_label else None
        score = main_score(test_metrics(held, targets[held_rows], data.names, data.multi_label, thresholds),
                           data.multi_label)
        if best is None or score > best[0]:
            best = (score, c, clf, thresholds)
    _, c, clf, thresholds = best
    train_seconds = time.perf_counter() - t0
    x_test = encode(base, mean_pooled(base.model), data.test.texts).numpy()
    probs = _probe_probs(clf, x_test, len(data.names), data.multi_label)
    head = (base.hidden_size + 1) * len(data.names)
    return {"metrics": test_metrics(probs, data.targets(data.test), data.names, data.multi_label, thresholds),
            "params": {"adapter": 0, "head": head, "total": head}, "train_seconds": train_seconds,
            "epochs_run": None, "details": {"C": c}}


# -- LoRA and full fine-tuning -----------------------------------------------------------------------------
def run_baseline(method: str, base: Base, data: Dataset, epochs: int | None,
                 head_lr: float | None = None, seed: int = DEFAULTS.seed) -> dict[str, Any]:
    tuned = finetune(base, method, data.train.texts, data.targets(data.train), len(data.names), data.multi_label,
                     epochs=epochs or DEFAULTS.epochs, head_lr=head_lr, seed=seed)
    probs = finetuned_probs(base, tuned, data.test.texts)
    result = {"metrics": test_metrics(probs, data.targets(data.test), data.names, data.multi_label, tuned.thresholds),
              "params": tuned.params, "train_seconds": tuned.train_seconds, "epochs_run": tuned.epochs_run,
              "details": {"loss_curve": tuned.loss_curve}}
    del tuned
    return result


# -- reftag's interventions -------------------------------------------------------------------------------
def run_reft(method: str, base: Base, data: Dataset, epochs: int | None, seed: int = DEFAULTS.seed,
             overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {**(overrides or {}), "intervention": method, "seed": seed}
    if epochs:
        config["epochs"] = epochs
    t0 = time.perf_counter()
    adapter = train(base, data.train.texts, data.train.labels, data.names, multi_label=data.multi_label, config=config)
    train_seconds = time.perf_counter() - t0
    probs = probs_from_predictions(Tagger(base).predict(adapter, data.test.texts), data.names)
    params = adapter.param_count
    return {"metrics": test_metrics(probs, data.targets(data.test), data.names, data.multi_label, adapter.thresholds,
                                    adapter.min_labels),
            "params": {"adapter": params["intervention"], "head": params["head"], "total": params["total"]},
            "train_seconds": train_seconds, "epochs_run": adapter.metrics["epochs_run"],
            "details": {"config": config, "layers": adapter.layers, "loss_curve": adapter.metrics["loss_curve"],
                        "adapter_bytes": adapter.size_bytes(),
                        # the adapter's own evaluation (its held-out rows): what a choice between recipes may see
                        "evaluation": {k: adapter.metrics[k] for k in
                                       ("evaluation", "n_eval", "steps_run", "accuracy", "macro_f1", "micro_f1")
                                       if k in adapter.metrics}}}


def run_method(method: str, base: Base, data: Dataset, epochs: int | None,
               head_lr: float | None = None, seed: int = DEFAULTS.seed,
               reft_config: dict[str, Any] | None = None) -> dict[str, Any]:
    torch.manual_seed(seed)
    if method == "probe":
        return run_probe(base, data, epochs, seed)
    if method in REFT_METHODS:
        return run_reft(method, base, data, epochs, seed, reft_config)
    return run_baseline(method, base, data, epochs, head_lr, seed)


# -- report ---------------------------------------------------------------------------------------------------
def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    rows = []
    for name, by_method in results.items():
        lora_adapter = by_method.get("lora", {}).get("params", {}).get("adapter")
        for method, r in by_method.items():
            m, p = r["metrics"], r["params"]
            fewer = f"{lora_adapter / p['adapter']:.3g}×" if lora_adapter and p["adapter"] else ""
            rows.append([name, method, f"{m['accuracy']:.4f}", f"{m['micro_f1']:.4f}" if "micro_f1" in m else "",
                         f"{m['macro_f1']:.4f}", f"{p['adapter']:,}", f"{p['head']:,}", fewer,
                         f"{r['train_seconds']:.1f}", r["epochs_run"] if r["epochs_run"] is not None else "",
                         over_seeds(r.get("by_seed", []))])
    return markdown_table(["data", "method", "accuracy", "micro-F1", "macro-F1", "adapter params", "head params",
                           "LoRA adapter / this", "train s", "epochs", "main score, mean ± sd over seeds"], rows)


def over_seeds(runs: list[dict[str, Any]]) -> str:
    if len(runs) < 2:
        return ""
    scores = [r["score"] for r in runs]
    return f"{statistics.mean(scores):.4f} ± {statistics.stdev(scores):.4f} ({len(scores)})"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=",".join(DATASETS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--train-rows", type=int, default=4000)
    parser.add_argument("--base", default=None, help="a bundled base's name (default: all-MiniLM-L6-v2)")
    parser.add_argument("--test-rows", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=None, help="override the epoch budget of every trained method")
    parser.add_argument("--baseline-head-lr", type=float, default=None,
                        help="LoRA / full fine-tuning: train the head at this lr (default: the method's lr)")
    parser.add_argument("--seeds", default=str(DEFAULTS.seed),
                        help="comma-separated: every method once per seed (the seed moves the held-out split, the "
                             "initialisation and the batch order); the table gives the first seed's row and the "
                             "mean ± sd of the main score over all seeds")
    parser.add_argument("--reft-config", type=json.loads, default=None,
                        help='reftag\'s interventions: training options over the defaults, as JSON '
                             '(e.g. \'{"layers": [5, 6, 7, 8, 9, 10]}\')')
    parser.add_argument("--quick", action="store_true", help="smoke test: 200 train rows, 100 test rows, 1 epoch")
    parser.add_argument("--out", default="accuracy.json", help="file name under bench/out/")
    args = parser.parse_args(argv)
    if args.quick:
        args.train_rows, args.test_rows, args.epochs = min(args.train_rows, 200), min(args.test_rows, 100), 1
    unknown = set(args.methods.split(",")) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; known: {METHODS}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    command = command_line("bench.accuracy")
    base = load_base(args.base)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    seeds = [int(x) for x in args.seeds.split(",")]
    payload = {"command": command, "machine": machine(), "base": base.name,
               "settings": {"train_rows": args.train_rows, "test_rows": args.test_rows, "epochs": args.epochs or
                            DEFAULTS.epochs, "baseline_head_lr": args.baseline_head_lr, "patience": DEFAULTS.patience,
                            "batch_size": DEFAULTS.batch_size, "max_length": DEFAULTS.max_length, "seeds": seeds,
                            "reft_config": args.reft_config},
               "results": results}
    for name in args.data.split(","):
        data = load_dataset(name, args.train_rows, args.test_rows)
        results[name] = {}
        for method in args.methods.split(","):
            for seed in seeds:
                r = run_method(method, base, data, args.epochs, args.baseline_head_lr, seed, args.reft_config)
                r.update(n_train=len(data.train.texts), n_test=len(data.test.texts), seed=seed)
                if method not in results[name]:
                    results[name][method] = {**r, "by_seed": []}
                results[name][method]["by_seed"].append(
                    {"seed": seed, "score": main_score(r["metrics"], data.multi_label), "epochs_run": r["epochs_run"],
                     "train_seconds": round(r["train_seconds"], 1),
                     **{k: v for k, v in r["metrics"].items() if k in ("accuracy", "micro_f1", "macro_f1")}})
                print(f"{name} {method} seed {seed}: {r['metrics']} params {r['params']} {r['train_seconds']:.1f}s",
                      flush=True)
                write_json(args.out, payload)  # after every run, so a long run keeps what it measured
    print(f"\ncommand: {command}\n")
    print(table(results))
    return payload


if __name__ == "__main__":
    main()
