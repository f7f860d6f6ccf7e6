"""Scores you can trust: calibration, its error, and the score above which answers are right
often enough to accept without a person.

- Single-label: one temperature T, `softmax(z / T)` (Guo et al., 2017) — one number, so it
  cannot overfit a few hundred rows, and it never changes which label is on top.
- Multi-label: Platt scaling per label, `sigmoid(a·z + b)` on that label's logit.

Both are fitted by maximum likelihood on predictions the adapter did not train on (held-out
rows, or k-fold's out-of-fold predictions). ECE is the usual 15 equal-width bins: over each
item's top score (single-label) or over every (item, label) pair (multi-label).

An item's *confidence* is the calibrated probability that all its labels are right: the top
score (single-label), or the product over labels of the probability that the label's decision
(on or off, at its threshold) is right (multi-label, taking the labels as independent).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

EPS = 1e-6
BINS = 15
# A multi-label set's label gets a threshold of its own when the evaluated items hold it at least
# this many times (and lack it as many); rarer labels share one (`own_threshold`).
MIN_OWN_THRESHOLD = 20
# Review thresholds are kept for these precisions; a label set asking for another gets the
# threshold of the next stricter one (never a looser one than it asked for).
PRECISION_GRID = (0.8, 0.85, 0.9, 0.925, 0.95, 0.96, 0.97, 0.98, 0.99)
# How sure the threshold must be: the precision above it is judged by its Wilson lower bound at
# this many standard errors, not by the point estimate — the lowest threshold whose point
# estimate just reaches the target is chosen among many, and would fall short on new texts.
WILSON_Z = 1.0


def logits_of(probs: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Back from scores to logits: log p for a softmax (up to a per-row constant, which a
    softmax ignores), logit p for sigmoids."""
    p = probs.double().clamp(EPS, 1 - EPS)
    return torch.log(p / (1 - p)) if multi_label else torch.log(p)


