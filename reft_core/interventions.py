"""Interventions: edits of hidden states at chosen positions, the base model unchanged.

Each maps gathered hidden states h of shape (K, d) to Φ(h) of the same shape and is the
identity when new, so attaching a fresh adapter leaves the model's output exactly as it was.
Dropout only ever touches the edit, never the base stream h. A new method is one class here
with `@register`; adapters save its name and arguments and rebuild it from them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

REGISTRY: dict[str, type[Intervention]] = {}


def register(cls: type[Intervention]) -> type[Intervention]:
    REGISTRY[cls.kind] = cls
    return cls


def make_intervention(kind: str, dim: int, rank: int, dropout: float = 0.0) -> Intervention:
    return REGISTRY[kind](dim, rank, dropout)


class Intervention(nn.Module):
    kind = ""

    def __init__(self, dim: int, rank: int, dropout: float):
        super().__init__()
        self.dim, self.rank = dim, rank
        self.dropout = nn.Dropout(dropout)


class OrthonormalRows(nn.Module):
    """Maps a free r×d matrix A to the R with orthonormal rows spanning the same space
    (thin QR of Aᵀ). O(d·r²) per call and only A is stored; torch's `orthogonal` costs a d×d
    solve per call (Cayley, 20% of a training step here) or stores a d×d base (trivialization)."""

    def forward(self, A: torch.Tensor) -> torch.Tensor:
        Q, _ = torch.linalg.qr(A.T)
        return Q.T

    def right_inverse(self, R: torch.Tensor) -> torch.Tensor:
        return R


@register
class LoReFT(Intervention):
    """LoReFT (Wu et al. 2024): Φ(h) = h + Rᵀ(Wh + b − Rh).

    R (r×d) has orthonormal rows, kept so through training by a QR parametrization; W (r×d) and b (r) are learned.
    Starts at W = R, b = 0, i.e. Φ(h) = h.
    """

    kind = "loreft"

    def __init__(self, dim: int, rank: int, dropout: float = 0.0):
        super().__init__(dim, rank, dropout)
        rotation = nn.Linear(dim, rank, bias=False)
        nn.init.orthogonal_(rotation.weight)
        parametrize.register_parametrization(rotation, "weight", OrthonormalRows())
        self.rotation = rotation
        self.source = nn.Linear(dim, rank)
        with torch.no_grad():
            self.source.weight.copy_(self.rotation.weight)
            self.source.bias.zero_()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        R = self.rotation.weight  # computed once per call: the parametrization is not free
        # Wh + b − Rh = (W − R)h + b, one matmul of h; exactly 0 at the identity start.
        return h + self.dropout(F.linear(h, self.source.weight - R, self.source.bias) @ R)


@register
class DiReFT(Intervention):
    """DiReFT: Φ(h) = h + W₂ᵀ(W₁h + b). No orthogonality; W₂ starts at 0, so Φ(h) = h."""

    kind = "direft"

    def __init__(self, dim: int, rank: int, dropout: float = 0.0):
        super().__init__(dim, rank, dropout)
        self.down = nn.Linear(dim, rank)  # W₁, b
        self.up = nn.Parameter(torch.zeros(rank, dim))  # W₂

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.dropout(self.down(h) @ self.up)


@register
class RED(Intervention):
    """RED (Wu et al. 2024, "Advancing parameter efficiency"): Φ(h) = s ⊙ h + b; s = 1, b = 0 at start."""

    kind = "red"

    def __init__(self, dim: int, rank: int = 0, dropout: float = 0.0):
        super().__init__(dim, rank, dropout)
        self.scale = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # s ⊙ h + b written as h + ((s − 1) ⊙ h + b) so dropout touches only the edit.
        return h + self.dropout((self.scale - 1) * h + self.bias)
