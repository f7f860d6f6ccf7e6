"""Which texts to label next: uncertainty weighted by diversity.

A text is worth a person's time when the adapter is unsure of it (its answer is close to
another) and when it is unlike what the adapter has already learned from (else ten picks may
be ten copies of one confusion). Strategies, measured against each other in `bench/loop.py`
(scenario `active`):

- `margin` (the default): the n texts nearest a decision boundary (single-label: top score
  minus the runner-up; multi-label: the score nearest its label's threshold).
- `kcenter`: k-center greedy on the pooled representations, from the labelled examples —
  coverage only, no uncertainty.
- `margin_kcenter`: the `pool_factor`·n most uncertain texts, then greedy picks each maximising
  uncertainty × distance to the nearest labelled example or earlier pick (cosine distance on
  the pooled representation the head reads).
- `random`: the baseline.

Measured (bench/active_proxy.py, 5 seeds, SST-2 and AG News pools of 4,000, 8 per label then 5
rounds of 40): margin sampling was the best at round 5 on both (AG News 0.839 against random's
0.818 and margin_kcenter's 0.834; SST-2 0.753, 0.743, 0.738); diversity did not pay for itself at
these sizes, so margin is the default (bench/RESULTS.md, issue 17).

Pure torch; knows nothing of the service.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

STRATEGIES = ("margin_kcenter", "margin", "kcenter", "random")
DEFAULT_STRATEGY = "margin"


@dataclass(frozen=True)
class Pick:
    """One text to label: its row, its score (higher = more useful to label) and why."""

    index: int
    score: float
    reason: str


def uncertainty(scores: torch.Tensor, multi_label: bool, thresholds: Sequence[float] | None = None) -> torch.Tensor:
    """(N,) in [0, 1]: 1 on a decision boundary, 0 when the answer is as sure as it gets.
    Single-label: 1 − (top score − runner-up); multi-label: 1 − 2·(distance of the score
    nearest its threshold), clamped."""
    if not multi_label:
        top2 = scores.topk(min(2, scores.shape[1]), dim=-1).values
        margin = top2[:, 0] - (top2[:, 1] if top2.shape[1] > 1 else 0)
        return (1 - margin).clamp(0, 1)
    t = torch.tensor(list(thresholds) if thresholds else [0.5] * scores.shape[1], dtype=scores.dtype)
    closest = (scores - t).abs().min(-1).values
    return (1 - 2 * closest).clamp(0, 1)


def _min_distance(points: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """(N,) cosine distance of each point (unit rows) to its nearest center (unit rows); 1 without centers."""
    if len(centers) == 0:
        return torch.ones(len(points))
    out = torch.empty(len(points))
    for lo in range(0, len(points), 4096):
        out[lo:lo + 4096] = (1 - (points[lo:lo + 4096] @ centers.T).max(-1).values).clamp(min=0)
    return out


def _greedy(points: torch.Tensor, weight: torch.Tensor, labelled: torch.Tensor, n: int) -> list[tuple[int, float]]:
    """Greedy picks maximising weight × distance to the nearest labelled point or earlier pick."""
    nearest = _min_distance(points, labelled)
    picks: list[tuple[int, float]] = []
    taken = torch.zeros(len(points), dtype=torch.bool)
    for _ in range(min(n, len(points))):
        value = torch.where(taken, torch.full_like(nearest, -1.0), weight * nearest)
        best = int(value.argmax())
        picks.append((best, float(value[best])))
        taken[best] = True
        nearest = torch.minimum(nearest, (1 - points @ points[best]).clamp(min=0))
    return picks


def _describe(row: torch.Tensor, names: Sequence[str], multi_label: bool, thresholds: Sequence[float] | None,
              distance: float | None) -> str:
    if multi_label:
        t = list(thresholds) if thresholds else [0.5] * len(names)
        k = int((row - torch.tensor(t, dtype=row.dtype)).abs().argmin())
        text = f"unsure of {names[k]!r}: score {float(row[k]):.2f}, threshold {t[k]:.2f}"
    else:
        top = row.topk(min(2, len(names)))
        a, b = (int(i) for i in top.indices)
        text = (f"between {names[a]!r} ({float(top.values[0]):.2f}) and {names[b]!r} ({float(top.values[1]):.2f}), "
                f"margin {float(top.values[0] - top.values[1]):.2f}")
    if distance is not None:
        text += f"; unlike the examples and earlier picks (cosine distance {distance:.2f})"
    return text


def pick(scores: torch.Tensor, pooled: torch.Tensor, n: int, label_names: Sequence[str], multi_label: bool = False,
         thresholds: Sequence[float] | None = None, labelled: torch.Tensor | None = None,
         strategy: str = DEFAULT_STRATEGY, pool_factor: int = 10, seed: int = 0) -> list[Pick]:
    """The `n` rows of (scores, pooled) most worth labelling, best first. `scores` are the
    adapter's (calibrated) scores, `pooled` the representations its head reads, `labelled` those
    of the examples it learned from (for diversity)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}")
    total = len(scores)
    n = min(n, total)
    if n <= 0:
        return []
    unsure = uncertainty(scores, multi_label, thresholds)
    points = F.normalize(pooled.float(), dim=-1)
    centers = F.normalize(labelled.float(), dim=-1) if labelled is not None and len(labelled) else points[:0]
    if strategy == "random":
        rows = random.Random(seed).sample(range(total), n)
        return [Pick(i, float(unsure[i]), "chosen at random") for i in rows]
    if strategy == "margin":
        order = unsure.argsort(descending=True, stable=True)[:n].tolist()
        return [Pick(i, float(unsure[i]), _describe(scores[i], label_names, multi_label, thresholds, None))
                for i in order]
    if strategy == "kcenter":
        chosen = _greedy(points, torch.ones(total), centers, n)
        return [Pick(i, round(value, 6), _describe(scores[i], label_names, multi_label, thresholds, value))
                for i, value in chosen]
    # margin_kcenter: the most uncertain few times n, then diversity among them
    candidates = unsure.argsort(descending=True, stable=True)[:max(n, pool_factor * n)]
    chosen = _greedy(points[candidates], unsure[candidates], centers, n)
    out = []
    for local, value in chosen:
        i = int(candidates[local])
        distance = value / float(unsure[i]) if float(unsure[i]) > 0 else 0.0
        out.append(Pick(i, round(value, 6), _describe(scores[i], label_names, multi_label, thresholds, distance)))
    return out
