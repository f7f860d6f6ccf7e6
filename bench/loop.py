"""The labeling loop's numbers (issues 16 and 17): calibration and auto-accept at a precision;
what to label next (active learning); which labels are wrong (audit).

Scenario `calibration`: per data set and seed, reftag trains its default adapter on 4,000 training
rows (a seeded sample) — calibration is fitted at training time on the held-out rows — then
tags the first 2,000 test rows. Reported on those test rows:

- ECE (15 equal-width bins) of the uncalibrated and of the calibrated scores: single-label over
  each item's top score, multi-label over every (item, label) pair;
- auto-accept at `review_precision` 0.95 (and 0.9): the confidence threshold training chose, the
  share of test items above it (coverage), and the precision of those items (an item is right
  when its labels are exactly right).

    python -m bench.loop --scenario calibration --data sst2,ag_news,goemotions --seeds 0,1,2 --resume

Scenario `active` (issue 17, what to label next): per data set and seed, a pool of 4,000
training rows (the seeded sample) and the first 2,000 test rows. Round 0 labels 8 examples per
label drawn at random (seeded) from the pool; then 5 rounds each label 40 more of the rest of the
pool, chosen by a strategy, and reftag's default adapter (`train(..., config={"seed": seed})`) is
retrained on everything labelled so far and scored on the test rows (accuracy). Strategies:
`suggest` — `reft_core.selection.pick` with its default strategy (`selection.DEFAULT_STRATEGY`:
margin × k-center until commit 83cfa97, margin since) on the scores and pooled representations
`Tagger.represent` gives for the unlabelled pool, the labelled examples' representations as
`labelled`; `margin`, `kcenter` — that strategy of `pick`; `random` — `pick(strategy="random")`,
seeded per seed and round (it reads no model, so no representations are computed for it).
Round 0 is shared by the strategies (trained once per data set and seed). One cell per (data
set, seed, strategy) holds the whole curve; the cell records the selection strategy it measured
(`selection`), and the tables and `--resume` go by that, not by the name asked for.

    python -m bench.loop --scenario active --data sst2,ag_news --seeds 0,1,2 --strategies suggest,random --resume

Scenario `audit` (issue 17, which labels are wrong): per data set and seed, the 4,000-row seeded
sample with 10 % of its labels flipped (rows chosen at random, seeded; each to another label
chosen uniformly). reftag: `reft_core.audit.audit(...)` with its defaults (5 folds, each fit
capped at 3 epochs), flagged = its findings; the contender in the same run is cleanlab's text
recipe: TF-IDF + logistic regression, out-of-fold probabilities from `cross_val_predict(cv=5)`,
`cleanlab.filter.find_label_issues(prune_by_noise_rate)`. Precision, recall and F1 of each
flagged set against the flipped rows, and seconds. `--audit-epochs none` runs the audit at
the recipe's own epochs instead (a variant cell, `variant: "epochs=None"`).

    python -m bench.loop --scenario audit --data sst2,ag_news --seeds 0,1,2 --resume
    python -m bench.loop --scenario audit --data sst2 --seeds 0 --audit-epochs none --resume

Several scenarios in one run (`--scenario audit,active`) go seed by seed, data set by data set,
scenario by scenario, so every scenario has its first seeds early.

Every cell is one JSON line in bench/measured/loop.jsonl (appended as it finishes; `--results`
names another file, e.g. for a smoke run); `--resume` skips the cells already there, `--table`
prints RESULTS.md's tables from the file.
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
from reft_core.audit import AUDIT_EPOCHS, audit
from reft_core.selection import DEFAULT_STRATEGY, pick

from .common import Dataset, Split, command_line, machine, markdown_table, probs_from_predictions
from .data import label_names, read_jsonl, row_labels

RESULTS = Path(__file__).resolve().parent / "measured" / "loop.jsonl"
PRECISIONS = (0.9, 0.95)
SCENARIOS = ("calibration", "active", "audit")
# bench name → reft_core.selection strategy
STRATEGIES = {"suggest": DEFAULT_STRATEGY, "margin": "margin", "kcenter": "kcenter", "random": "random"}
START_PER_LABEL, ROUNDS, PER_ROUND = 8, 5, 40
FLIP_SHARE = 0.1


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
    confidence = cal.item_confidence(scores, data.multi_label, adapter.thresholds, adapter.min_labels)
    correct = cal.item_correct(scores, truth, data.multi_label, adapter.thresholds, adapter.min_labels)
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


# -- active: what to label next ---------------------------------------------------------------------
def start_rows(data: Dataset, seed: int, per_label: int = START_PER_LABEL) -> list[int]:
    """`per_label` pool rows of each label, drawn at random (seeded)."""
    rng = random.Random(seed)
    rows: list[int] = []
    for name in data.names:
        of_label = [i for i, label in enumerate(data.train.labels) if label == name]
        rows += rng.sample(of_label, min(per_label, len(of_label)))
    return rows


def _fit_and_score(base: Any, data: Dataset, rows: list[int], seed: int) -> tuple[Any, dict[str, Any]]:
    """reftag's default adapter on the labelled pool rows; its accuracy on the test rows."""
    t0 = time.perf_counter()
    adapter = train(base, [data.train.texts[i] for i in rows], [data.train.labels[i] for i in rows], data.names,
                    config={"seed": seed})
    train_seconds = time.perf_counter() - t0
    probs = probs_from_predictions(Tagger(base).predict(adapter, data.test.texts), data.names)
    accuracy = float((probs.argmax(-1) == data.targets(data.test)).double().mean())
    counts = {name: 0 for name in data.names}
    for i in rows:
        counts[data.train.labels[i]] += 1
    return adapter, {"n": len(rows), "accuracy": round(accuracy, 4), "train_seconds": round(train_seconds, 1),
                     "evaluation": adapter.metrics["evaluation"], "label_counts": counts}


