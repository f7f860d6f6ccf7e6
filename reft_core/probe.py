"""A logistic-regression head on pooled representations, fitted in closed form by scikit-learn
rather than by gradient steps: the head of the pairs objective (`TrainConfig.objective`, whose
steps shape the representation and leave the head alone) and the benchmarks' probe contender.

`logistic_probe` fits it (standardised features, C chosen by stratified k-fold on the rows
themselves); `fold_into` writes it into an adapter's linear head, so that the adapter scores
texts exactly as the fitted classifier does and saves, loads and tags like any other."""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

PROBE_C = (0.01, 0.1, 1.0, 10.0)
# The logit of a label no training row carried (a fold may hold out a label's only example):
# far below any fitted logit, so the label is never chosen, yet finite for the calibration.
ABSENT_LOGIT = -50.0


def logistic_probe(x: np.ndarray[Any, Any], targets: np.ndarray[Any, Any], multi_label: bool,
                   seed: int) -> tuple[Any, float]:
    """A standardised logistic regression (one-vs-rest for multi-label targets) on features `x`,
    C from `PROBE_C` by stratified k-fold on the rows themselves where every label has two rows
    (else 1). Returns (fitted scikit-learn pipeline, C)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def classifier(c: float) -> Any:
        lr = LogisticRegression(C=c, max_iter=2000)
        return make_pipeline(StandardScaler(), OneVsRestClassifier(lr) if multi_label else lr)

    c = 1.0
    smallest = min(np.bincount(targets)[np.unique(targets)]) if not multi_label else 0
    if smallest >= 2 and len(np.unique(targets)) >= 2:
        folds = StratifiedKFold(n_splits=min(5, smallest), shuffle=True, random_state=seed)
        c = max(PROBE_C, key=lambda value: cross_val_score(classifier(value), x, targets, cv=folds).mean())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Label not .* is present in all training examples")
        return classifier(c).fit(x, targets), c


def fold_into(head: torch.nn.Linear, x: np.ndarray[Any, Any], targets: np.ndarray[Any, Any], seed: int) -> float:
    """Fit `logistic_probe` (single-label) on pooled features `x` and write it into `head`:
    W·((x − μ)/σ) + b is (W/σ)·x + (b − W·μ/σ). A binary regression's one logit becomes the
    second label's, the first's being 0 (the same softmax); labels absent from `targets` get
    `ABSENT_LOGIT`. Returns the C chosen."""
    n_labels, dim = head.weight.shape
    weight, bias = np.zeros((n_labels, dim)), np.full(n_labels, ABSENT_LOGIT)
    present = np.unique(targets)
    if len(present) == 1:  # nothing to tell apart: that label, always
        bias[present[0]] = 0.0
        c = 0.0
    else:
        pipeline, c = logistic_probe(x, targets, False, seed)
        scaler, lr = pipeline[0], pipeline[-1]
        coef = lr.coef_ / scaler.scale_
        intercept = lr.intercept_ - coef @ scaler.mean_
        if len(lr.classes_) == 2:
            coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
        weight[lr.classes_], bias[lr.classes_] = coef, intercept
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight, dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
    return c
