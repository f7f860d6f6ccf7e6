"""Running the frozen model with interventions attached to its blocks.

Interventions edit the *output* of a block. Two entry points share one mechanism:

- `encode_prefix` runs the model up to and including block `upto` and returns that block's
  output: the frozen part, computed once (cached for training, shared between adapters).
- `run_from` continues from such a hidden state: blocks ≤ `start` are swapped for modules that
  hand the given state on, the rest run as usual with forward hooks applying the edits.

Only our own hooks are added and removed; hooks others put on the model are left alone.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .base import Base
from .positions import edited_cells

if TYPE_CHECKING:
    from .adapter import Adapter


class Edits:
    """Which intervention edits which (row, position) cells of one batch, per layer.

    `groups` pairs an adapter with the batch rows it owns, so one forward pass can serve rows
    of different adapters: at each layer every group's cells are gathered, edited by that
    group's intervention and written back with a single index_put.
    """

    def __init__(self, groups: Sequence[tuple[Adapter, torch.Tensor | None]], mask: torch.Tensor):
        self.by_layer: dict[int, list[tuple[nn.Module, torch.Tensor, torch.Tensor]]] = {}
        for adapter, rows in groups:
            sub_mask = mask if rows is None else mask[rows]
            sel_rows, sel_cols = edited_cells(sub_mask, adapter.positions)
            if rows is not None:
                sel_rows = rows[sel_rows]
            for layer in adapter.layers:
                module = adapter.interventions[str(layer)]
                self.by_layer.setdefault(layer, []).append((module, sel_rows, sel_cols))

    @property
    def layers(self) -> list[int]:
        return sorted(self.by_layer)

    def apply(self, layer: int, h: torch.Tensor) -> torch.Tensor:
        parts = self.by_layer.get(layer)
        if not parts:
            return h
        rows = torch.cat([p[1] for p in parts])
        cols = torch.cat([p[2] for p in parts])
        values = torch.cat([module(h[r, c]) for module, r, c in parts]).to(h.dtype)
        # Out of place: cells outside (rows, cols) stay bit-identical, autograd stays intact.
        return h.index_put((rows, cols), values)


class _StopForward(Exception):
    pass


class _HandOn(nn.Module):
    """Stands in for a frozen block: returns `state` (or its input) without computing."""

    def __init__(self, state: torch.Tensor | None, as_tuple: bool):
        super().__init__()
        self.state, self.as_tuple = state, as_tuple

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        out = hidden_states if self.state is None else self.state
        return (out,) if self.as_tuple else out


def _model_inputs(base: Base, input_ids: torch.Tensor, mask: torch.Tensor) -> dict[str, Any]:
    inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask}
    if base.family == "decoder":
        # Positions count real tokens only, so left padding gives the same states as none.
        inputs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
        inputs["use_cache"] = False
    return inputs


Hook = Callable[[nn.Module, Any, Any], Any]


def _edit_hook(edits: Edits, layer: int) -> Hook:
    def hook(_module: nn.Module, _args: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (edits.apply(layer, output[0]),) + output[1:]
        return edits.apply(layer, output)

    return hook


@contextmanager
def _swapped_blocks(base: Base, start: int, state: torch.Tensor, as_tuple: bool) -> Iterator[None]:
    originals = [base.blocks[i] for i in range(start + 1)]
    try:
        for i in range(start):
            base.blocks[i] = _HandOn(None, as_tuple)
        base.blocks[start] = _HandOn(state, as_tuple)
        yield
    finally:
        for i, block in enumerate(originals):
            base.blocks[i] = block


def encode_prefix(base: Base, input_ids: torch.Tensor, mask: torch.Tensor, upto: int) -> torch.Tensor:
    """Output of block `upto` (no edits): everything below the lowest intervened layer."""
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _args: Any, output: Any) -> Any:
        base.block_returns_tuple = isinstance(output, tuple)
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise _StopForward  # the blocks above are not needed

    with base.lock:
        handle = base.blocks[upto].register_forward_hook(hook)
        try:
            with base.autocast:
                base.model(**_model_inputs(base, input_ids, mask))
        except _StopForward:
            pass
        finally:
            handle.remove()
    return captured[0]


def run_from(base: Base, hidden: torch.Tensor, start: int, input_ids: torch.Tensor, mask: torch.Tensor,
             edits: Edits) -> torch.Tensor:
    """Last hidden state, continuing from `hidden` = output of block `start` (unedited)."""
    with base.lock, ExitStack() as stack:
        stack.enter_context(_swapped_blocks(base, start, edits.apply(start, hidden), base.block_returns_tuple))
        for layer in edits.layers:
            if layer > start:
                stack.enter_context(base.blocks[layer].register_forward_hook(_edit_hook(edits, layer)))
        with base.autocast:
            return base.model(**_model_inputs(base, input_ids, mask)).last_hidden_state


def run_full(base: Base, input_ids: torch.Tensor, mask: torch.Tensor, edits: Edits | None = None) -> torch.Tensor:
    """Last hidden state of a plain forward pass with `edits` hooked onto their blocks."""
    edits = edits if edits is not None else Edits([], mask)
    with base.lock, ExitStack() as stack:
        for layer in edits.layers:
            stack.enter_context(base.blocks[layer].register_forward_hook(_edit_hook(edits, layer)))
        with base.autocast:
            return base.model(**_model_inputs(base, input_ids, mask)).last_hidden_state