def choose(base: Any, adapter: Any, data: Dataset, labelled: list[int], n: int, strategy: str,
           seed: int) -> list[int]:
    """The pool rows (indices into data.train) that `strategy` labels next."""
    taken = set(labelled)
    rest = [i for i in range(len(data.train.texts)) if i not in taken]
    if STRATEGIES[strategy] == "random":  # reads no model: no representations needed
        dummy = torch.zeros(len(rest), len(data.names))
        picks = pick(dummy, dummy, n, data.names, strategy="random", seed=seed)
    else:
        with torch.inference_mode():
            scores, pooled = Tagger(base).represent(adapter, data.train.texts)
        picks = pick(scores[rest], pooled[rest], n, data.names, thresholds=adapter.thresholds,
                     labelled=pooled[labelled], strategy=STRATEGIES[strategy])
    return [rest[p.index] for p in picks]


def run_active(base: Any, data: Dataset, seed: int, strategy: str, round0: dict[str, Any] | None = None,
               rounds: int = ROUNDS, per_round: int = PER_ROUND) -> tuple[dict[str, Any], dict[str, Any]]:
    """The learning curve of one strategy: (result, round 0's record, to share with the next strategy)."""
    labelled = start_rows(data, seed)
    adapter, check = None, None
    if round0 is None or STRATEGIES[strategy] != "random":  # a model-based strategy needs round 0's adapter
        adapter, first = _fit_and_score(base, data, labelled, seed)
        if round0 is None:
            round0 = first
        else:  # trained again for its adapter: the same seed should give the same accuracy
            check = first["accuracy"]
    curve = [{"round": 0, **round0, "select_seconds": 0.0}]
    picked: list[list[int]] = []
    for r in range(1, rounds + 1):
        t0 = time.perf_counter()
        new = choose(base, adapter, data, labelled, per_round, strategy, seed=seed * 1000 + r)
        select_seconds = time.perf_counter() - t0
        picked.append(new)
        labelled = labelled + new
        adapter, record = _fit_and_score(base, data, labelled, seed)
        curve.append({"round": r, **record, "select_seconds": round(select_seconds, 1)})
        print(json.dumps({"data": data.name, "seed": seed, "strategy": strategy, "round": r, "n": record["n"],
                          "accuracy": record["accuracy"], "train_seconds": record["train_seconds"],
                          "select_seconds": round(select_seconds, 1)}), flush=True)
    result = {"strategy": strategy, "selection_strategy": STRATEGIES[strategy], "curve": curve, "picked": picked,
              "start": labelled[:len(labelled) - sum(len(p) for p in picked)]}
    if check is not None:
        result["round0_retrained_accuracy"] = check
    return result, round0


