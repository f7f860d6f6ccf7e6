"""Training an adapter that labels spans: interventions at every real token, a linear head per
token over BIO tags (`spans` has the tags and how character offsets round to tokens).

The loop is classification's (`training.Run`: the cached prefix, length-bucketed batches, AdamW
with warm-up and linear decay, early stopping on held-out data, best check kept); only the loss
and the score differ:

- loss: cross-entropy of each content token's tag; special tokens, the base's text prefix,
  whitespace-only pieces and pads carry no tag and no loss;
- score: entity micro-F1 (exact match, `metrics.span_metrics`) of the decoded spans (constrained
  Viterbi, `span_decoding`) against the held-out examples' own character spans, so a span lost
  to rounding or to the `max_length` cut counts as missed.

Evaluation is a held-out share (`eval_fraction`, or the caller's `eval_mask`), whatever the
number of examples: k-fold evaluation is classification's. There is no calibration: a span's
score is the least probability among its tokens' tags.
"""
from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from .adapter import Adapter
from .base import Base
from .config import ReftConfigError, TrainConfig
from .metrics import span_metrics
from .span_decoding import decode
from .spans import Alignment, Span, SpanError, SpanPrediction, align, bio_tags, spans_to_tags, validate_spans
from .training import HiddenCache, NoCache, Progress, Run, _last_hidden

IGNORE = -100  # the target of a token that carries no tag (cross_entropy's ignore_index)
# Early stopping needs this many held-out examples. With fewer (a set of under ~200 examples)
# a check's F1 on a handful of sentences is mostly chance, and stopping on it cut runs of 50
# CoNLL sentences at 20–50 steps (entity F1 0.04–0.36 over three seeds): they train their whole
# step budget instead (`epochs`, at least `min_steps`) and keep the last weights.
EARLY_STOPPING_MIN_EVAL = 30
SpanInput = Sequence[Span | Mapping[str, Any]]


def tag_targets(alignments: Sequence[Alignment], gold: Sequence[Sequence[Span]],
                labels: Sequence[str]) -> tuple[torch.Tensor, int]:
    """(N, longest) tag index per token, IGNORE where a token has no tag; and how many spans no
    token represents (`spans.Tagged.dropped`)."""
    index = {tag: i for i, tag in enumerate(bio_tags(labels))}
    targets = torch.full((len(alignments), max(len(a.ids) for a in alignments)), IGNORE, dtype=torch.long)
    dropped = 0
    for row, (alignment, spans) in enumerate(zip(alignments, gold)):
        tagged = spans_to_tags(alignment, spans)
        targets[row, alignment.content] = torch.tensor([index[t] for t in tagged.tags], dtype=torch.long)
        dropped += len(tagged.dropped)
    return targets, dropped


class SpanRun(Run):
    """A `Run` whose adapters tag tokens: its own adapter, loss and held-out score."""

    def __init__(self, base: Base, cfg: TrainConfig, cache: HiddenCache | NoCache, alignments: list[Alignment],
                 targets: torch.Tensor, texts: Sequence[str], gold: list[list[Span]], label_names: list[str],
                 layers: list[int], length_buckets: bool, progress: Progress | None):
        super().__init__(base, cfg, cache, [len(a.ids) for a in alignments], targets, label_names, False, layers,
                         length_buckets, progress, planned_steps=0)
        self.alignments, self.texts, self.gold = alignments, texts, gold

    def new_adapter(self) -> Adapter:
        return Adapter.new(self.base, intervention=self.cfg.intervention, layers=self.layers, positions="all",
                           rank=self.cfg.rank, dropout=self.cfg.dropout, label_names=list(self.label_names),
                           multi_label=False, pooling="token", train_config=self.cfg, kind="spans")

    def loss(self, adapter: Adapter, rows: list[int]) -> torch.Tensor:
        return self._tag_loss(adapter, rows)[0]

    def _tag_loss(self, adapter: Adapter, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy of the rows' tagged tokens, and the logits."""
        last, _ = _last_hidden(adapter, self.cache, self.start, rows)
        logits = adapter.head(last)
        y = self.targets[rows, : logits.shape[1]].to(logits.device)
        return F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE), logits

    def predict(self, adapter: Adapter, rows: list[int], batch_size: int = 128) -> tuple[list[SpanPrediction], float]:
        """The rows' decoded spans, and their mean tag loss (in eval mode; the mode is restored)."""
        training = adapter.training
        adapter.eval()
        out: list[SpanPrediction] = []
        total = 0.0
        with torch.no_grad(), parametrize.cached():
            for lo in range(0, len(rows), batch_size):
                chunk = rows[lo:lo + batch_size]
                loss, logits = self._tag_loss(adapter, chunk)
                total += loss.item() * len(chunk)
                out += decode(logits, [self.alignments[i] for i in chunk], [self.texts[i] for i in chunk],
                              self.label_names)
        adapter.train(training)
        return out, total / max(1, len(rows))

    def metrics(self, adapter: Adapter, rows: list[int]) -> dict[str, Any]:
        predicted, _ = self.predict(adapter, rows)
        return span_metrics([self.gold[i] for i in rows], [[s.span for s in p.spans] for p in predicted],
                            self.label_names)

    def score(self, adapter: Adapter, rows: list[int]) -> tuple[float, torch.Tensor]:
        predicted, loss = self.predict(adapter, rows)
        f1 = span_metrics([self.gold[i] for i in rows], [[s.span for s in p.spans] for p in predicted],
                          self.label_names)["micro_f1"]
        return stopping_score(f1, loss), torch.empty(0)


