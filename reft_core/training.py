"""Training one adapter for one label set.

The blocks up to the lowest intervened layer are frozen and see the same texts every epoch,
so their output is computed once (`HiddenCache`) and every step starts from it. Batches are
length-bucketed (sorted by length, then shuffled as whole batches) so they carry few pads.
"""
from __future__ import annotations

import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .adapter import Adapter
from .attach import Edits, encode_prefix, run_from, run_full
from .base import Base
from .config import ReftConfigError, TrainConfig
from .heads import default_pooling, scores_from_logits
from .metrics import main_score, multi_label_metrics, single_label_metrics, tune_thresholds

Progress = Callable[[dict[str, Any]], None]
CACHE_BUDGET_BYTES = int(os.environ.get("REFT_CACHE_BUDGET_BYTES", 2 * 1024**3))


class HiddenCache:
    """Output of block `upto` for every text, stored once as one (tokens, d) array.

    Past `budget_bytes` the array lives in a memory-mapped temporary file instead of RAM.
    """

    def __init__(self, base: Base, ids: list[list[int]], upto: int, batch_size: int = 64,
                 budget_bytes: int = CACHE_BUDGET_BYTES):
        self.base, self.ids = base, ids
        lengths = np.array([len(row) for row in ids])
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        shape = (int(self.offsets[-1]), base.hidden_size)
        nbytes = shape[0] * shape[1] * 4
        self._file = None
        self.store: np.ndarray[Any, np.dtype[np.float32]]
        if nbytes > budget_bytes:
            self._file = tempfile.NamedTemporaryFile(prefix="reft-cache-", suffix=".f32")
            self.store = np.memmap(self._file.name, dtype=np.float32, mode="w+", shape=shape)
        else:
            self.store = np.empty(shape, dtype=np.float32)
        order = np.argsort(lengths, kind="stable")
        with torch.inference_mode():
            for lo in range(0, len(ids), batch_size):
                rows = order[lo:lo + batch_size]
                input_ids, mask = base.pad([ids[i] for i in rows])
                hidden = encode_prefix(base, input_ids, mask, upto).float().cpu().numpy()
                for j, i in enumerate(rows):
                    self.store[self.offsets[i]:self.offsets[i + 1]] = hidden[j, : lengths[i]]

    def batch(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Right-padded (input_ids, mask, hidden) for these examples."""
        input_ids, mask = self.base.pad([self.ids[i] for i in rows])
        hidden = torch.zeros(len(rows), input_ids.shape[1], self.base.hidden_size)
        for j, i in enumerate(rows):
            a, b = self.offsets[i], self.offsets[i + 1]
            hidden[j, : b - a] = torch.from_numpy(np.asarray(self.store[a:b]))
        return input_ids, mask, hidden.to(self.base.device)


def _encode_labels(labels: Sequence[Any], label_names: list[str], multi_label: bool) -> torch.Tensor:
    index = {name: i for i, name in enumerate(label_names)}
    rows = [[row] if isinstance(row, str) else list(row) for row in labels]
    unknown = sorted({name for row in rows for name in row if name not in index})
    if unknown:
        raise ValueError(f"unknown labels {unknown}; the label set has {label_names}")
    if not multi_label:
        if any(len(row) != 1 for row in rows):
            raise ValueError("single-label training needs exactly one label per example")
        return torch.tensor([index[row[0]] for row in rows])
    target = torch.zeros(len(rows), len(label_names))
    for r, row in enumerate(rows):
        target[r, [index[n] for n in row]] = 1.0
    return target


def split_held_out(targets: torch.Tensor, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified by label for single-label sets (every label with ≥ 2 examples appears on
    both sides); a plain shuffle for multi-label ones."""
    rng = random.Random(seed)
    if targets.dim() == 2:
        order = list(range(len(targets)))
        rng.shuffle(order)
        n_eval = max(1, round(fraction * len(order)))
        return sorted(order[n_eval:]), sorted(order[:n_eval])
    train, held = [], []
    for label in sorted(set(targets.tolist())):
        members = [i for i, t in enumerate(targets.tolist()) if t == label]
        rng.shuffle(members)
        n_eval = min(len(members) - 1, max(1, round(fraction * len(members)))) if len(members) > 1 else 0
        held += members[:n_eval]
        train += members[n_eval:]
    return sorted(train), sorted(held)


def length_batches(lengths: Sequence[int], rows: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    ordered = sorted(rows, key=lambda i: (lengths[i], rng.random()))
    batches = [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]
    rng.shuffle(batches)
    return batches


def shuffled_batches(rows: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    order = list(rows)
    rng.shuffle(order)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


class NoCache:
    """The uncached way (pyreft's): every step runs the whole model. For benchmarks."""

    def __init__(self, base: Base, ids: list[list[int]]):
        self.base, self.ids = base, ids

    def batch(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, None]:
        return (*self.base.pad([self.ids[i] for i in rows]), None)


def _forward(adapter: Adapter, cache: HiddenCache | NoCache, start: int, rows: Sequence[int]) -> torch.Tensor:
    input_ids, mask, hidden = cache.batch(rows)
    edits = Edits([(adapter, None)], mask)
    if hidden is None:
        last = run_full(cache.base, input_ids, mask, edits)
    else:
        last = run_from(cache.base, hidden, start, input_ids, mask, edits)
    return adapter.head(last, mask)


def _evaluate(adapter: Adapter, cache: HiddenCache | NoCache, start: int, rows: list[int],
              batch_size: int) -> torch.Tensor:
    adapter.eval()
    with torch.no_grad(), torch.nn.utils.parametrize.cached():
        logits = [_forward(adapter, cache, start, rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)]
    adapter.train()
    return scores_from_logits(torch.cat(logits).cpu(), adapter.multi_label)


def _metrics(adapter: Adapter, probs: torch.Tensor, truth: torch.Tensor) -> dict[str, Any]:
    if adapter.multi_label:
        return multi_label_metrics(probs, truth, adapter.label_names, adapter.thresholds)
    return single_label_metrics(probs, truth, adapter.label_names)


def train(base: Base, texts: Sequence[str], labels: Sequence[Any], label_names: list[str], multi_label: bool = False,
          config: dict[str, Any] | TrainConfig | None = None, progress: Progress | None = None,
          cache_prefix: bool = True, length_buckets: bool = True) -> Adapter:
    """Train an adapter; its `metrics` are measured on a held-out split of the examples.

    `cache_prefix=False` recomputes the frozen lower layers every step, `length_buckets=False`
    pads shuffled batches to their longest text instead (both for comparison only: together they
    are the way pyreft trains).
    """
    t0 = time.perf_counter()
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    cfg.validate()
    if len(label_names) < 2 or len(set(label_names)) != len(label_names):
        raise ReftConfigError("label_names", "need at least two distinct labels")
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    layers = cfg.resolve_layers(base.num_layers)
    targets = _encode_labels(labels, label_names, multi_label)

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    pooling = default_pooling(base.family) if cfg.pooling == "auto" else cfg.pooling
    adapter = Adapter.new(base, intervention=cfg.intervention, layers=layers, positions=cfg.positions,
                          rank=cfg.rank, dropout=cfg.dropout, label_names=list(label_names),
                          multi_label=multi_label, pooling=pooling, train_config=cfg)
    train_rows, eval_rows = split_held_out(targets, cfg.eval_fraction, cfg.seed)

    ids = base.tokenize(texts, cfg.max_length)
    lengths = [len(row) for row in ids]
    start = layers[0]
    cache = HiddenCache(base, ids, upto=start) if cache_prefix else NoCache(base, ids)

    optimizer = torch.optim.AdamW(adapter.parameters(), lr=cfg.lr, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(train_rows) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = max(1, total_steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup))))

    # -inf: the first epoch is always the best so far, whatever its score (with no held-out
    # rows the score is minus the training loss, which may stay below -1 for a long time).
    best_score, stale, step = -math.inf, 0, 0
    best_state = {k: v.detach().clone() for k, v in adapter.state_dict().items()}
    loss_curve: list[float] = []
    adapter.train()
    for epoch in range(cfg.epochs):
        epoch_loss = 0.0
        for rows in (length_batches(lengths, train_rows, cfg.batch_size, rng) if length_buckets
                     else shuffled_batches(train_rows, cfg.batch_size, rng)):
            logits = _forward(adapter, cache, start, rows)
            y = targets[rows].to(base.device)
            loss = (F.binary_cross_entropy_with_logits(logits, y) if multi_label else F.cross_entropy(logits, y))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            epoch_loss += loss.item() * len(rows)
            if progress:
                elapsed = time.perf_counter() - t0
                progress({"step": step, "total_steps": total_steps, "epoch": epoch + 1, "epochs": cfg.epochs,
                          "loss": round(loss.item(), 5),
                          "eta_seconds": round(elapsed / step * (total_steps - step), 1)})
        loss_curve.append(round(epoch_loss / max(1, len(train_rows)), 5))
        score = main_score(_metrics(adapter, _evaluate(adapter, cache, start, eval_rows, 128), targets[eval_rows]),
                           multi_label) if eval_rows else -loss_curve[-1]
        if score > best_score:
            best_score, stale = score, 0
            best_state = {k: v.detach().clone() for k, v in adapter.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                break

    adapter.load_state_dict(best_state)
    adapter.eval()
    metrics: dict[str, Any] = {}
    if eval_rows:
        probs = _evaluate(adapter, cache, start, eval_rows, 128)
        truth = targets[eval_rows]
        if multi_label:
            adapter.with_config(thresholds=tuple(tune_thresholds(probs, truth)))
        metrics = _metrics(adapter, probs, truth)
    metrics.update({"n_train": len(train_rows), "n_eval": len(eval_rows), "epochs_run": len(loss_curve),
                    "loss_curve": loss_curve, "train_seconds": round(time.perf_counter() - t0, 2),
                    "params": adapter.param_count})
    return adapter.with_config(metrics=metrics)
