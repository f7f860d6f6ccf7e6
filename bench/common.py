"""Shared by bench/accuracy.py and bench/speed.py: the data, scoring, frozen embeddings, and
the one training loop of the LoRA and full fine-tuning baselines.

The baselines copy reftag's recipe wherever it is not the method itself: the same rows, the
same held-out split (`reft_core.training.split_held_out`), the same length-bucketed batches
(`length_batches`), AdamW with 10 % linear warm-up then linear decay, early stopping on the
held-out main score (`reft_core.metrics.main_score`), thresholds tuned on the held-out split
for multi-label sets, and the same head: mean pooling of the last hidden state + one Linear.
"""
from __future__ import annotations

import copy
import json
import math
import random
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reft_core import Base, Prediction, TrainConfig
from reft_core.heads import pool, scores_from_logits
from reft_core.metrics import main_score, multi_label_metrics, single_label_metrics, tune_thresholds
from reft_core.training import _encode_labels, length_batches, split_held_out, warmup_then_decay

from .data import label_names, read_jsonl, row_labels

OUT_DIR = Path(__file__).resolve().parent / "out"
DEFAULTS = TrainConfig()  # reftag's defaults: epochs, patience, batch size, max_length, held-out share, seed
EVAL_MAX_LENGTH = DEFAULTS.max_length  # Tagger cuts texts at the adapter's training length; every method is tested so
EVAL_BATCH = 64


# -- data ------------------------------------------------------------------------------------------
@dataclass
class Split:
    texts: list[str]
    labels: list  # str per row (single-label) or list[str] (multi-label)


@dataclass
class Dataset:
    name: str
    names: list[str]
    multi_label: bool
    train: Split
    test: Split

    def targets(self, split: Split) -> torch.Tensor:
        """Label indices (N,) or a 0/1 matrix (N, C), as reft_core encodes them."""
        return _encode_labels(split.labels, self.names, self.multi_label)


def load_dataset(name: str, train_rows: int, test_rows: int) -> Dataset:
    """The first `train_rows` training rows and the first `test_rows` test rows (file order:
    every method and every run sees the same rows)."""
    def split(which: str, limit: int) -> Split:
        rows = read_jsonl(name, which, limit)
        return Split([r["text"] for r in rows], [row_labels(r) for r in rows])

    train = split("train", train_rows)
    return Dataset(name, label_names(name), isinstance(train.labels[0], list), train, split("test", test_rows))


# -- scoring ---------------------------------------------------------------------------------------
def test_metrics(probs: torch.Tensor, truth: torch.Tensor, names: list[str], multi_label: bool,
                 thresholds: list[float] | None = None, min_labels: int = 0) -> dict[str, float]:
    """accuracy + macro-F1 (+ micro-F1, multi-label: accuracy is exact match) with reft_core's own
    metrics; multi-label answers are `thresholds` and `min_labels` applied as an adapter applies
    them (`calibration.decisions`)."""
    if multi_label:
        m = multi_label_metrics(probs, truth, names, thresholds or [0.5] * len(names), min_labels)
        return {k: m[k] for k in ("accuracy", "micro_f1", "macro_f1")}
    m = single_label_metrics(probs, truth, names)
    return {k: m[k] for k in ("accuracy", "macro_f1")}


def probs_from_predictions(preds: Sequence[Prediction], names: list[str]) -> torch.Tensor:
    return torch.tensor([[p.scores[n] for n in names] for p in preds])


