"""Few-shot: reftag against SetFit, a linear probe and LoRA from K examples per label (issue 12).

For each data set, K per label and seed, every contender trains on the same sample — the first
K rows of each label after a seeded shuffle of the training split (multi-label: rows are taken
in that order until every label has K) — and is tested on the same first `--test-rows` test
rows. Contenders, each on the same bundled base (`--base`: MiniLM, or the multilingual one for TNEWS):

- reftag:  `reft_core.train` with its defaults (whatever they are when the run is made; the
           recipe is recorded with the cell), tested through `reft_core.Tagger`;
- setfit:  SetFit (`SetFitModel.from_pretrained` on the base's directory, default training
           arguments; one-vs-rest for multi-label). Where a cell would take more than about 15
           minutes (`--setfit-max-steps`, 450 contrastive steps on MiniLM, 225 on the 12-layer
           multilingual base), `max_steps` is capped there (the cap is recorded and the table says so);
- probe:   logistic regression on frozen mean-pooled embeddings (C by k-fold cross-validation
           when every label has 2+ examples, else 1.0);
- lora:    peft LoRA r=8 on query/value + reftag's head, trained with reftag's loop (bench/common.py),
           given reftag's step floor and head learning rate (`run_lora`).

Every cell is one JSON line in bench/measured/fewshot.jsonl (appended as it finishes), so contenders
can run apart and a long run keeps what it measured; `--table` prints the table from that file.
A variant of reftag's recipe (`--reftag-config '{"soup": "folds"}'`) is measured into a file of
its own (`--results`), so that the table keeps the defaults' cells.

    python -m bench.fewshot --data sst2,ag_news,goemotions --k 4,8,16,32,64 --seeds 0,1,2 \\
        --contenders reftag,setfit,probe,lora
    python -m bench.fewshot --data tnews --base multilingual-e5-small --contenders reftag,probe  # issue 13
    python -m bench.fewshot --table
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reft_core import Base, Tagger, TrainConfig, load_base, train
from reft_core.bases import BUNDLED, MINILM, MULTILINGUAL
from reft_core.metrics import main_score
from reft_core.probe import logistic_probe
from reft_core.training import split_held_out

from .common import (
    DEFAULTS,
    Dataset,
    Split,
    command_line,
    encode,
    finetune,
    finetuned_probs,
    machine,
    markdown_table,
    mean_pooled,
    probs_from_predictions,
    test_metrics,
)
from .data import label_names, read_jsonl, row_labels

DATASETS = ["sst2", "ag_news", "goemotions"]  # and tnews, on the multilingual base (--base)
CONTENDERS = ["reftag", "setfit", "probe", "lora"]
# The measured cells are kept in the repository (not in the ignored bench/out/): a run of several
# hours is made across sessions with --resume, and RESULTS.md's table is printed from this file.
RESULTS = Path(__file__).resolve().parent / "measured" / "fewshot.jsonl"
# SetFit takes about 2 s per contrastive step (16 pairs of MiniLM) on this 2-core machine when it is
# quiet (bench/RESULTS.md): 450 steps is about 15 minutes. A step cap, not a time cap, so that
# what SetFit learns does not depend on what else the machine is doing. A step costs about the
# base's depth: the 12-layer multilingual base gets half as many steps for the same 15 minutes.
SETFIT_MAX_STEPS = 450
# When the k-fold refit's schedule began to end at the chosen step: reftag's small-K cells
# measured before are marked in the table (a re-run of the contender replaces them).
REFIT_ANNEALED = "2026-12-03T16:05:00Z"
# When a held-out run began to stop early only with `early_stop_min_eval` evaluation rows: reftag's
# cells measured before with fewer such rows (they stopped on a few rows' checks) are marked too.
EARLY_STOP_MIN_EVAL = "2026-12-04T14:45:00Z"
SETFIT_CAP_LAYERS = 6


def setfit_max_steps(args: argparse.Namespace, base: Base) -> int:
    if args.setfit_max_steps is not None:
        return int(args.setfit_max_steps)
    return SETFIT_MAX_STEPS * SETFIT_CAP_LAYERS // base.num_layers
# Full-data rows (4,000 training rows, three seeds, but GoEmotions on the multilingual base: one):
# issue 4 on MiniLM, issue 13 on the multilingual base (AG News and GoEmotions there measured on a
# lent GPU, bench/measured/gpu_4000_rows). The right end of the curve.
FULL_DATA = {(MINILM, "sst2"): "0.830 ± 0.013 (issue 4)", (MINILM, "ag_news"): "0.878 ± 0.004 (issue 4)",
             (MINILM, "goemotions"): "0.486 ± 0.016 (issue 4)",
             (MULTILINGUAL, "tnews"): "0.529 ± 0.007 (issue 13)",
             (MULTILINGUAL, "sst2"): "0.855 ± 0.011 (issue 13)",
             (MULTILINGUAL, "ag_news"): "0.894 ± 0.005 (issue 13, on a GPU)",
             (MULTILINGUAL, "goemotions"): "0.530, seed 0 (on a GPU)"}


# -- the sample ------------------------------------------------------------------------------------------
def sample(name: str, k: int, seed: int, test_rows: int) -> Dataset:
    """K rows per label of the training split, in the order of a seeded shuffle (multi-label: rows
    are taken while some label they carry still has fewer than K)."""
    names = label_names(name)
    rows = read_jsonl(name, "train")
    random.Random(seed).shuffle(rows)
    taken: list[dict[str, Any]] = []
    count: dict[str, int] = defaultdict(int)
    for row in rows:
        labels = row_labels(row)
        labels = [labels] if isinstance(labels, str) else labels
        if any(count[label] < k for label in labels):
            taken.append(row)
            for label in labels:
                count[label] += 1
        if all(count[label] >= k for label in names):
            break
    test = read_jsonl(name, "test", test_rows)
    multi = "labels" in rows[0]
    return Dataset(name, names, multi, Split([r["text"] for r in taken], [row_labels(r) for r in taken]),
                   Split([r["text"] for r in test], [row_labels(r) for r in test]))


# -- contenders ------------------------------------------------------------------------------------------
def run_reftag(base: Base, data: Dataset, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    config = {**json.loads(args.reftag_config), "seed": seed}
    t0 = time.perf_counter()
    adapter = train(base, data.train.texts, data.train.labels, data.names, multi_label=data.multi_label, config=config)
    seconds = time.perf_counter() - t0
    probs = probs_from_predictions(Tagger(base).predict(adapter, data.test.texts), data.names)
    return {"metrics": test_metrics(probs, data.targets(data.test), data.names, data.multi_label, adapter.thresholds,
                                    adapter.min_labels),
            "train_seconds": seconds,
            "details": {"recipe": {**TrainConfig().to_dict(), **config}, "params": adapter.param_count,
                        "evaluation": {k: adapter.metrics.get(k) for k in ("evaluation", "folds", "n_eval",
                                                                           "steps_chosen", "fold_scores", "steps_run")},
                        # what reftag's own evaluation (out-of-fold or held-out) said: is a bad cell seen coming?
                        "own_metrics": {k: adapter.metrics.get(k) for k in ("accuracy", "macro_f1", "micro_f1")}}}


def run_probe(base: Base, data: Dataset, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    x = encode(base, mean_pooled(base.model), data.train.texts).numpy()
    clf, c = logistic_probe(x, data.targets(data.train).numpy(), data.multi_label, seed)
    seconds = time.perf_counter() - t0
    raw = clf.predict_proba(encode(base, mean_pooled(base.model), data.test.texts).numpy())
    probs = torch.tensor(raw, dtype=torch.float32)
    return {"metrics": test_metrics(probs, data.targets(data.test), data.names, data.multi_label),
            "train_seconds": seconds, "details": {"C": c}}


def run_lora(base: Base, data: Dataset, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """LoRA as issue 4 trains it (bench/common.finetune: its own 15 % held out picks the best
    epoch), with what reftag's recipe gets at these sizes: at least `min_steps` optimizer steps
    (issue 4's 10 epochs are 20 steps on 60 rows: the head barely moves and every text gets one
    label) and the head at reftag's learning rate (issue 4: LoRA's 5e-4 starves the head)."""
    train_rows, _ = split_held_out(data.targets(data.train), DEFAULTS.eval_fraction, seed)  # as finetune splits
    per_epoch = max(1, math.ceil(len(train_rows) / DEFAULTS.batch_size))
    epochs = max(DEFAULTS.epochs, math.ceil(DEFAULTS.min_steps / per_epoch))
    tuned = finetune(base, "lora", data.train.texts, data.targets(data.train), len(data.names), data.multi_label,
                     seed=seed, epochs=epochs, patience=epochs, head_lr=DEFAULTS.lr)
    probs = finetuned_probs(base, tuned, data.test.texts)
    return {"metrics": test_metrics(probs, data.targets(data.test), data.names, data.multi_label, tuned.thresholds),
            "train_seconds": tuned.train_seconds,
            "details": {"params": tuned.params, "epochs_run": tuned.epochs_run, "epochs": epochs,
                        "head_lr": DEFAULTS.lr}}


def run_setfit(base: Base, data: Dataset, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from datasets import Dataset as HFDataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    targets = data.targets(data.train)
    model = SetFitModel.from_pretrained(str(BUNDLED[base.name].locate()), multi_target_strategy="one-vs-rest"
                                        if data.multi_label else None)
    # SetFit sees the texts as reftag's base does (e5 expects its "query: " prefix).
    prefix = base.text_prefix
    train_set = HFDataset.from_dict({"text": [prefix + t for t in data.train.texts], "label": targets.tolist()})
    planned = setfit_planned_steps(targets, data.multi_label)
    cap = setfit_max_steps(args, base)
    capped = planned > cap
    with tempfile.TemporaryDirectory(prefix="setfit-") as checkpoints:  # SetFit saves checkpoints; not here
        training = TrainingArguments(output_dir=checkpoints, seed=seed,
                                     max_steps=cap if capped else -1)
        trainer = Trainer(model=model, args=training, train_dataset=train_set)
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
    raw = model.predict_proba([prefix + t for t in data.test.texts], as_numpy=True)
    if data.multi_label and isinstance(raw, list):  # one-vs-rest: a (N, 2) array per label
        raw = np.stack([p[:, 1] for p in raw], axis=1)
    probs = torch.tensor(np.asarray(raw), dtype=torch.float32)
    return {"metrics": test_metrics(probs, data.targets(data.test), data.names, data.multi_label),
            "train_seconds": seconds,
            "details": {"planned_steps": planned, "capped": capped,
                        "steps": cap if capped else planned,
                        "torch_threads": torch.get_num_threads()}}


def setfit_planned_steps(targets: torch.Tensor, multi_label: bool, batch_size: int = 16) -> int:
    """The contrastive steps SetFit's default arguments take on these rows: every pair (with
    replacement) is positive (same label; multi-label: a label in common) or negative, the
    smaller kind is oversampled to the larger, one epoch in batches of 16 pairs."""
    if multi_label:
        overlap = (targets @ targets.T) > 0
        positive = int(torch.triu(overlap).sum())
    else:
        counts = torch.bincount(targets)
        positive = int((counts * (counts + 1) // 2).sum())
    n = len(targets)
    negative = n * (n + 1) // 2 - positive
    return -(-2 * max(positive, negative) // batch_size)


RUNNERS = {"reftag": run_reftag, "setfit": run_setfit, "probe": run_probe, "lora": run_lora}


# -- results ----------------------------------------------------------------------------------------------
def read_results(path: Path | None = None) -> list[dict[str, Any]]:
    path = path or RESULTS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def append_result(cell: dict[str, Any], path: Path | None = None) -> None:
    path = path or RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(cell, ensure_ascii=False) + "\n")


Cell = tuple[str, str, str, int, int]  # base, data, contender, K, seed


def latest_cells(cells: list[dict[str, Any]]) -> dict[Cell, dict[str, Any]]:
    """The last run of each (base, data, contender, K, seed): a contender re-run replaces its cells."""
    return {(c.get("base", MINILM), c["data"], c["contender"], c["k"], c["seed"]): c for c in cells}


def table(cells: list[dict[str, Any]]) -> str:
    """Accuracy (micro-F1 for multi-label sets), mean ± sd over seeds, and train seconds, per
    base, data set and K, a column pair per contender."""
    latest = latest_cells(cells)
    groups: dict[tuple[str, str, int, str], list[dict[str, Any]]] = defaultdict(list)
    for (base, data, contender, k, _seed), cell in latest.items():
        groups[(base, data, k, contender)].append(cell)
    rows = []
    for base, data in dict.fromkeys(key[:2] for key in groups):
        for k in sorted({key[2] for key in groups if key[:2] == (base, data)}):
            row = [base, data, k]
            for contender in CONTENDERS:
                runs = groups.get((base, data, k, contender), [])
                row.append(score_cell(runs))
                row.append(seconds_cell(runs))
            rows.append(row)
        if (base, data) in FULL_DATA:
            rows.append([base, data, "4,000 rows", FULL_DATA[(base, data)]]
                        + [""] * (2 * len(CONTENDERS) - 1))
    header = ["base", "data", "K per label"]
    for contender in CONTENDERS:
        header += [f"{contender} (mean ± sd)", f"{contender} train s"]
    return markdown_table(header, rows)


def reported(cell: dict[str, Any]) -> float:
    """The figure the table shows: accuracy, micro-F1 for multi-label sets (issue 12's protocol).
    A cell's `score` is the main score adapters are compared by (macro-F1 for single-label sets)."""
    metrics = cell["metrics"]
    return float(metrics["micro_f1"] if "micro_f1" in metrics else metrics["accuracy"])


def old_refit(cell: dict[str, Any]) -> bool:
    """A reftag cell trained by k-fold before its refit's schedule ended at the chosen step
    (reft_core.training; bench/RESULTS.md, "the refit"): it stopped a 100-step schedule there."""
    return (cell["contender"] == "reftag" and cell["n_train"] < TrainConfig().kfold_below
            and cell["machine"]["time_utc"] < REFIT_ANNEALED)


def stopped_on_few_rows(cell: dict[str, Any]) -> bool:
    """A reftag cell trained held-out on fewer evaluation rows than early stopping now needs,
    before the rule (reft_core.training; bench/RESULTS.md, "early stopping on a few rows")."""
    evaluation = cell.get("details", {}).get("evaluation", {})
    return (cell["contender"] == "reftag" and evaluation.get("evaluation") == "held_out"
            and (evaluation.get("n_eval") or 0) < TrainConfig().early_stop_min_eval
            and cell["machine"]["time_utc"] < EARLY_STOP_MIN_EVAL)


def labels_objective(cell: dict[str, Any]) -> bool:
    """A reftag cell of a single-label set in k-fold evaluation trained on the labels, as the
    default did before objective auto trained SetFit's pairs there (reft_core.training;
    bench/RESULTS.md, "the pairs objective, built"): the default's cells measured before."""
    details = cell.get("details", {})
    return (cell["contender"] == "reftag" and details.get("evaluation", {}).get("evaluation") == "k-fold"
            and "micro_f1" not in cell["metrics"]  # single-label (as `reported` tells them)
            and details.get("recipe", {}).get("objective", "labels") == "labels")


def score_cell(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return "–"
    scores = [reported(r) for r in runs]
    sd = f" ± {statistics.stdev(scores):.3f}" if len(scores) > 1 else ""
    capped = " (capped)" if any(r.get("details", {}).get("capped") for r in runs) else ""
    old = " (old refit)" if any(old_refit(r) for r in runs) else ""
    old += " (early-stopped on few rows)" if any(stopped_on_few_rows(r) for r in runs) else ""
    labels = sum(labels_objective(r) for r in runs)
    old += f" (labels objective{f': {labels} of {len(runs)} seeds' if labels < len(runs) else ''})" if labels else ""
    return f"{statistics.mean(scores):.3f}{sd}{capped}{old}"


def on_gpu(cell: dict[str, Any]) -> bool:
    return bool(cell.get("machine", {}).get("gpu"))


def seconds_cell(runs: list[dict[str, Any]]) -> str:
    """Mean train seconds; a GPU's runs apart from the CPU's (they do not compare)."""
    if not runs:
        return "–"
    cpu, gpu = [r for r in runs if not on_gpu(r)], [r for r in runs if on_gpu(r)]
    parts = [f"{statistics.mean(r['train_seconds'] for r in cpu):.1f}"] if cpu else []
    if gpu:
        seeds = f", {len(gpu)} of {len(runs)} seeds" if cpu else ""
        parts.append(f"{statistics.mean(r['train_seconds'] for r in gpu):.1f} (on a GPU{seeds})")
    return "; ".join(parts)


# -- main ---------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=",".join(DATASETS))
    parser.add_argument("--k", default="4,8,16,32,64", help="examples per label, comma-separated")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--test-rows", type=int, default=2000)
    parser.add_argument("--base", default=MINILM, choices=sorted(BUNDLED),
                        help="the bundled base every contender starts from")
    parser.add_argument("--setfit-max-steps", type=int, default=None,
                        help=f"cap SetFit's contrastive steps (default: about 15 minutes of a quiet 2-core machine, "
                             f"{SETFIT_MAX_STEPS} on a {SETFIT_CAP_LAYERS}-layer base, fewer on a deeper one); a "
                             "cell that would take more is capped, and the table says so")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for every contender (recorded with each cell; one run with 1 thread "
                             "leaves a core for other work, and contenders timed alike stay comparable)")
    parser.add_argument("--reftag-config", default="{}",
                        help="JSON: training options reftag gets besides the seed (a variant to measure; recorded "
                             "with each cell — write such cells to their own --results file)")
    parser.add_argument("--results", type=Path, default=None,
                        help="the cells' file (default bench/measured/fewshot.jsonl)")
    parser.add_argument("--resume", action="store_true",
                        help="skip the cells the results file already holds (a stopped run goes on)")
    parser.add_argument("--table", action="store_true", help="print the table from the results file")
    args = parser.parse_args(argv)
    try:
        TrainConfig.from_dict(json.loads(args.reftag_config))
    except ValueError as e:  # json.JSONDecodeError and ReftConfigError both are
        parser.error(f"--reftag-config: {e}")
    unknown = set(args.contenders.split(",")) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}; known: {CONTENDERS}")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.table:
        print(table(read_results(args.results)))
        return read_results(args.results)
    command = command_line("bench.fewshot")
    if args.threads:
        torch.set_num_threads(args.threads)
    base = load_base(args.base)
    made = []
    done = set(latest_cells(read_results(args.results))) if args.resume else set()
    for name in args.data.split(","):
        for k in [int(x) for x in args.k.split(",")]:
            for seed in [int(x) for x in args.seeds.split(",")]:
                data = sample(name, k, seed, args.test_rows)
                for contender in args.contenders.split(","):
                    if (base.name, name, contender, k, seed) in done:
                        continue
                    torch.manual_seed(seed)
                    result = RUNNERS[contender](base, data, seed, args)
                    cell = {"base": base.name, "data": name, "contender": contender, "k": k, "seed": seed,
                            "n_train": len(data.train.texts), "n_test": len(data.test.texts),
                            "score": main_score(result["metrics"], data.multi_label),
                            **result, "command": command, "machine": machine()}
                    append_result(cell, args.results)
                    made.append(cell)
                    print(f"{base.name} {name} K={k} seed {seed} {contender}: {cell['score']:.4f} "
                          f"({cell['train_seconds']:.1f} s, {cell['n_train']} rows)", flush=True)
    print(f"\ncommand: {command}\n")
    print(table(read_results(args.results)))
    return made


if __name__ == "__main__":
    main()
