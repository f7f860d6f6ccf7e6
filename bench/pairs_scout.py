"""Scouting, not a contender: SetFit's recipe through the adapter (bench/RESULTS.md, "SetFit's
recipe through the adapter"). Pairs of examples as SetFit 1.2 makes them, a cosine-similarity
loss on the mean-pooled edited last hidden state, reftag's schedule; then the probe contender's
classifier (`reft_core.probe.logistic_probe`) on that representation. Since built into
training as the pairs objective (`TrainConfig.objective`), whose functions it calls; kept to
score the representation at several steps of one schedule. Test accuracy at the
chosen steps, one JSON line per cell in bench/measured/pairs_scout.jsonl.

    python -m bench.pairs_scout sst2 8 0 '{"checks": [0, 100], "lr": 0.001, "rank": 8,
        "layers": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]}'

The options are reftag's training options (`TrainConfig`), plus `checks`: the steps at which the
head is fitted and scored (the schedule ends at the last); step 0 is the probe on the untrained
adapter's output. Single-label sets only.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reft_core import TrainConfig, load_base
from reft_core.probe import logistic_probe
from reft_core.training import (
    HiddenCache,
    Run,
    _encode_labels,
    pairs_batch_loss,
    pooled,
    setfit_pairs,
    warmup_then_decay,
)

from .fewshot import sample

RESULTS = Path(__file__).parent / "measured" / "pairs_scout.jsonl"


def main(argv: list[str]) -> dict[str, Any]:
    torch.set_num_threads(1)
    name, k, seed = argv[0], int(argv[1]), int(argv[2])
    options = json.loads(argv[3]) if len(argv) > 3 else {}
    checks = sorted(int(step) for step in options.pop("checks", [0, 100]))
    base = load_base("multilingual-e5-small")
    data = sample(name, k, seed, 2000)
    cfg = TrainConfig.from_dict({"seed": seed, **options})
    layers = cfg.resolve_layers(base.num_layers)
    targets = _encode_labels(data.train.labels, data.names, False)
    truth = _encode_labels(data.test.labels, data.names, False).numpy()
    ids = base.tokenize(data.train.texts, cfg.max_length)
    cache = HiddenCache(base, ids, upto=layers[0])
    test_cache = HiddenCache(base, base.tokenize(data.test.texts, cfg.max_length), upto=layers[0])
    run = Run(base, cfg, cache, [len(r) for r in ids], targets, data.names, False, layers, True, None, 0)
    torch.manual_seed(seed)
    adapter = run.new_adapter()

    def embed(c: HiddenCache) -> np.ndarray[Any, Any]:
        return pooled(adapter, c, layers[0], list(range(len(c.ids))), "mean").numpy()

    def head_accuracy() -> tuple[float, float]:
        classifier, c = logistic_probe(embed(cache), targets.numpy(), False, seed)
        return float((classifier.predict(embed(test_cache)) == truth).mean()), c

    pairs = setfit_pairs(targets.tolist(), seed)
    total = max(checks)
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=cfg.lr, weight_decay=0.0)
    schedule = warmup_then_decay(optimizer, total)
    cell: dict[str, Any] = {"data": name, "k": k, "seed": seed, "extra": options, "checks": {}}
    t0 = time.perf_counter()
    if 0 in checks:
        cell["checks"]["0"] = head_accuracy()
    adapter.train()
    at = 0
    for step in range(1, total + 1):
        batch = pairs[at:at + 16]  # the last batch of a pass may be short; then back to the first
        at = at + 16 if at + 16 < len(pairs) else 0
        loss = pairs_batch_loss(adapter, cache, layers[0], batch, "mean")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step in checks:
            cell["checks"][str(step)] = head_accuracy()
    cell["seconds"] = time.perf_counter() - t0
    with RESULTS.open("a") as f:
        f.write(json.dumps(cell) + "\n")
    return cell


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