# -- frozen embeddings and plain forward passes -------------------------------------------------------
def batches(lengths: Sequence[int], batch_size: int, sort: bool) -> Iterator[list[int]]:
    """Row indices in batches: sorted by length (the Tagger's policy) or in submission order."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__) if sort else list(range(len(lengths)))
    for lo in range(0, len(order), batch_size):
        yield order[lo:lo + batch_size]


def encode(base: Base, forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], texts: Sequence[str],
           max_length: int = EVAL_MAX_LENGTH, batch_size: int = EVAL_BATCH, sort: bool = True) -> torch.Tensor:
    """forward(input_ids, mask) → (B, k) for every text, rows back in input order."""
    ids = base.tokenize(list(texts), max_length)
    out: list[torch.Tensor | None] = [None] * len(ids)
    with torch.inference_mode():
        for rows in batches([len(r) for r in ids], batch_size, sort):
            result = forward(*base.pad([ids[i] for i in rows])).float().cpu()
            for j, i in enumerate(rows):
                out[i] = result[j]
    return torch.stack(out)  # type: ignore[arg-type]


def mean_pooled(model: nn.Module) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The bare model's forward pass + mean pooling over real tokens."""
    def forward(input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return pool(model(input_ids=input_ids, attention_mask=mask).last_hidden_state, mask, "mean")
    return forward


# -- the LoRA / full fine-tuning baselines ------------------------------------------------------------
class PooledClassifier(nn.Module):
    """An encoder (trainable in whole or through LoRA) + reftag's head: mean pooling, one Linear."""

    def __init__(self, encoder: nn.Module, hidden_size: int, n_labels: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(hidden_size, n_labels)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        last = self.encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return self.head(pool(last, mask, "mean"))


def lora_encoder(base: Base, rank: int = 8, alpha: int = 16, dropout: float = 0.05) -> nn.Module:
    """A copy of the base model with peft LoRA on the attention query/value projections."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=["query", "value"], bias="none")
    return get_peft_model(copy.deepcopy(base.model), config)


def full_encoder(base: Base) -> nn.Module:
    """A copy of the base model with every weight trainable."""
    return copy.deepcopy(base.model).requires_grad_(True)


BASELINE_ENCODERS: dict[str, Callable[[Base], nn.Module]] = {"lora": lora_encoder, "full": full_encoder}
BASELINE_LR = {"lora": 5e-4, "full": 5e-5}


@dataclass
class Finetuned:
    model: PooledClassifier
    multi_label: bool
    thresholds: list[float] | None
    params: dict[str, int]
    train_seconds: float
    epochs_run: int
    loss_curve: list[float] = field(default_factory=list)


def _param_count(model: PooledClassifier) -> dict[str, int]:
    trainable = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
    adapter, head = trainable(model.encoder), trainable(model.head)
    return {"adapter": adapter, "head": head, "total": adapter + head}


def _predict_probs(model: PooledClassifier, ids: list[list[int]], rows: list[int], base: Base, multi_label: bool,
                   batch_size: int = 128) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        logits = [model(*base.pad([ids[i] for i in rows[lo:lo + batch_size]]))
                  for lo in range(0, len(rows), batch_size)]
    model.train()
    return scores_from_logits(torch.cat(logits).float().cpu(), multi_label)


def _held_out_score(probs: torch.Tensor, truth: torch.Tensor, multi_label: bool, n_labels: int) -> float:
    names = [str(i) for i in range(n_labels)]
    return main_score(test_metrics(probs, truth, names, multi_label), multi_label)


def finetune(base: Base, method: str, texts: Sequence[str], targets: torch.Tensor, n_labels: int, multi_label: bool,
             epochs: int = DEFAULTS.epochs, patience: int = DEFAULTS.patience, lr: float | None = None,
             seed: int = DEFAULTS.seed, head_lr: float | None = None) -> Finetuned:
    """Train `method` ("lora" | "full") with reftag's loop; the best held-out epoch is kept.
    The head trains at `lr` too unless `head_lr` is given (reftag's own head trains at DEFAULTS.lr)."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = PooledClassifier(BASELINE_ENCODERS[method](base), base.hidden_size, n_labels).to(base.device)
    model.train()  # the encoder's own dropout is on, as in ordinary fine-tuning
    train_rows, eval_rows = split_held_out(targets, DEFAULTS.eval_fraction, seed)
    ids = base.tokenize(list(texts), DEFAULTS.max_length)
    lengths = [len(r) for r in ids]

    head = list(model.head.parameters())
    encoder = [p for p in model.encoder.parameters() if p.requires_grad]
    lr = lr or BASELINE_LR[method]
    optimizer = torch.optim.AdamW([{"params": encoder, "lr": lr}, {"params": head, "lr": head_lr or lr}],
                                  weight_decay=0.0)
    total = math.ceil(len(train_rows) / DEFAULTS.batch_size) * epochs
    schedule = warmup_then_decay(optimizer, total)

    best, best_state, stale, curve = -1.0, None, 0, []
    for _ in range(epochs):
        epoch_loss = 0.0
        for rows in length_batches(lengths, train_rows, DEFAULTS.batch_size, rng):
            logits = model(*base.pad([ids[i] for i in rows]))
            y = targets[rows].to(base.device)
            loss = F.binary_cross_entropy_with_logits(logits, y) if multi_label else F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            epoch_loss += loss.item() * len(rows)
        curve.append(round(epoch_loss / len(train_rows), 5))
        score = _held_out_score(_predict_probs(model, ids, eval_rows, base, multi_label), targets[eval_rows],
                                multi_label, n_labels) if eval_rows else -curve[-1]
        if score > best:
            best, stale = score, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()
                          if k.startswith("head.") or "lora_" in k or method == "full"}
        else:
            stale += 1
            if stale >= patience:
                break
    model.load_state_dict(best_state, strict=False)
    model.eval()
    thresholds = None
    if multi_label and eval_rows:
        thresholds = tune_thresholds(_predict_probs(model, ids, eval_rows, base, multi_label), targets[eval_rows])
    return Finetuned(model, multi_label, thresholds, _param_count(model), time.perf_counter() - t0, len(curve), curve)


def finetuned_probs(base: Base, tuned: Finetuned, texts: Sequence[str]) -> torch.Tensor:
    logits = encode(base, tuned.model, texts)
    return scores_from_logits(logits, tuned.multi_label)


# -- reporting -------------------------------------------------------------------------------------
def command_line(module: str) -> str:
    return f"python -m {module} " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(filename: str, payload: dict[str, Any]) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / filename
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def machine() -> dict[str, Any]:
    import os
    import platform

    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            # where the models ran: a GPU's seconds do not compare with this 2-core machine's, and on
            # a GPU reftag's base runs under bf16 autocast (reft_core.base.Base.autocast)
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
