"""Reading scores off the edited representation: pool the last hidden state, then one linear
map to a logit per label (`Head`); or, for spans, one linear map at every token to a logit per
BIO tag (`TokenHead`)."""
from __future__ import annotations

import torch
from torch import nn

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


class Head(nn.Linear):
    """(B, T, d) last hidden state + mask → (B, labels) logits: `pooling`, then W·pooled + b.
    A Linear itself, so its weights save as `head.weight` / `head.bias`."""

    def __init__(self, dim: int, n_labels: int, pooling: str):
        super().__init__(dim, n_labels)
        self.pooling = pooling

    def forward(self, last: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(pool(last, mask, self.pooling).float())


class TokenHead(nn.Linear):
    """(B, T, d) last hidden state → (B, T, tags) logits: W·h + b at every token (span labeling).
    Saved as `head.weight` / `head.bias`, like `Head`."""

    def forward(self, last: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(last.float())


def scores_from_logits(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Softmax over labels for single-label sets, an independent sigmoid per label otherwise."""
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)
