"""Training one adapter for one label set.

The blocks up to the lowest intervened layer are frozen and see the same texts every epoch,
so their output is computed once (`HiddenCache`) and every step starts from it. Batches are
length-bucketed (sorted by length, then shuffled as whole batches) so they carry few pads.

How an adapter is evaluated depends on how many examples there are (`TrainConfig.evaluation`,
"auto" by default):

- held_out (at least `kfold_below` examples, 200; a multi-label set at least
  `kfold_below_multi_label`, 1,000): evaluation rows — the caller's (`eval_mask`:
  the service assigns each example once) or a stratified share (`eval_fraction`) — are never
  trained on; they choose the epoch (early stopping), fit the calibration (then the multi-label
  thresholds, on calibrated scores), and give the metrics. Early stopping needs `early_stop_min_eval`
  evaluation rows (100): on fewer, one check's score differs from the next by chance, and the
  best check is a snapshot of a run still at a high learning rate (AG News, 64 a label: 40 rows
  stopped runs at step 21–28 of 100, 0.848 on the test rows; the whole schedule, decayed to zero,
  0.864). With 150 rows (TNEWS, 64 a label) early stopping was still the better of the two
  (bench/RESULTS.md, "early stopping on a few rows"). Runs with fewer train every step of their
  budget and keep the last weights; the evaluation rows still fit the calibration and give the
  metrics.
- k-fold (fewer): a single held-out split of a few rows would decide too much by chance. A
  multi-label set needs more rows than that before a held-out share will do: each label's
  calibration and threshold is fitted on the evaluated rows, and 15 % of a few hundred examples
  holds one to five positives of each label (GoEmotions, 28 labels, 204, 406 and 800 examples:
  k-fold +7.1, +9.4 and +2.1 points micro-F1 against held-out, at 1,600 worse; single-label TNEWS,
  240 and 480 examples: −1.8 and −1.9; bench/RESULTS.md, "k-fold for multi-label sets").
  The recipe is trained once per fold (every fold from the same cached prefix); the step count
  whose out-of-fold score is best is chosen, and the adapter is refit on every example for that
  many steps, on a schedule that ends there (warm-up, then the learning rate decays to zero at
  the chosen step). Stopping the full schedule at that step instead keeps a snapshot taken at
  near-peak learning rate, whose score swings by tens of points from one check to the next at
  these sizes (bench/RESULTS.md, "the refit"). Metrics are the out-of-fold predictions' (every
  example scored once, by a model that did not see it), and the calibration is fitted on them.
  With `soup="folds"` the adapter is the average of the refit's and the fold models' weights; the
  default ("auto") does so for a multi-label set (GoEmotions, 200–800 examples: +2.0 points
  micro-F1 on the mean of nine seeds, two of them down by 0.7 and 0.02) and keeps the refit of a
  single-label one (SST-2, AG News, TNEWS: +0.4 on the mean of 29 pairs, ±8 on single cells;
  bench/RESULTS.md, "the soup"). The metrics stay the folds'.

What the steps train (`TrainConfig.objective`): the head's loss on the labels ("labels"), or
SetFit's pairs ("pairs", single-label sets): pairs of examples, a cosine-similarity loss on their
pooled edited representations (`setfit_pairs`, `pairs_loss`) at `pairs_rank` and `pairs_lr` on
every block, then a logistic regression fitted on the trained representation becomes the head
(`probe.fold_into`); it goes through the same k-fold and refit (one check a fit, at the end).
"auto" trains pairs in k-fold evaluation of a single-label set and labels everywhere else
(bench/RESULTS.md, "the pairs objective, built").

Calibration (`calibration`): a temperature (single-label) or Platt scaling per label (multi-label),
stored with the adapter so every score it gives is calibrated; the metrics carry its ECE before
and after, and the review table (the confidence threshold for each target precision).
"""
from __future__ import annotations

import contextlib
import itertools
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import calibration, probe
from .adapter import Adapter
from .attach import Edits, encode_prefix, run_from, run_full
from .base import Base
from .config import ReftConfigError, TrainConfig
from .heads import default_pooling, pool
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


