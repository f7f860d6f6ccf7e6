"""Held-out scores: accuracy, macro-/micro-F1, per-label P/R/F1, confusion, thresholds; for spans,
entity-level precision, recall and F1."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .calibration import decisions, own_threshold
from .config import main_metric
from .spans import Span


def _prf(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    precision = tp / (tp + fp).clamp(min=1)
    recall = tp / (tp + fn).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    return precision, recall, f1


def _per_label(names: list[str], tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> dict[str, dict[str, float]]:
    precision, recall, f1 = _prf(tp, fp, fn)
    return {n: {"precision": round(precision[i].item(), 4), "recall": round(recall[i].item(), 4),
                "f1": round(f1[i].item(), 4), "support": int((tp[i] + fn[i]).item())}
            for i, n in enumerate(names)}


def single_label_metrics(probs: torch.Tensor, truth: torch.Tensor, names: list[str]) -> dict[str, Any]:
    """probs (N, C), truth (N,) label indices."""
    pred = probs.argmax(-1)
    k = len(names)
    confusion = torch.bincount(truth * k + pred, minlength=k * k).reshape(k, k)  # rows = truth
    tp = confusion.diag().double()
    fp = confusion.sum(0).double() - tp
    fn = confusion.sum(1).double() - tp
    _, _, f1 = _prf(tp, fp, fn)
    present = (tp + fn) > 0
    return {
        "accuracy": round((pred == truth).double().mean().item(), 4),
        "macro_f1": round(f1[present].mean().item() if present.any() else 0.0, 4),
        "per_label": _per_label(names, tp, fp, fn),
        "confusion": confusion.tolist(),
    }


def multi_label_metrics(probs: torch.Tensor, truth: torch.Tensor, names: list[str],
                        thresholds: Sequence[float], min_labels: int = 0) -> dict[str, Any]:
    """probs (N, C), truth (N, C) in {0, 1}; the labels given as `calibration.decisions` gives them."""
    pred = decisions(probs, thresholds, min_labels)
    gold = truth.bool()
    tp = (pred & gold).sum(0).double()
    fp = (pred & ~gold).sum(0).double()
    fn = (~pred & gold).sum(0).double()
    _, _, f1 = _prf(tp, fp, fn)
    _, _, micro = _prf(tp.sum(), fp.sum(), fn.sum())
    present = (tp + fn) > 0
    return {
        "accuracy": round((pred == gold).all(-1).double().mean().item(), 4),  # exact match
        "micro_f1": round(micro.item(), 4),
        "macro_f1": round(f1[present].mean().item() if present.any() else 0.0, 4),
        "per_label": _per_label(names, tp, fp, fn),
    }


def span_metrics(gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]],
                 names: Sequence[str]) -> dict[str, Any]:
    """Entity-level, exact match (CoNLL's): a predicted span is right only when a gold span of
    the same text has its start, end and label. Per label and micro (every span counts once);
    macro over the labels that occur in `gold`."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold rows but {len(predicted)} predicted rows")
    index = {name: i for i, name in enumerate(names)}
    tp, fp, fn = (torch.zeros(len(names), dtype=torch.float64) for _ in range(3))
    for truth, guess in zip(gold, predicted):
        truth_set, guess_set = set(truth), set(guess)
        for span in guess_set:
            (tp if span in truth_set else fp)[index[span.label]] += 1
        for span in truth_set - guess_set:
            fn[index[span.label]] += 1
    precision, recall, micro = _prf(tp.sum(), fp.sum(), fn.sum())
    _, _, f1 = _prf(tp, fp, fn)
    present = (tp + fn) > 0
    return {
        "precision": round(precision.item(), 4), "recall": round(recall.item(), 4),
        "micro_f1": round(micro.item(), 4),
        "macro_f1": round(f1[present].mean().item() if present.any() else 0.0, 4),
        "per_label": _per_label(list(names), tp, fp, fn),
        "n_gold": int((tp + fn).sum().item()), "n_predicted": int((tp + fp).sum().item()),
    }


def main_score(metrics: dict[str, Any], multi_label: bool) -> float:
    """The one number adapters are compared by (`config.main_metric`)."""
    return float(metrics[main_metric(multi_label)])


def tune_thresholds(probs: torch.Tensor, truth: torch.Tensor) -> list[float]:
    """Per label, the threshold in 0.05…0.95 that maximises F1 on held-out data, for the labels
    seen there often enough (`calibration.own_threshold`); the others share the one that maximises
    their pooled (micro) F1. A label that never occurs there gets 0.5, so that it is not always
    predicted on no evidence."""
    grid = torch.linspace(0.05, 0.95, 19, dtype=probs.dtype)
    gold = truth.bool()
    pred = probs.unsqueeze(0) >= grid.view(-1, 1, 1)  # (G, N, C)
    tp = (pred & gold).sum(1).double()
    fp = (pred & ~gold).sum(1).double()
    fn = (~pred & gold).sum(1).double()
    _, _, f1 = _prf(tp, fp, fn)  # (G, C)
    best = grid[f1.argmax(0)]
    few = ~own_threshold(truth)
    if few.any():
        _, _, pooled = _prf(tp[:, few].sum(1), fp[:, few].sum(1), fn[:, few].sum(1))  # (G,)
        best[few] = grid[pooled.argmax()]
    best[gold.sum(0) == 0] = 0.5
    return [round(t, 4) for t in best.tolist()]