def stopping_score(f1: float, loss: float) -> float:
    """What early stopping compares: entity micro-F1, less a ten-thousandth of the held-out tag
    loss. Equal F1s (0 while every token is still O, early on; or a plateau on a few held-out
    sentences) go to the lower loss, so a run that is still learning is not stopped; a single
    span more or less always counts for more."""
    return f1 - 1e-4 * min(loss, 10.0)


def validated(texts: Sequence[str], spans: Sequence[SpanInput], label_names: Sequence[str]) -> list[list[Span]]:
    """Every example's spans checked (`spans.validate_spans`); the error names the example too."""
    if len(texts) != len(spans):
        raise ValueError(f"{len(texts)} texts but {len(spans)} span lists")
    out = []
    for i, (text, row) in enumerate(zip(texts, spans)):
        try:
            out.append(validate_spans(text, row, label_names))
        except SpanError as e:
            raise e.in_example(i) from None
    return out


def held_out_rows(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(training rows, held-out rows) of n examples: a seeded `fraction` held out (none of one)."""
    shuffled = random.Random(seed).sample(range(n), n)
    held = sorted(shuffled[: round(fraction * n)] if n > 1 else [])
    return sorted(shuffled[len(held):]), held


def check_config(cfg: TrainConfig) -> None:
    problem = cfg.problem_for_set("spans", False)
    if problem:
        raise problem


def train_spans(base: Base, texts: Sequence[str], spans: Sequence[SpanInput], label_names: list[str],
                config: dict[str, Any] | TrainConfig | None = None, progress: Progress | None = None,
                eval_mask: Sequence[bool] | None = None, cache_prefix: bool = True,
                length_buckets: bool = True) -> Adapter:
    """Train a spans adapter on texts and their spans (`{"start", "end", "label"}` dicts or
    `Span`s; `label_names` are the entity types). `eval_mask[i]` marks example i as held out;
    without it a seeded `eval_fraction` of the examples is. Its `metrics` are the held-out
    examples' `span_metrics`, with how many training spans no token could represent."""
    t0 = time.perf_counter()
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    cfg.validate()
    check_config(cfg)
    if not label_names or len(set(label_names)) != len(label_names):
        raise ReftConfigError("label_names", "need at least one label, each named once")
    if eval_mask is not None and len(eval_mask) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(eval_mask)} evaluation marks")
    gold = validated(texts, spans, label_names)
    alignments = align(base.tokenizer, texts, cfg.max_length, base.text_prefix)
    targets, dropped = tag_targets(alignments, gold, label_names)
    layers = cfg.resolve_layers(base.num_layers, kind="spans")
    ids = [a.ids for a in alignments]
    cache = HiddenCache(base, ids, upto=layers[0]) if cache_prefix else NoCache(base, ids)

    if eval_mask is not None:
        train_rows = [i for i, held in enumerate(eval_mask) if not held]
        eval_rows = [i for i, held in enumerate(eval_mask) if held]
    else:
        train_rows, eval_rows = held_out_rows(len(texts), cfg.eval_fraction, cfg.seed)
    run = SpanRun(base, cfg, cache, alignments, targets, texts, gold, label_names, layers, length_buckets, progress)
    run.planned_steps = run.budget(len(train_rows))[1]
    fit = run.fit(train_rows, eval_rows, early_stopping=len(eval_rows) >= EARLY_STOPPING_MIN_EVAL)
    adapter = fit.adapter
    metrics: dict[str, Any] = run.metrics(adapter, eval_rows) if eval_rows else {}
    metrics.update({"evaluation": "held_out" if eval_rows else "none", "n_eval": len(eval_rows),
                    "split": "given" if eval_mask is not None else "random", "n_train": len(train_rows),
                    "spans_dropped": dropped, "steps_run": fit.steps, "epochs_run": len(fit.loss_curve),
                    "loss_curve": fit.loss_curve, "train_seconds": round(time.perf_counter() - t0, 2),
                    "params": adapter.param_count})
    return adapter.with_config(metrics=metrics)


def evaluate_spans(base: Base, adapter: Adapter, texts: Sequence[str], spans: Sequence[SpanInput]) -> dict[str, Any]:
    """A spans adapter's `span_metrics` on these labelled texts, tagged as `Tagger` tags them."""
    from .tagger import Tagger

    gold = validated(texts, spans, adapter.label_names)
    predicted = Tagger(base).predict_spans(adapter, texts)
    return span_metrics(gold, [[s.span for s in p.spans] for p in predicted], adapter.label_names)