def _last_hidden(adapter: Adapter, cache: HiddenCache | NoCache, start: int,
                 rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The edited last hidden state of these examples, and their mask."""
    input_ids, mask, hidden = cache.batch(rows)
    edits = Edits([(adapter, None)], mask)
    if hidden is None:
        return run_full(cache.base, input_ids, mask, edits), mask
    return run_from(cache.base, hidden, start, input_ids, mask, edits), mask


def _in_eval_batches(adapter: Adapter, cache: HiddenCache | NoCache, start: int, rows: list[int], batch_size: int,
                     read: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """`read(last hidden state, mask)` of these examples, in batches, in eval mode without
    gradients; the adapter's mode is set back after."""
    was_training = adapter.training
    adapter.eval()
    with torch.no_grad(), torch.nn.utils.parametrize.cached():
        out = [read(*_last_hidden(adapter, cache, start, rows[i:i + batch_size]))
               for i in range(0, len(rows), batch_size)]
    adapter.train(was_training)  # (it set train mode back always: `train` handed back an adapter with dropout on)
    return torch.cat(out).cpu()


def _evaluate(adapter: Adapter, cache: HiddenCache | NoCache, start: int, rows: list[int],
              batch_size: int) -> torch.Tensor:
    return adapter.scores(_in_eval_batches(adapter, cache, start, rows, batch_size, adapter.head))


def pooled(adapter: Adapter, cache: HiddenCache | NoCache, start: int, rows: list[int], how: str,
           batch_size: int = 128) -> torch.Tensor:
    """The pooled edited representation of these examples (what the head reads)."""
    return _in_eval_batches(adapter, cache, start, rows, batch_size,
                            lambda last, mask: pool(last, mask, how).float())


def _metrics(adapter: Adapter, probs: torch.Tensor, truth: torch.Tensor) -> dict[str, Any]:
    if adapter.multi_label:
        return multi_label_metrics(probs, truth, adapter.label_names, adapter.thresholds, adapter.min_labels)
    return single_label_metrics(probs, truth, adapter.label_names)


def supervised_contrastive(pooled: torch.Tensor, targets: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Khosla et al.'s supervised contrastive loss on the batch's pooled representations: each
    example is pulled toward the others that share a label (multi-label: any label) and pushed
    from the rest. Zero when no example of the batch has a partner."""
    z = F.normalize(pooled.float(), dim=-1)
    similarity = z @ z.T / temperature
    same = (targets @ targets.T > 0) if targets.dim() == 2 else (targets[:, None] == targets[None, :])
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    positive = (same & ~eye).float()
    log_prob = similarity - torch.logsumexp(similarity.masked_fill(eye, -1e9), dim=1, keepdim=True)
    has = positive.sum(1) > 0
    if not has.any():
        return similarity.new_zeros(())
    return (-(positive * log_prob).sum(1)[has] / positive.sum(1)[has]).mean()


PAIR_BATCH = 16  # pairs a step, SetFit's default batch
PAIRS_ENUMERATED = 200_000  # above this many possible pairs, they are drawn rather than listed


def setfit_pairs(labels: list[int], seed: int, needed: int = 0) -> list[tuple[int, int, float]]:
    """Pairs of rows (i, j, 1.0 if their labels match else 0.0) as SetFit 1.2 makes them: every
    same-label pair (a row with itself included) and every other-label pair, the smaller side
    repeated until both are as many ("oversampling"), shuffled. Where there would be more than
    `PAIRS_ENUMERATED` pairs, `needed` of them are drawn instead, half of each kind: a row at
    random, then a partner at random among the rows that share its label, or among the rest."""
    n = len(labels)
    rng = random.Random(seed)
    if n * (n + 1) // 2 > PAIRS_ENUMERATED and needed:
        by_label: dict[int, list[int]] = {}
        for i, label in enumerate(labels):
            by_label.setdefault(label, []).append(i)
        drawn: list[tuple[int, int, float]] = []
        while len(drawn) < needed:
            a = rng.randrange(n)
            if len(drawn) % 2 == 0:
                drawn.append((a, rng.choice(by_label[labels[a]]), 1.0))
            elif len(by_label[labels[a]]) < n:
                b = rng.randrange(n)
                if labels[b] != labels[a]:
                    drawn.append((a, b, 0.0))
        return drawn
    same = [(i, j) for i, j in itertools.combinations_with_replacement(range(n), 2) if labels[i] == labels[j]]
    other = [(i, j) for i, j in itertools.combinations(range(n), 2) if labels[i] != labels[j]]
    m = max(len(same), len(other))
    pairs = [(a, b, 1.0) for a, b in (same * (m // len(same) + 1))[:m]]
    pairs += [(a, b, 0.0) for a, b in (other * (m // max(1, len(other)) + 1))[:m]]
    rng.shuffle(pairs)
    return pairs


def pairs_loss(pooled_rows: torch.Tensor, left: list[int], right: list[int], same: list[float]) -> torch.Tensor:
    """SetFit's contrastive loss: the squared error between the cosine similarity of each pair's
    two pooled representations and 1 (same label) or 0 (not)."""
    similarity = F.cosine_similarity(pooled_rows[left], pooled_rows[right])
    return F.mse_loss(similarity, torch.tensor(same, dtype=similarity.dtype, device=similarity.device))


def pairs_batch_loss(adapter: Adapter, cache: HiddenCache | NoCache, start: int,
                     batch: Sequence[tuple[int, int, float]], how: str) -> torch.Tensor:
    """`pairs_loss` of a batch of pairs of rows: each row of the batch runs through the model once."""
    rows = sorted({a for a, _, _ in batch} | {b for _, b, _ in batch})
    index = {r: i for i, r in enumerate(rows)}
    last, mask = _last_hidden(adapter, cache, start, rows)
    return pairs_loss(pool(last, mask, how), [index[a] for a, _, _ in batch], [index[b] for _, b, _ in batch],
                      [same for _, _, same in batch])


def stratified_folds(targets: torch.Tensor, folds: int, seed: int) -> list[list[int]]:
    """`folds` disjoint groups of rows: each label dealt round the folds in turn (single-label),
    or a plain shuffle (multi-label)."""
    rng = random.Random(seed)
    groups: list[list[int]] = [[] for _ in range(folds)]
    if targets.dim() == 2:
        order = list(range(len(targets)))
        rng.shuffle(order)
        for k, row in enumerate(order):
            groups[k % folds].append(row)
        return [sorted(g) for g in groups]
    turn = 0
    for label in sorted(set(targets.tolist())):
        members = [i for i, t in enumerate(targets.tolist()) if t == label]
        rng.shuffle(members)
        for row in members:
            groups[turn % folds].append(row)
            turn += 1
    return [sorted(g) for g in groups]


@dataclass
class Fit:
    """One training run: the adapter as it ended (held-out: at its best check), the loss per
    epoch, the held-out score at each check, and the held-out probabilities at each check."""

    adapter: Adapter
    loss_curve: list[float]
    checks: list[tuple[int, float]] = field(default_factory=list)  # (step, score)
    check_probs: list[torch.Tensor] = field(default_factory=list)
    steps: int = 0


def warmup_then_decay(optimizer: torch.optim.Optimizer, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning-rate schedule of every fit: a linear warm-up over a tenth of `total` steps,
    then a linear decay to zero at step `total`."""
    warmup = max(1, total // 10)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))


def label_weights(targets: torch.Tensor, cfg: TrainConfig) -> torch.Tensor | None:
    """Multi-label, `label_weights` balanced: each label's positives weigh negatives / positives
    of these training rows (1 for a label without any). With a few examples of each of many
    labels, unweighted, every label's negatives outweigh its positives 10–50 to 1 and the model
    learns each label's base rate, giving every text the same top label (GoEmotions, 8 examples of
    each of 28 labels: the same label for all 2,000 test texts; bench/RESULTS.md)."""
    if cfg.label_weights == "none":
        return None
    positives = targets.sum(0)
    return torch.where(positives > 0, (len(targets) - positives) / positives.clamp(min=1), torch.ones_like(positives))


def weights_of(adapter: Adapter) -> dict[str, torch.Tensor]:
    """A copy of the adapter's weights as they are now (its state dict, detached)."""
    return {k: v.detach().clone() for k, v in adapter.state_dict().items()}


class WeightAverage:
    """An exponential moving average of an adapter's floating-point weights (`TrainConfig.ema`):
    after step t it moves towards the new weights by 1 − d, with d = min(decay, (1 + t) / (10 + t)),
    so that the first steps' weights, near the random start, do not linger in a short run."""

    def __init__(self, adapter: Adapter, decay: float):
        self.decay, self.updates = decay, 0
        self.state = {k: v for k, v in weights_of(adapter).items() if v.is_floating_point()}

    def update(self, adapter: Adapter) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = adapter.state_dict()
        with torch.no_grad():
            for k, v in self.state.items():
                v.lerp_(current[k].detach(), 1.0 - d)

    def copy_to(self, adapter: Adapter) -> None:
        adapter.load_state_dict(self.state, strict=False)

    @contextlib.contextmanager
    def swapped_in(self, adapter: Adapter) -> Iterator[None]:
        """The averaged weights in `adapter` for the block, its own weights back after."""
        own = weights_of(adapter)
        self.copy_to(adapter)
        try:
            yield
        finally:
            adapter.load_state_dict(own)


class Run:
    """What every fit of one `train` call shares: the examples' cached prefix, their targets,
    the config and the progress report. Fits differ only in their rows and step budget."""

    def __init__(self, base: Base, cfg: TrainConfig, cache: HiddenCache | NoCache, lengths: list[int],
                 targets: torch.Tensor, label_names: list[str], multi_label: bool, layers: list[int],
                 length_buckets: bool, progress: Progress | None, planned_steps: int):
        self.base, self.cfg, self.cache, self.lengths, self.targets = base, cfg, cache, lengths, targets
        self.label_names, self.multi_label, self.layers = label_names, multi_label, layers
        # multi-label examples that all carry a label: so will every answer (`calibration.decisions`)
        self.min_labels = int(multi_label and bool((targets.sum(-1) > 0).all()))
        self.pos_weight: torch.Tensor | None = None  # of the fit under way (`label_weights`)
        self.start = layers[0]
        self.length_buckets, self.progress = length_buckets, progress
        self.pooling = default_pooling(base.family) if cfg.pooling == "auto" else cfg.pooling
        self.steps_done, self.planned_steps = 0, planned_steps
        self.fits_done, self.fits_planned = 0, 1
        self.epoch, self.epochs = 0, 0  # of the fit under way
        self.t0 = time.perf_counter()

    def budget(self, n_train: int) -> tuple[int, int]:
        """(steps per epoch, total steps) for `n_train` training rows: `epochs` epochs, but never
        fewer than `min_steps` steps — a few examples make epochs of a step or two."""
        per_epoch = math.ceil(n_train / self.cfg.batch_size)
        return per_epoch, max(per_epoch * self.cfg.epochs, self.cfg.min_steps)

    def new_adapter(self) -> Adapter:
        return Adapter.new(self.base, intervention=self.cfg.intervention, layers=self.layers,
                           positions=self.cfg.positions, rank=self.cfg.train_rank, dropout=self.cfg.dropout,
                           label_names=list(self.label_names), multi_label=self.multi_label, pooling=self.pooling,
                           train_config=self.cfg).with_config(min_labels=self.min_labels)

    def batches(self, rows: Sequence[int], rng: random.Random) -> list[list[int]]:
        if self.length_buckets:
            return length_batches(self.lengths, rows, self.cfg.batch_size, rng)
        return shuffled_batches(rows, self.cfg.batch_size, rng)

    def score(self, adapter: Adapter, rows: list[int]) -> tuple[float, torch.Tensor]:
        probs = _evaluate(adapter, self.cache, self.start, rows, 128)
        return main_score(_metrics(adapter, probs, self.targets[rows]), self.multi_label), probs

    def schedule(self, n_train: int) -> tuple[int, int]:
        """(total steps, steps between checks) for `n_train` training rows: about 20 checks, at
        least an epoch apart."""
        per_epoch, total = self.budget(n_train)
        return total, max(per_epoch, math.ceil(total / 20))

    def fit(self, train_rows: list[int], eval_rows: list[int], early_stopping: bool = False, seed: int | None = None,
            plan: tuple[int, int] | None = None) -> Fit:
        """Train a new adapter on `train_rows` for the budget's steps, checking `eval_rows` about
        20 times (at least once an epoch). With `early_stopping` the best check's weights are kept
        and `patience` checks without gain stop the run. With `ema` the checks score, and the fit
        keeps, the moving average of the weights (`WeightAverage`) instead of the last step's.
        `plan` (total steps, steps between checks) overrides the one for this many rows:
        k-fold fits share one, so that their checks fall on the same steps, and the refit's
        schedule ends at the step they chose."""
        cfg = self.cfg
        seed = cfg.seed if seed is None else seed
        if cfg.objective == "pairs":
            return self.fit_pairs(train_rows, eval_rows, seed, plan)
        weights = label_weights(self.targets[train_rows], cfg) if self.multi_label else None
        self.pos_weight = None if weights is None else weights.to(self.base.device)
        torch.manual_seed(seed)
        rng = random.Random(seed)
        adapter = self.new_adapter()
        per_epoch = self.budget(len(train_rows))[0]
        total, check_every = plan or self.schedule(len(train_rows))
        optimizer = torch.optim.AdamW(adapter.parameters(), lr=cfg.train_lr, weight_decay=0.0)
        schedule = warmup_then_decay(optimizer, total)
        result = Fit(adapter, [])
        self.epoch, self.epochs = 1, math.ceil(total / per_epoch)
        best_score, stale = -math.inf, 0
        best_state = weights_of(adapter)
        average = WeightAverage(adapter, cfg.ema) if cfg.ema else None
        adapter.train()
        step, epoch_loss, epoch_rows = 0, 0.0, 0
        while step < total:
            for rows in self.batches(train_rows, rng):
                loss = self.loss(adapter, rows)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                step += 1
                if average:
                    average.update(adapter)
                epoch_loss += loss.item() * len(rows)
                epoch_rows += len(rows)
                self.report(loss.item())
                if eval_rows and (step % check_every == 0 or step == total):
                    with average.swapped_in(adapter) if average else contextlib.nullcontext():
                        score, probs = self.score(adapter, eval_rows)
                        better = score > best_score
                        if better:  # the weights scored: the average's, with `ema`
                            best_state = weights_of(adapter)
                    result.checks.append((step, score))
                    result.check_probs.append(probs)
                    best_score, stale = (score, 0) if better else (best_score, stale + 1)
                if step >= total or (early_stopping and stale >= cfg.patience):
                    break
            result.loss_curve.append(round(epoch_loss / max(1, epoch_rows), 5))
            epoch_loss, epoch_rows = 0.0, 0
            self.epoch += 1
            if early_stopping and stale >= cfg.patience:
                break
        if early_stopping and eval_rows:
            adapter.load_state_dict(best_state)
        elif average:
            average.copy_to(adapter)
        adapter.eval()
        result.steps = step
        self.fits_done += 1
        return result

    def fit_pairs(self, train_rows: list[int], eval_rows: list[int], seed: int,
                  plan: tuple[int, int] | None = None) -> Fit:
        """The pairs objective: the budget's steps of `PAIR_BATCH` SetFit pairs of `train_rows`
        (`setfit_pairs`, `pairs_loss` on the pooled edited representation), on the same
        learning-rate schedule; then the head is a logistic regression fitted on the trained
        representation of `train_rows` (`probe.fold_into`). One check, at the end: a head fitted
        at every check would cost more than the steps."""
        cfg = self.cfg
        torch.manual_seed(seed)
        adapter = self.new_adapter()
        per_epoch = self.budget(len(train_rows))[0]
        total = (plan or self.schedule(len(train_rows)))[0]
        local = setfit_pairs(self.targets[train_rows].tolist(), seed, total * PAIR_BATCH)
        pairs = [(train_rows[a], train_rows[b], same) for a, b, same in local]
        optimizer = torch.optim.AdamW(adapter.parameters(), lr=cfg.train_lr, weight_decay=0.0)
        schedule = warmup_then_decay(optimizer, total)
        result = Fit(adapter, [])
        self.epoch, self.epochs = 1, math.ceil(total / per_epoch)
        adapter.train()
        at, epoch_loss, epoch_steps = 0, 0.0, 0
        for step in range(1, total + 1):
            batch = pairs[at:at + PAIR_BATCH]  # the last batch of a pass may be short; then back to the first
            at = at + PAIR_BATCH if at + PAIR_BATCH < len(pairs) else 0
            loss = pairs_batch_loss(adapter, self.cache, self.start, batch, self.pooling)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            epoch_loss, epoch_steps = epoch_loss + loss.item(), epoch_steps + 1
            self.report(loss.item())
            if step % per_epoch == 0 or step == total:
                result.loss_curve.append(round(epoch_loss / epoch_steps, 5))
                epoch_loss, epoch_steps = 0.0, 0
                self.epoch += 1
        adapter.eval()
        features = pooled(adapter, self.cache, self.start, train_rows, self.pooling)
        probe.fold_into(adapter.head, features.numpy(), self.targets[train_rows].numpy(), seed)
        if eval_rows:
            score, probs = self.score(adapter, eval_rows)
            result.checks.append((total, score))
            result.check_probs.append(probs)
        result.steps = total
        self.fits_done += 1
        return result

    def loss(self, adapter: Adapter, rows: list[int]) -> torch.Tensor:
        last, mask = _last_hidden(adapter, self.cache, self.start, rows)
        logits = adapter.head(last, mask)
        y = self.targets[rows].to(self.base.device)
        loss = F.binary_cross_entropy_with_logits(logits, y, pos_weight=self.pos_weight) if self.multi_label \
            else F.cross_entropy(logits, y)
        if self.cfg.contrastive:
            loss = loss + self.cfg.contrastive * supervised_contrastive(pool(last, mask, self.pooling), y)
        return loss

    def report(self, loss: float) -> None:
        self.steps_done += 1
        if self.progress is None:
            return
        total = max(self.planned_steps, self.steps_done)
        elapsed = time.perf_counter() - self.t0
        self.progress({"step": self.steps_done, "total_steps": total, "epoch": min(self.epoch, self.epochs),
                       "epochs": self.epochs, "fit": self.fits_done + 1, "fits": self.fits_planned,
                       "loss": round(loss, 5),
                       "eta_seconds": round(elapsed / self.steps_done * (total - self.steps_done), 1)})


@dataclass
class CrossValidation:
    """A recipe's k-fold result on some examples: the chosen step count, its mean out-of-fold
    score (and each fold's), and the out-of-fold probabilities at that step, in row order."""

    steps: int
    score: float
    fold_scores: list[float]
    probs: torch.Tensor
    folds: int
    adapters: list[Adapter] = field(default_factory=list, repr=False)  # each fold's, as its schedule ended
    # Each fold scored at the step the other folds chose, averaged: `score` is the best of the
    # checks' means, so it is higher than a recipe with more checks to choose from deserves (the
    # labels objective has about twenty, pairs one); this is what two recipes are compared by.
    nested_score: float = 0.0


def cross_validate(run: Run, rows: list[int], folds: int) -> CrossValidation:
    """Fit the recipe once per fold and choose the step count with the best mean out-of-fold
    score (the latest of those tied: more training at the same score)."""
    # The folds do not depend on the recipe's seed: recipes compared on the same examples meet the same folds.
    groups = [g for g in stratified_folds(run.targets[rows], folds, seed=0) if g]
    groups = [[rows[i] for i in g] for g in groups]
    # One schedule for every fold (that of the largest training share): folds a row apart in size
    # can differ by a step per epoch, and checks at different steps cannot be averaged (nor
    # indexed alike: an IndexError for some set sizes, 201 rows among them).
    plan = run.schedule(max(len(rows) - len(held) for held in groups))
    fits = [run.fit([r for other in groups if other is not held for r in other], held, plan=plan)
            for held in groups]
    steps = [s for s, _ in fits[0].checks]
    means = [sum(f.checks[k][1] for f in fits) / len(fits) for k in range(len(steps))]
    best = max(range(len(steps)), key=lambda k: (means[k], k))
    probs = torch.zeros(len(run.targets), len(run.label_names))
    for fit, held in zip(fits, groups):
        probs[held] = fit.check_probs[best]

    def chosen_without(f: int) -> int:
        others = [g for g in range(len(fits)) if g != f] or [f]
        return max(range(len(steps)), key=lambda k: (sum(fits[g].checks[k][1] for g in others), k))

    nested = sum(fit.checks[chosen_without(f)][1] for f, fit in enumerate(fits)) / len(fits)
    return CrossValidation(steps[best], means[best], [round(f.checks[best][1], 4) for f in fits], probs[rows],
                           len(groups), [f.adapter for f in fits], nested)


def weight_average(adapters: Sequence[Adapter]) -> Adapter:
    """The first adapter with every floating-point weight replaced by the mean over `adapters`
    (a "model soup"). Meaningful only for adapters trained from the same initialisation — the
    k-fold fits and the refit share the recipe's seed. LoReFT's rotation is averaged in its
    unconstrained parameters, so the average is again orthonormal."""
    states = [a.state_dict() for a in adapters]
    mean = {k: torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v
            for k, v in states[0].items()}
    adapters[0].load_state_dict(mean)
    return adapters[0]


def evaluation_plan(cfg: TrainConfig, targets: torch.Tensor, multi_label: bool) -> tuple[str, int]:
    """("held_out" | "k-fold" | "none", folds). Auto: k-fold below `kfold_below` examples (a
    multi-label set: below `kfold_below_multi_label`, if larger); with fewer than two examples per
    fold, none (every row trains, nothing is measured)."""
    n = len(targets)
    kind = cfg.evaluation
    if kind == "auto":
        below = max(cfg.kfold_below, cfg.kfold_below_multi_label) if multi_label else cfg.kfold_below
        kind = "k-fold" if n < below else "held_out"
    if kind == "k-fold":
        folds = min(cfg.folds, n // 2)
        return ("k-fold", folds) if folds >= 2 else ("none", 0)
    return "held_out", 0


def objective_of(cfg: TrainConfig, kind: str, multi_label: bool) -> str:
    """The objective a recipe trains by: its own, or for auto the pairs objective in k-fold
    evaluation of a single-label set (below `kfold_below` examples) and labels everywhere else
    (bench/RESULTS.md, "the pairs objective, built"). The pairs objective needs a single label
    per text."""
    problem = cfg.problem_for_set("classification", multi_label)
    if problem:
        raise problem
    if cfg.objective != "auto":
        return cfg.objective
    return "pairs" if kind == "k-fold" and not multi_label else "labels"


def recipe_run(base: Base, cfg: TrainConfig, ids: list[list[int]], targets: torch.Tensor, label_names: list[str],
               multi_label: bool, progress: Progress | None, cache_prefix: bool = True,
               length_buckets: bool = True) -> Run:
    """The run of a recipe whose objective is settled: its examples' cached prefix (below its
    lowest intervened layer) and everything its fits share."""
    layers = cfg.resolve_layers(base.num_layers)
    cache = HiddenCache(base, ids, upto=layers[0]) if cache_prefix else NoCache(base, ids)
    return Run(base, cfg, cache, [len(r) for r in ids], targets, label_names, multi_label, layers, length_buckets,
               progress, planned_steps=0)


def train(base: Base, texts: Sequence[str], labels: Sequence[Any], label_names: list[str], multi_label: bool = False,
          config: dict[str, Any] | TrainConfig | None = None, progress: Progress | None = None,
          eval_mask: Sequence[bool] | None = None, cache_prefix: bool = True,
          length_buckets: bool = True) -> Adapter:
    """Train an adapter. Its `metrics` say how it was evaluated (`evaluation`: held_out with
    `n_eval` rows, or k-fold with `folds`; the module docstring has the rules) and which
    objective trained it (`objective`: labels or pairs).

    `eval_mask[i]` marks example i as an evaluation row (held_out); without it a stratified
    `eval_fraction` of the rows is held out. `cache_prefix=False` recomputes the frozen lower
    layers every step, `length_buckets=False` pads shuffled batches to their longest text
    instead (both for comparison only: together they are the way pyreft trains).
    """
    t0 = time.perf_counter()
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    cfg.validate()
    if len(label_names) < 2 or len(set(label_names)) != len(label_names):
        raise ReftConfigError("label_names", "need at least two distinct labels")
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if eval_mask is not None and len(eval_mask) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(eval_mask)} evaluation marks")
    targets = _encode_labels(labels, label_names, multi_label)
    kind, folds = evaluation_plan(cfg, targets, multi_label)
    settled = replace(cfg, objective=objective_of(cfg, kind, multi_label))
    run = recipe_run(base, settled, base.tokenize(texts, cfg.max_length), targets, label_names, multi_label,
                     progress, cache_prefix, length_buckets)
    every = list(range(len(texts)))

    if kind == "held_out":
        if eval_mask is not None:
            eval_rows = [i for i in every if eval_mask[i]]
            train_rows = [i for i in every if not eval_mask[i]]
        else:
            train_rows, eval_rows = split_held_out(targets, cfg.eval_fraction, cfg.seed)
        run.planned_steps = run.budget(len(train_rows))[1]
        fit = run.fit(train_rows, eval_rows, early_stopping=len(eval_rows) >= cfg.early_stop_min_eval)
        adapter = fit.adapter
        evaluation: dict[str, Any] = {"evaluation": "held_out", "n_eval": len(eval_rows),
                                      "split": "given" if eval_mask is not None else "stratified"}
        probs, truth = (_evaluate(adapter, run.cache, run.start, eval_rows, 128), targets[eval_rows]) if eval_rows \
            else (None, None)
        steps = fit.steps
    else:
        per_fold = run.budget(len(texts) - len(texts) // max(folds, 1))[1]
        run.planned_steps = per_fold * folds + run.budget(len(texts))[1]
        run.fits_planned = folds + 1
        cv = cross_validate(run, every, folds) if kind == "k-fold" else None
        if cv is not None:
            run.planned_steps = run.steps_done + cv.steps
        fit = run.fit(every, [], plan=(cv.steps, cv.steps) if cv else None)
        adapter = fit.adapter
        steps = fit.steps
        if cv is not None:
            evaluation = {"evaluation": "k-fold", "folds": cv.folds, "n_eval": len(texts),
                          "fold_scores": cv.fold_scores, "fold_score_nested": round(cv.nested_score, 4),
                          "steps_chosen": cv.steps}
            if cfg.soup == "folds" or (cfg.soup == "auto" and multi_label):
                adapter = weight_average([adapter, *cv.adapters]).eval()
                evaluation["soup"] = cv.folds + 1
            probs, truth = cv.probs, targets
        else:
            evaluation = {"evaluation": "none", "n_eval": 0}
            probs, truth = None, None

    metrics: dict[str, Any] = {}
    if probs is not None and truth is not None:
        metrics = calibrate(adapter, probs, truth)
    n_train = len(texts) - (evaluation["n_eval"] if kind == "held_out" else 0)
    metrics.update({**evaluation, "objective": settled.objective, "n_train": n_train, "steps_run": steps,
                    "epochs_run": len(fit.loss_curve), "loss_curve": fit.loss_curve,
                    "train_seconds": round(time.perf_counter() - t0, 2), "params": adapter.param_count})
    # the recipe as asked (objective auto stays auto: retrained on more examples, it may settle otherwise)
    return adapter.with_config(metrics=metrics, train_config=cfg).eval()


def calibrate(adapter: Adapter, probs: torch.Tensor, truth: torch.Tensor) -> dict[str, Any]:
    """Fit the adapter's calibration (and then its multi-label thresholds) on predictions it did
    not train on — held-out or out-of-fold, uncalibrated — and return the metrics of the
    calibrated predictions, with the calibration's error before and after and the review table
    (`calibration` module)."""
    multi = adapter.multi_label
    fitted = calibration.fit(probs, truth, multi)
    scores = calibration.calibrated(fitted, probs, multi)
    adapter.with_config(calibration=fitted.to_dict())
    if multi:
        adapter.with_config(thresholds=tuple(tune_thresholds(scores, truth)))
    metrics = _metrics(adapter, scores, truth)
    confidence = calibration.item_confidence(scores, multi, adapter.thresholds, adapter.min_labels)
    correct = calibration.item_correct(scores, truth, multi, adapter.thresholds, adapter.min_labels)
    review = calibration.Review.measure(confidence, correct)
    metrics["calibration"] = {
        "method": fitted.method, "bins": calibration.BINS, "n": len(probs),
        "ece_before": calibration.ece(probs, truth, multi),
        # each row calibrated by a fit on the other rows: what calibration does for new texts
        "ece_after": calibration.cross_fitted_ece(probs, truth, multi),
    }
    metrics["review"] = {"n": review.n, "thresholds": review.thresholds, "coverage": review.coverage}
    return metrics


def evaluate(base: Base, adapter: Adapter, texts: Sequence[str], labels: Sequence[Any]) -> dict[str, Any]:
    """An adapter's metrics on these labelled texts (the label names are the adapter's own)."""
    targets = _encode_labels(labels, adapter.label_names, adapter.multi_label)
    ids = base.tokenize(texts, adapter.max_length)
    start = min(adapter.layers)
    probs = _evaluate(adapter, HiddenCache(base, ids, upto=start), start, list(range(len(texts))), 128)
    return _metrics(adapter, probs, targets)


def recipe_cross_validation(base: Base, texts: Sequence[str], labels: Sequence[Any], label_names: list[str],
                            multi_label: bool, config: dict[str, Any] | TrainConfig | None,
                            folds: int | None = None, progress: Progress | None = None) -> CrossValidation:
    """How a training recipe (a config) does on these examples: fit per fold, out-of-fold scores.
    The folds depend only on the examples and `folds`, so two recipes are scored on the same. An
    auto objective settles as `train` would settle it on these examples."""
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    targets = _encode_labels(labels, label_names, multi_label)
    settled = replace(cfg, objective=objective_of(cfg, evaluation_plan(cfg, targets, multi_label)[0], multi_label))
    run = recipe_run(base, settled, base.tokenize(texts, cfg.max_length), targets, label_names, multi_label, progress)
    k = min(folds or cfg.folds, len(texts) // 2)
    run.planned_steps, run.fits_planned = run.budget(len(texts) - len(texts) // max(k, 1))[1] * k, k
    return cross_validate(run, list(range(len(texts))), k)