# -- audit: which labels are wrong ------------------------------------------------------------------
def flip_labels(labels: list[str], names: list[str], seed: int,
                share: float = FLIP_SHARE) -> tuple[list[str], list[int]]:
    """`share` of the rows (chosen at random, seeded) relabelled to another label chosen uniformly."""
    rng = random.Random(10_000 + seed)
    flipped = sorted(rng.sample(range(len(labels)), round(share * len(labels))))
    noisy = list(labels)
    for i in flipped:
        noisy[i] = rng.choice([n for n in names if n != labels[i]])
    return noisy, flipped


def scores_against(flagged: list[int], flipped: list[int]) -> dict[str, Any]:
    hits = len(set(flagged) & set(flipped))
    precision = hits / len(flagged) if flagged else 0.0
    recall = hits / len(flipped) if flipped else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    # precision of the |flipped| most suspicious (both lists are ranked): independent of the cut
    top = flagged[:len(flipped)]
    return {"flagged": len(flagged), "hits": hits, "precision": round(precision, 4), "recall": round(recall, 4),
            "f1": round(f1, 4), "precision_at_flipped": round(len(set(top) & set(flipped)) / len(top), 4) if top
            else None}


def tfidf_cleanlab(texts: list[str], noisy: list[str], names: list[str], seed: int) -> list[int]:
    """cleanlab's text recipe: TF-IDF + logistic regression, 5-fold out-of-fold probabilities,
    find_label_issues (prune by noise rate), ranked by self-confidence."""
    import numpy as np
    from cleanlab.filter import find_label_issues
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline

    index = {n: i for i, n in enumerate(names)}
    y = np.array([index[n] for n in noisy])
    model = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000, random_state=seed))
    pred_probs = cross_val_predict(model, texts, y, cv=5, method="predict_proba")
    ranked = find_label_issues(y, pred_probs, filter_by="prune_by_noise_rate",
                               return_indices_ranked_by="self_confidence")
    return [int(i) for i in ranked]


def run_audit(base: Any, data: Dataset, seed: int, epochs: int | None = AUDIT_EPOCHS) -> dict[str, Any]:
    noisy, flipped = flip_labels(list(data.train.labels), data.names, seed)
    t0 = time.perf_counter()
    found = audit(base, data.train.texts, noisy, data.names, config={"seed": seed}, epochs=epochs)
    reftag_seconds = time.perf_counter() - t0
    flagged = [f.index for f in found.findings]
    index = {n: i for i, n in enumerate(data.names)}
    oof = found.probs.argmax(-1)
    truth = torch.tensor([index[n] for n in data.train.labels])
    given = torch.tensor([index[n] for n in noisy])
    reftag = {**scores_against(flagged, flipped), "seconds": round(reftag_seconds, 1),
              "cv_steps": found.cross_validation.steps, "cv_score": round(found.cross_validation.score, 4),
              # how good the out-of-fold model is: against the true labels and against the given (noisy) ones
              "oof_accuracy_true": round(float((oof == truth).double().mean()), 4),
              "oof_accuracy_given": round(float((oof == given).double().mean()), 4)}
    t0 = time.perf_counter()
    contender_flagged = tfidf_cleanlab(data.train.texts, noisy, data.names, seed)
    contender = {**scores_against(contender_flagged, flipped), "seconds": round(time.perf_counter() - t0, 1)}
    return {"n": len(noisy), "flipped": len(flipped), "epochs": epochs, "reftag": reftag,
            "cleanlab_tfidf_logreg": contender}


