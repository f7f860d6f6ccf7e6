"""Choosing the suggest job's default strategy (issue 17): active learning with a cheap learner.

The adapter benchmark (bench/loop.py --scenario active) trains reftag's adapter every round and
costs an hour per data set and seed on two cores; this one compares every strategy of
reft_core.selection in minutes, with a stand-in learner — logistic regression on the frozen
base's mean-pooled embeddings (the representation the adapter starts from) — on the same pools:
4,000 training rows sampled with seed 0 (bench.loop.sample), the first 2,000 test rows, 8
examples per label to start (seeded), then 5 rounds of 40 picks. Accuracy per round, mean and
sd over the seeds. What it measures is the selection, not the adapter.

    python -m bench.active_proxy --data sst2,ag_news --seeds 0,1,2,3,4
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reft_core import load_base
from reft_core.heads import pool
from reft_core.selection import pick

from .common import command_line, machine
from .loop import sample

RESULTS = Path(__file__).resolve().parent / "measured" / "active_proxy.jsonl"
STRATEGIES: dict[str, dict[str, Any]] = {"random": {"strategy": "random"}, "margin": {"strategy": "margin"},
              "margin_kcenter": {"strategy": "margin_kcenter", "pool_factor": 10},
              "margin_kcenter_3": {"strategy": "margin_kcenter", "pool_factor": 3},
              "kcenter": {"strategy": "kcenter"}}


@torch.inference_mode()
def embed(base, texts: list[str]) -> torch.Tensor:
    out = []
    for i in range(0, len(texts), 64):
        ids, mask = base.pad(base.tokenize(texts[i:i + 64], 128))
        out.append(pool(base.model(input_ids=ids, attention_mask=mask).last_hidden_state, mask, "mean"))
    return torch.cat(out)


def curve(x, y, tx, ty, start: list[int], names, seed: int, options: dict, rounds: int, per_round: int) -> list[float]:
    from sklearn.linear_model import LogisticRegression

    labelled, accuracy = list(start), []
    for r in range(rounds + 1):
        model = LogisticRegression(max_iter=2000).fit(x[labelled].numpy(), y[labelled])
        accuracy.append(round(float((model.predict(tx.numpy()) == ty).mean()), 4))
        if r == rounds:
            break
        taken = set(labelled)
        rest = [i for i in range(len(y)) if i not in taken]
        probs = torch.tensor(model.predict_proba(x[rest].numpy()), dtype=torch.float32)
        picks = pick(probs, x[rest], per_round, names, labelled=x[labelled], seed=seed * 100 + r, **options)
        labelled += [rest[p.index] for p in picks]
    return accuracy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="sst2,ag_news")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = load_base()
    for name in args.data.split(","):
        data = sample(name, 4000, 2000, 0)
        index = {n: i for i, n in enumerate(data.names)}
        x, tx = embed(base, data.train.texts), embed(base, data.test.texts)
        y = np.array([index[n] for n in data.train.labels])
        ty = np.array([index[n] for n in data.test.labels])
        curves: dict[str, list[list[float]]] = {s: [] for s in STRATEGIES}
        for seed in (int(s) for s in args.seeds.split(",")):
            rng = random.Random(seed)
            start = [i for k in range(len(data.names)) for i in rng.sample([j for j in range(len(y)) if y[j] == k], 8)]
            for strategy, options in STRATEGIES.items():
                curves[strategy].append(curve(x, y, tx, ty, start, data.names, seed, options, args.rounds,
                                              args.per_round))
        cell = {"data": name, "seeds": args.seeds, "command": command_line("bench.active_proxy"),
                "machine": machine(), "curves": curves,
                "mean": {s: [round(statistics.mean(c[r] for c in cs), 4) for r in range(args.rounds + 1)]
                         for s, cs in curves.items()},
                "sd": {s: [round(statistics.stdev(c[r] for c in cs), 4) if len(cs) > 1 else 0.0
                           for r in range(args.rounds + 1)] for s, cs in curves.items()}}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as f:
            f.write(json.dumps(cell) + "\n")
        for strategy in STRATEGIES:
            print(name, strategy, cell["mean"][strategy], "sd", cell["sd"][strategy], flush=True)


if __name__ == "__main__":
    main()