@dataclass(frozen=True)
class Calibration:
    """How an adapter's logits become calibrated scores. The identity (T = 1, a = 1, b = 0)
    until fitted."""

    method: str = "none"  # "temperature" | "platt" | "none"
    temperature: float = 1.0
    a: tuple[float, ...] = ()
    b: tuple[float, ...] = ()

    def scores(self, logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
        if multi_label:
            if self.method == "platt":
                a = torch.tensor(self.a, dtype=logits.dtype, device=logits.device)
                b = torch.tensor(self.b, dtype=logits.dtype, device=logits.device)
                return torch.sigmoid(a * logits + b)
            return torch.sigmoid(logits)
        return torch.softmax(logits / self.temperature, dim=-1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Calibration:
        if not raw:
            return cls()
        return cls(method=str(raw.get("method", "none")), temperature=float(raw.get("temperature", 1.0)),
                   a=tuple(float(x) for x in raw.get("a", ())), b=tuple(float(x) for x in raw.get("b", ())))


def _minimise(params: list[torch.Tensor], loss_fn: Any) -> None:
    optimiser = torch.optim.LBFGS(params, lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    optimiser.step(closure)


def fit(probs: torch.Tensor, truth: torch.Tensor, multi_label: bool) -> Calibration:
    """Fit on these (N, C) scores and their truth: label indices (N,) or a 0/1 matrix (N, C)."""
    z = logits_of(probs, multi_label)
    if len(z) == 0:
        return Calibration()
    if not multi_label:
        log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
        target = truth.long()
        _minimise([log_t], lambda: torch.nn.functional.cross_entropy(z / log_t.exp(), target))
        t = float(log_t.detach().exp().clamp(0.05, 20.0))
        return Calibration("temperature", temperature=round(t, 5))
    y = truth.double()
    a = torch.ones(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    # Platt's targets: (n₊ + 1)/(n₊ + 2) and 1/(n₋ + 2) instead of 1 and 0, so a label seen a few
    # times (or never) gets a finite, gentle fit instead of an infinite slope.
    positives, negatives = y.sum(0), (1 - y).sum(0)
    soft = y * (positives + 1) / (positives + 2) + (1 - y) / (negatives + 2)
    _minimise([a, b], lambda: torch.nn.functional.binary_cross_entropy_with_logits(a * z + b, soft))
    a_fit = a.detach().clamp(min=0.0)  # never reverse a label's ranking
    return Calibration("platt", a=tuple(round(x, 5) for x in a_fit.tolist()),
                       b=tuple(round(x, 5) for x in b.detach().tolist()))


def own_threshold(truth: torch.Tensor) -> torch.Tensor:
    """(C,) bool: the labels of a multi-label set seen often enough among these evaluated items —
    `MIN_OWN_THRESHOLD` times on and as many off — to get a threshold of their own; the others
    share one (`metrics.tune_thresholds`). Tuned per label on a few positives, a threshold
    follows their noise: GoEmotions with 8 examples of each of 28 labels (a label on 1–5 of the
    30 held-out rows) got thresholds down to 0.05 and 10 labels a text (bench/RESULTS.md)."""
    positives = truth.sum(0)
    return (positives >= MIN_OWN_THRESHOLD) & (len(truth) - positives >= MIN_OWN_THRESHOLD)


def calibrated(calibration: Calibration, probs: torch.Tensor, multi_label: bool) -> torch.Tensor:
    return calibration.scores(logits_of(probs, multi_label), multi_label).float()


def ece(probs: torch.Tensor, truth: torch.Tensor, multi_label: bool, bins: int = BINS) -> float:
    """Expected calibration error over equal-width bins: Σ_bins |bin|/N · |accuracy − confidence|."""
    if multi_label:
        confidence = probs.reshape(-1).double()
        correct = truth.reshape(-1).double()
    else:
        top, pred = probs.max(-1)
        confidence = top.double()
        correct = (pred == truth).double()
    if len(confidence) == 0:
        return 0.0
    which = (confidence * bins).long().clamp(max=bins - 1)
    total = 0.0
    for k in range(bins):
        inside = which == k
        if inside.any():
            total += float(inside.sum()) * abs(float(correct[inside].mean() - confidence[inside].mean()))
    return round(total / len(confidence), 5)


def decisions(probs: torch.Tensor, thresholds: Sequence[float] | None = None, min_labels: int = 0) -> torch.Tensor:
    """(N, C) bool: the labels a multi-label adapter gives each item — every label whose score
    reaches its threshold (0.5 without thresholds) and, with `min_labels` 1, the top-scoring
    label of an item where none does (an adapter trained on examples that all carry a label
    never answers "no label")."""
    t = torch.tensor(list(thresholds) if thresholds else [0.5] * probs.shape[-1], dtype=probs.dtype)
    on = probs >= t
    if min_labels > 0 and on.numel():
        empty = ~on.any(-1)
        on[empty, probs[empty].argmax(-1)] = True
    return on


def item_confidence(probs: torch.Tensor, multi_label: bool, thresholds: Sequence[float] | None = None,
                    min_labels: int = 0) -> torch.Tensor:
    """(N,) the probability that each item's labels are all right (see the module docstring)."""
    if not multi_label:
        return probs.max(-1).values
    right = torch.where(decisions(probs, thresholds, min_labels), probs, 1 - probs)
    return right.prod(-1)


def item_correct(probs: torch.Tensor, truth: torch.Tensor, multi_label: bool,
                 thresholds: Sequence[float] | None = None, min_labels: int = 0) -> torch.Tensor:
    """(N,) whether each item's predicted labels are exactly its true ones."""
    if not multi_label:
        return probs.argmax(-1) == truth
    return (decisions(probs, thresholds, min_labels) == truth.bool()).all(-1)


def wilson_lower(correct: float, n: float, z: float = WILSON_Z) -> float:
    if n <= 0:
        return 0.0
    p = correct / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def review_threshold(confidence: torch.Tensor, correct: torch.Tensor, precision: float,
                     z: float = WILSON_Z) -> float | None:
    """The lowest confidence t such that the items at or above t are right with precision ≥ the
    target (by the Wilson lower bound), or None when no t reaches it. Items below t need review."""
    order = torch.argsort(confidence, descending=True)
    conf = confidence[order].tolist()
    hits = torch.cumsum(correct[order].double(), 0).tolist()
    best: float | None = None
    for i, c in enumerate(conf):
        if i + 1 < len(conf) and conf[i + 1] == c:
            continue  # a threshold takes every item with the same score
        if wilson_lower(hits[i], i + 1, z) >= precision:
            best = c
    return best


@dataclass
class Review:
    """What training learns for auto-accepting: per target precision, the confidence threshold
    and the share of the evaluated items above it (their coverage), measured on the predictions
    the calibration was fitted on."""

    n: int
    thresholds: dict[str, float | None] = field(default_factory=dict)
    coverage: dict[str, float] = field(default_factory=dict)

    @classmethod
    def measure(cls, confidence: torch.Tensor, correct: torch.Tensor,
                targets: tuple[float, ...] = PRECISION_GRID) -> Review:
        review = cls(len(confidence))
        for target in targets:
            key = f"{target:g}"
            t = review_threshold(confidence, correct, target)
            review.thresholds[key] = None if t is None else round(t, 6)
            review.coverage[key] = 0.0 if t is None else round(float((confidence >= t).double().mean()), 4)
        return review


def threshold_for(review: dict[str, Any] | None, precision: float) -> float | None:
    """From an adapter's stored review table: the threshold for `precision`, or for the nearest
    stricter precision kept; infinity when none reaches it (every item needs review). None when
    the adapter has no table (trained before calibration, or with nothing to evaluate on)."""
    if not review or not review.get("thresholds"):
        return None
    kept = sorted((float(k), v) for k, v in review["thresholds"].items())
    for target, threshold in kept:
        if target >= precision - 1e-9:
            return math.inf if threshold is None else float(threshold)
    return math.inf


def cross_fitted_ece(probs: torch.Tensor, truth: torch.Tensor, multi_label: bool, folds: int = 2) -> float:
    """ECE of calibrated scores where each row's calibration was fitted on the other rows: what
    calibration does for predictions it was not fitted on."""
    n = len(probs)
    if n < 2 * folds:
        return ece(probs, truth, multi_label)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(n, generator=generator)
    out = torch.empty_like(probs)
    for k in range(folds):
        held = order[k::folds]
        rest = torch.cat([order[j::folds] for j in range(folds) if j != k])
        out[held] = calibrated(fit(probs[rest], truth[rest], multi_label), probs[held], multi_label)
    return ece(out, truth, multi_label)
