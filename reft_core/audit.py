"""Which of a label set's examples look mislabelled.

The recipe is trained once per fold (`training.recipe_cross_validation`: every fold from the
same cached prefix, the step count chosen on the out-of-fold score), so every example is scored
by an adapter that never saw it. cleanlab's confident learning (`find_label_issues`) then picks
the examples whose given label the out-of-fold probabilities contradict — per-label confidence
thresholds, not one global cut, so a label the model is shy of is not flagged wholesale. We do
not reimplement confident learning; this module turns its answer into findings: the suggested
label and how sure the out-of-fold model is of it, most suspicious first (cleanlab's
self-confidence ranking).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from .base import Base
from .config import AUDIT_FOLDS, ReftConfigError, TrainConfig
from .config import AUDIT_MIN_EXAMPLES as MIN_EXAMPLES
from .config import AUDIT_MIN_PER_LABEL as MIN_PER_LABEL
from .training import CrossValidation, Progress, recipe_cross_validation

# Epochs of each fold's fit (the step floor `min_steps` still applies to small sets). Fewer than
# training's default: a model trained long enough memorises the wrong labels it is meant to
# contradict (they are then "confidently" right out of fold too), and five fits of a large set
# cost five trainings. Measured against the set's own epochs in bench/loop.py (scenario audit).
AUDIT_EPOCHS = 3


@dataclass(frozen=True)
class Finding:
    """Example `index` (in the order given): its given label(s), the label(s) the out-of-fold
    adapter suggests, that adapter's probability for the suggestion, and its probability for the
    given label(s) (`given_score`: low is suspicious)."""

    index: int
    given: Any
    suggested: Any
    confidence: float
    given_score: float


@dataclass(frozen=True)
class Audit:
    findings: list[Finding]
    cross_validation: CrossValidation
    probs: torch.Tensor  # out-of-fold probabilities, (examples, labels)


def too_few(labels: Sequence[Any], label_names: Sequence[str], multi_label: bool) -> dict[str, int]:
    """The labels with fewer than MIN_PER_LABEL examples (name → count); empty when auditable."""
    counts = dict.fromkeys(label_names, 0)
    for given in labels:
        for name in (given if multi_label else [given]):
            if name in counts:
                counts[name] += 1
    return {name: n for name, n in counts.items() if n < MIN_PER_LABEL}


def audit(base: Base, texts: Sequence[str], labels: Sequence[Any], label_names: list[str], multi_label: bool = False,
          config: dict[str, Any] | TrainConfig | None = None, folds: int = AUDIT_FOLDS,
          filter_by: str = "prune_by_noise_rate", epochs: int | None = AUDIT_EPOCHS,
          progress: Progress | None = None) -> Audit:
    """Out-of-fold probabilities for every example, then cleanlab's label issues, ranked.
    `config` is the set's training recipe; `epochs` (None: the recipe's) caps each fold's fit."""
    from cleanlab.filter import find_label_issues
    from cleanlab.multilabel_classification.filter import find_label_issues as find_multilabel_issues

    if len(texts) < MIN_EXAMPLES:
        raise ReftConfigError("examples", f"an audit needs at least {MIN_EXAMPLES} examples; there are {len(texts)}")
    short = too_few(labels, label_names, multi_label)
    if short:
        raise ReftConfigError("examples", f"an audit needs at least {MIN_PER_LABEL} examples of every label: "
                              + ", ".join(f"{name!r} has {n}" for name, n in short.items()))
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    if epochs is not None:
        cfg = replace(cfg, epochs=min(cfg.epochs, epochs))
    cv = recipe_cross_validation(base, texts, labels, label_names, multi_label, cfg, folds=folds, progress=progress)
    probs = cv.probs.double()
    index = {name: i for i, name in enumerate(label_names)}
    pred_probs = probs.numpy()
    if multi_label:
        given_ids: Any = [[index[n] for n in row] for row in labels]
        pred_probs = np.clip(pred_probs, 1e-6, 1 - 1e-6)
    else:
        given_ids = np.array([index[n] for n in labels])
        pred_probs = pred_probs / pred_probs.sum(1, keepdims=True)
    # n_jobs=1: by default cleanlab forks a multiprocessing.Pool (one process a core) here, inside a
    # worker whose other threads (torch's, the lease heartbeat) may hold locks at the fork; in CI the
    # pool then hung for good and the audit job with it. A few thousand rows need no pool.
    if multi_label:
        ranked = find_multilabel_issues(given_ids, pred_probs, filter_by=filter_by,
                                        return_indices_ranked_by="self_confidence", n_jobs=1)
    else:
        ranked = find_label_issues(given_ids, pred_probs, filter_by=filter_by,
                                   return_indices_ranked_by="self_confidence", n_jobs=1)
    findings = []
    for i in (int(r) for r in ranked):
        row = probs[i]
        if multi_label:
            suggested: Any = [name for name, p in zip(label_names, row.tolist()) if p >= 0.5]
            given_row = set(labels[i])
            agree = [float(p if name in given_row else 1 - p) for name, p in zip(label_names, row.tolist())]
            sure = [float(p if p >= 0.5 else 1 - p) for p in row.tolist()]
            given_score, confidence = float(np.prod(agree)), float(np.prod(sure))
            if set(suggested) == given_row:
                continue
        else:
            suggested = label_names[int(row.argmax())]
            confidence, given_score = float(row.max()), float(row[index[labels[i]]])
            if suggested == labels[i]:
                continue  # flagged on the noise rates, but its own out-of-fold answer agrees
        findings.append(Finding(i, labels[i], suggested, round(confidence, 6), round(given_score, 6)))
    return Audit(findings, cv, cv.probs)
