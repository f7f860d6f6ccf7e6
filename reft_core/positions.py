"""Which (row, column) cells of a padded batch an intervention edits."""
from __future__ import annotations

import torch


def real_token_columns(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) → (B, T): the columns of each row's real tokens first, in order, then its pads.
    Works whatever the padding side."""
    return torch.argsort((~mask.bool()).to(torch.int8), dim=1, stable=True)


def select_positions(mask: torch.Tensor, first: int, last: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `first` and last `last` real tokens of every row, as flat (rows, cols).

    A row shorter than first + last yields each of its tokens once, never twice, so an
    intervention never edits the same cell two times.
    """
    mask = mask.bool()
    batch, width = mask.shape
    lengths = mask.sum(1, keepdim=True)  # (B, 1)
    slot = torch.arange(first + last, device=mask.device).expand(batch, -1)  # (B, P)
    # Rank among the row's real tokens: slot j < first is the j-th; slot first+i is len−last+i.
    rank = torch.where(slot < first, slot, lengths - last + (slot - first))
    valid = torch.where(slot < first, slot < lengths, rank >= first)
    cols = real_token_columns(mask).gather(1, rank.clamp(0, width - 1))
    rows = torch.arange(batch, device=mask.device).unsqueeze(1).expand_as(cols)
    return rows[valid], cols[valid]


def edited_cells(mask: torch.Tensor, positions: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The cells an adapter with `positions` (see `config.parse_positions`) edits: every real
    token when None, else the first and last ones."""
    if positions is None:
        rows, cols = mask.bool().nonzero(as_tuple=True)
        return rows, cols
    return select_positions(mask, *positions)
