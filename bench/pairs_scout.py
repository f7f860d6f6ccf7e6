"""Scouting, not a contender: SetFit's recipe through the adapter (bench/RESULTS.md, "SetFit's
recipe through the adapter"). Pairs of examples as SetFit 1.2 makes them, a cosine-similarity
loss on the mean-pooled edited last hidden state, reftag's schedule; then the probe contender's
classifier (`fewshot.fit_probe`) on that representation. Test accuracy at the
chosen steps, one JSON line per cell in bench/measured/pairs_scout.jsonl.

    python -m bench.pairs_scout sst2 8 0 '{"checks": [0, 100], "lr": 0.001, "rank": 8,
        "layers": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]}'

The options are reftag's training options (`TrainConfig`), plus `checks`: the steps at which the
head is fitted and scored (the schedule ends at the last); step 0 is the probe on the untrained
adapter's output. Single-label sets only.
"""
from __future__ import annotations

import itertools
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from reft_core import TrainConfig, load_base
from reft_core.heads import pool
from reft_core.training import HiddenCache, Run, _encode_labels, _last_hidden, warmup_then_decay

from .fewshot import fit_probe, sample

RESULTS = Path(__file__).parent / "measured" / "pairs_scout.jsonl"


def setfit_pairs(labels: list[int], seed: int) -> list[tuple[int, int, float]]:
    """Every same-label pair (with itself) and every other-label pair, the smaller side repeated
    until both are as many (SetFit's default "oversampling"), shuffled."""
    n = len(labels)
    same = [(i, j) for i, j in itertools.combinations_with_replacement(range(n), 2) if labels[i] == labels[j]]
    other = [(i, j) for i, j in itertools.combinations(range(n), 2) if labels[i] != labels[j]]
    m = max(len(same), len(other))
    pairs = [(a, b, 1.0) for a, b in (same * (m // len(same) + 1))[:m]]
    pairs += [(a, b, 0.0) for a, b in (other * (m // max(1, len(other)) + 1))[:m]]
    random.Random(seed).shuffle(pairs)
    return pairs


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
        adapter.eval()
        out = []
        with torch.no_grad(), torch.nn.utils.parametrize.cached():
            for lo in range(0, len(c.ids), 128):
                last, mask = _last_hidden(adapter, c, layers[0], list(range(lo, min(len(c.ids), lo + 128))))
                out.append(pool(last, mask, "mean"))
        adapter.train()
        return torch.cat(out).numpy()

    def head_accuracy() -> tuple[float, float]:
        classifier, c = fit_probe(embed(cache), targets.numpy(), False, seed)
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
        rows = sorted({a for a, _, _ in batch} | {b for _, b, _ in batch})
        index = {r: i for i, r in enumerate(rows)}
        last, mask = _last_hidden(adapter, cache, layers[0], rows)
        pooled = pool(last, mask, "mean")
        left, right = [index[a] for a, _, _ in batch], [index[b] for _, b, _ in batch]
        similarity = F.cosine_similarity(pooled[left], pooled[right])
        loss = F.mse_loss(similarity, torch.tensor([same for _, _, same in batch]))
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
