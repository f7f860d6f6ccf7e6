"""Reading a label score vector off the edited representation."""
from __future__ import annotations

import torch
import torch.nn.functional as F

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


def fit_linear_head(x: torch.Tensor, y: torch.Tensor, n_labels: int, multi_label: bool, l2: float,
                    max_iter: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Logistic regression (softmax, or a sigmoid per label) on fixed features by full-batch
    L-BFGS: x (N, d), y (N,) indices or (N, C) in {0, 1}. Fitted on standardised features and
    folded back, so the returned (weight (C, d), bias (C,)) apply to x as it is."""
    x = x.float()
    mu, sigma = x.mean(0), x.std(0).clamp(min=1e-6)
    z = (x - mu) / sigma
    w = torch.zeros(n_labels, x.shape[1], requires_grad=True)
    b = torch.zeros(n_labels, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = z @ w.T + b
        loss = (F.binary_cross_entropy_with_logits(logits, y.float()) if multi_label
                else F.cross_entropy(logits, y)) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    weight = (w / sigma).detach()
    return weight, (b - weight @ mu).detach()
