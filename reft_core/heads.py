"""Reading a label score vector off the edited representation."""
from __future__ import annotations

import torch

from .positions import select_positions


def default_pooling(family: str) -> str:
    """Mean for bidirectional encoders (what sentence encoders are trained for); the last
    real token for causal decoders, the only one that has seen the whole text."""
    return "mean" if family == "encoder" else "last"


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """(B, T, d) → (B, d)."""
    if how == "mean":
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
    first, last = (1, 0) if how == "cls" else (0, 1)
    rows, cols = select_positions(mask, first, last)
    return hidden[rows, cols]


def scores_from_logits(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Softmax over labels for single-label sets, an independent sigmoid per label otherwise."""
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)