# -- results ---------------------------------------------------------------------------------------
def read_results(path: Path | None = None) -> list[dict[str, Any]]:
    path = path or RESULTS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_result(cell: dict[str, Any], path: Path | None = None) -> None:
    path = path or RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(cell, ensure_ascii=False) + "\n")


def cell_key(cell: dict[str, Any]) -> tuple[Any, ...]:
    """What makes a cell: scenario, data, seed, and the selection strategy it measured (active:
    `suggest` is whatever `selection.DEFAULT_STRATEGY` was when it ran) or the variant (audit)."""
    if cell["scenario"] == "active":
        return ("active", cell["data"], cell["seed"], cell["result"]["selection_strategy"])
    return (cell["scenario"], cell["data"], cell["seed"], cell.get("variant") or "")


def _mean_sd(values: list[float], digits: int = 3) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


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


def _latest(cells: list[dict[str, Any]], scenario: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for c in cells:
        if c["scenario"] == scenario:
            latest[cell_key(c)] = c
    return latest


def active_table(cells: list[dict[str, Any]]) -> str:
    """Accuracy per round (mean ± sd over seeds) per data set and strategy, then the targets."""
    latest = _latest(cells, "active")
    if not latest:
        return ""
    out = []
    for name in dict.fromkeys(k[1] for k in latest):
        curves: dict[str, dict[int, list[dict[str, Any]]]] = {}
        for (_, d, seed, strategy), c in sorted(latest.items(), key=lambda kv: kv[0][2]):  # by selection strategy
            if d == name:
                curves.setdefault(strategy, {})[seed] = c["result"]["curve"]
        rounds = max(len(curve) for by_seed in curves.values() for curve in by_seed.values())
        header = ["strategy", "seeds"] + [f"round {r} (n={_n(curves, r)})" for r in range(rounds)]
        rows = []
        for strategy, by_seed in curves.items():
            rows.append([strategy, len(by_seed)] + [
                _mean_sd([curve[r]["accuracy"] for curve in by_seed.values() if len(curve) > r])
                for r in range(rounds)])
        out.append(f"**{name}**: test accuracy after each round, mean ± sd over seeds\n\n"
                   + markdown_table(header, rows) + "\n\n" + _active_targets(curves, rounds))
    return "\n\n".join(out)


def _n(curves: dict[str, dict[int, list[dict[str, Any]]]], r: int) -> str:
    ns = sorted({curve[r]["n"] for by_seed in curves.values() for curve in by_seed.values() if len(curve) > r})
    return "/".join(str(n) for n in ns)


def _active_targets(curves: dict[str, dict[int, list[dict[str, Any]]]], rounds: int) -> str:
    return "\n\n".join(_targets_of(curves, rounds, strategy) for strategy in curves if strategy != "random")


def _targets_of(curves: dict[str, dict[int, list[dict[str, Any]]]], rounds: int, suggest: str) -> str:
    """The issue's targets for one selection strategy against random, on the seeds both have."""
    if "random" not in curves:
        return f"targets ({suggest}): need random cells"
    seeds = sorted(set(curves[suggest]) & set(curves["random"]))
    if not seeds:
        return f"targets ({suggest}): no seed has both {suggest} and random"
    curves = {"suggest": curves[suggest], "random": curves["random"]}

    def acc(strategy: str, r: int) -> list[float]:
        return [curves[strategy][s][r]["accuracy"] for s in seeds if len(curves[strategy][s]) > r]

    last = rounds - 1
    random_last = statistics.mean(acc("random", last))
    by3 = min(3, last)
    suggest_by3 = statistics.mean(acc("suggest", by3))
    lines = [f"Targets for {suggest} against random, over the {len(seeds)} seed(s) both have "
             f"({', '.join(map(str, seeds))}):\n",
             f"- {suggest} reaches random's round-{last} accuracy ({random_last:.3f}) by round {by3}: "
             f"{'yes' if suggest_by3 >= random_last else 'no'} ({suggest} at round {by3}: {suggest_by3:.3f}"
             + "".join(f"; round {r}: {statistics.mean(acc('suggest', r)):.3f}" for r in range(1, by3))
             + ")"]
    worst = []
    for r in range(1, rounds):
        s, q = acc("suggest", r), acc("random", r)
        sd = max(statistics.stdev(s) if len(s) > 1 else 0.0, statistics.stdev(q) if len(q) > 1 else 0.0)
        worst.append((statistics.mean(s) - statistics.mean(q), sd, r))
    below = [(d, sd, r) for d, sd, r in worst if d < -sd]
    lines.append(f"- {suggest} never below random by more than one seed-sd (the larger of the two rounds' sds): "
                 + ("yes" if not below else "no") + f" ({suggest} − random per round: "
                 + ", ".join(f"r{r} {d:+.3f} (sd {sd:.3f})" for d, sd, r in worst) + ")")
    return "\n".join(lines)


def audit_table(cells: list[dict[str, Any]]) -> str:
    latest = _latest(cells, "audit")
    if not latest:
        return ""
    rows, targets = [], []
    for variant in dict.fromkeys(k[3] for k in latest):
        for name in dict.fromkeys(k[1] for k in latest if k[3] == variant):
            runs = [c["result"] for k, c in sorted(latest.items()) if k[1] == name and k[3] == variant]
            for who, key in (("reftag audit" + ("" if variant == "default" else f" ({variant})"), "reftag"),
                             ("cleanlab, TF-IDF + LogReg", "cleanlab_tfidf_logreg")):
                rows.append([name, who, len(runs)] + [_mean_sd([r[key][m] for r in runs])
                                                      for m in ("precision", "recall", "f1", "precision_at_flipped")]
                            + [_mean_sd([r[key]["flagged"] for r in runs], 0),
                               _mean_sd([r[key]["seconds"] for r in runs], 0)])
            if variant == "default":
                f1 = statistics.mean(r["reftag"]["f1"] for r in runs)
                f1c = statistics.mean(r["cleanlab_tfidf_logreg"]["f1"] for r in runs)
                precision = statistics.mean(r["reftag"]["precision"] for r in runs)
                targets.append(f"- {name} ({len(runs)} seed(s)): F1 ≥ contender + 10 points: "
                               f"{'yes' if f1 >= f1c + 0.10 else 'no'} ({f1:.3f} vs {f1c:.3f}, "
                               f"{100 * (f1 - f1c):+.1f} points); precision ≥ 0.8: "
                               f"{'yes' if precision >= 0.8 else 'no'} ({precision:.3f})")
    header = ["data", "method", "seeds", "precision", "recall", "F1", "precision of the top #flipped", "flagged",
              "seconds"]
    return markdown_table(header, rows) + "\n\n" + "\n".join(targets)


def tables(cells: list[dict[str, Any]]) -> str:
    parts = [("Calibration and auto-accept (issue 16)", calibration_table(cells)),
             ("Active learning (issue 17)", active_table(cells)), ("Audit (issue 17)", audit_table(cells))]
    return "\n\n".join(f"### {title}\n\n{body}" for title, body in parts if body.count("\n") > 1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", default="calibration",
                        help=f"one or more of {', '.join(SCENARIOS)}, comma-separated")
    parser.add_argument("--data", default="sst2,ag_news,goemotions")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--train-rows", type=int, default=4000)
    parser.add_argument("--test-rows", type=int, default=2000)
    parser.add_argument("--strategies", default="suggest,random", help="active: " + ", ".join(STRATEGIES))
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="active: rounds after round 0")
    parser.add_argument("--audit-epochs", default=str(AUDIT_EPOCHS),
                        help="audit: each fold's epoch cap (none: the recipe's own; a variant cell)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", type=Path, default=None,
                        help="the cells' file (default bench/measured/loop.jsonl)")
    parser.add_argument("--resume", action="store_true", help="skip the cells the results file holds")
    parser.add_argument("--table", action="store_true", help="print the tables from the results file")
    args = parser.parse_args(argv)
    args.scenarios = args.scenario.split(",")
    args.strategy_list = args.strategies.split(",")
    for value, known, what in ((args.scenarios, SCENARIOS, "scenario"), (args.strategy_list, STRATEGIES, "strategy")):
        bad = [v for v in value if v not in known]
        if bad:
            parser.error(f"unknown {what} {', '.join(bad)} (one of {', '.join(known)})")
    args.epochs = None if args.audit_epochs.lower() == "none" else int(args.audit_epochs)
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    path = args.results or RESULTS
    if args.table:
        print(tables(read_results(path)))
        return []
    torch.set_num_threads(args.threads)
    base = load_base()  # the bundled MiniLM
    done = {cell_key(c) for c in read_results(path)} if args.resume else set()
    written: list[dict[str, Any]] = []
    variant = "default" if args.epochs == AUDIT_EPOCHS else f"epochs={args.epochs}"

    def write(scenario: str, name: str, seed: int, result: dict[str, Any], **extra: Any) -> dict[str, Any]:
        cell = {"scenario": scenario, "data": name, "seed": seed, **extra, "train_rows": args.train_rows,
                "test_rows": args.test_rows, "command": command_line("bench.loop"), "machine": machine(),
                "result": result}
        append_result(cell, path)
        written.append(cell)
        return cell

    for seed in (int(s) for s in args.seeds.split(",")):
        for name in args.data.split(","):
            for scenario in args.scenarios:
                if scenario == "calibration":
                    if ("calibration", name, seed, "") in done:
                        continue
                    data = sample(name, args.train_rows, args.test_rows, seed)
                    result = run_calibration(base, data, seed)
                    write(scenario, name, seed, result)
                    print(json.dumps({"data": name, "seed": seed, "accuracy": result["accuracy"],
                                      "ece_before": result["ece_before"], "ece_after": result["ece_after"],
                                      "auto_accept_0.95": result["auto_accept"]["0.95"]}), flush=True)
                elif scenario == "active":
                    todo = [s for s in args.strategy_list if ("active", name, seed, STRATEGIES[s]) not in done]
                    if not todo:
                        continue
                    data = sample(name, args.train_rows, args.test_rows, seed)
                    # round 0 is shared: take it from a cell of this data set and seed when there is one
                    earlier = [c for c in read_results(path) if c["scenario"] == "active" and c["data"] == name
                               and c["seed"] == seed and c["rounds"] == args.rounds]
                    round0 = {k: v for k, v in earlier[0]["result"]["curve"][0].items()
                              if k not in ("round", "select_seconds")} if earlier else None
                    for strategy in todo:
                        result, round0 = run_active(base, data, seed, strategy, round0, rounds=args.rounds)
                        write(scenario, name, seed, result, strategy=strategy, selection=STRATEGIES[strategy],
                              rounds=args.rounds,
                              per_round=PER_ROUND, start_per_label=START_PER_LABEL)
                else:
                    if ("audit", name, seed, variant) in done:
                        continue
                    data = sample(name, args.train_rows, args.test_rows, seed)
                    result = run_audit(base, data, seed, args.epochs)
                    write(scenario, name, seed, result, variant=variant)
                    keys = ("precision", "recall", "f1", "seconds")
                    print(json.dumps({"data": name, "seed": seed, "variant": variant,
                                      "reftag": {k: result["reftag"][k] for k in keys},
                                      "contender": {k: result["cleanlab_tfidf_logreg"][k] for k in keys}}), flush=True)
    print(tables(read_results(path)))
    return written


if __name__ == "__main__":
    main()
