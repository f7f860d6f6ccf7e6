"""Batched, length-bucketed prediction; one pass may mix rows of different adapters."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn.utils import parametrize

from .adapter import Adapter, Prediction
from .attach import Edits, encode_prefix, run_from
from .base import Base
from .heads import pool
from .span_decoding import decode
from .spans import DEFAULT_REVIEW_THRESHOLD, Alignment, SpanPrediction, align


class Tagger:
    """Scores texts with adapters on one shared base model.

    Work is sorted by token length so batches carry few pads. Within a batch each distinct
    text runs the frozen lower layers once (up to the lowest layer any adapter in the batch
    edits); rows then fan out per (adapter, text) for the upper layers, and each adapter's
    interventions and head apply to its own rows only. Classification and spans adapters mix
    in one batch: a spans adapter's rows read a tag off every token and are decoded to spans.
    """

    def __init__(self, base: Base, batch_size: int = 64):
        self.base, self.batch_size = base, batch_size

    def predict(self, adapter: Adapter, texts: Sequence[str],
                review_threshold: float | None = None) -> list[Prediction]:
        """`review_threshold`: items whose confidence is below it need review (see
        `Adapter.predictions`); without it, those near a decision boundary do."""
        if adapter.kind == "spans":
            raise ValueError("a spans adapter tags tokens: use Tagger.predict_spans")
        return self.predict_mixed([(adapter, t) for t in texts],  # type: ignore[return-value]
                                  None if review_threshold is None else {adapter: review_threshold})

    @torch.inference_mode()
    def predict_mixed(self, pairs: Sequence[tuple[Adapter, str]], review_thresholds: dict[Adapter, float] | None = None
                      ) -> list[Prediction | SpanPrediction]:
        """Each (adapter, text)'s answer: a `Prediction`, or a `SpanPrediction` for a spans
        adapter (whose review threshold defaults to 0.5, as `predict_spans`'s)."""
        if not pairs:
            return []
        # A text is cut at the length its adapter was trained with, so one text may be
        # tokenized at more than one length; each (text, length) is run once.
        text_index: dict[tuple[str, int], int] = {}
        pair_text = [text_index.setdefault((t, a.max_length), len(text_index)) for a, t in pairs]
        ids: list[list[int]] = [[] for _ in text_index]
        by_length: dict[int, list[tuple[str, int]]] = {}
        for key in text_index:
            by_length.setdefault(key[1], []).append(key)
        for length, keys in by_length.items():
            for key, row in zip(keys, self.base.tokenize([k[0] for k in keys], length)):
                ids[text_index[key]] = row
        # A spans adapter's text also needs its tokens' characters (the same ids: `align`
        # tokenizes as `Base.tokenize` does).
        spans_keys = list(dict.fromkeys((t, a.max_length) for a, t in pairs if a.kind == "spans"))
        alignments: dict[int, Alignment] = {}
        for length in {k[1] for k in spans_keys}:
            keys = [k for k in spans_keys if k[1] == length]
            for key, alignment in zip(keys, align(self.base.tokenizer, [k[0] for k in keys], length,
                                                  self.base.text_prefix)):
                alignments[text_index[key]] = alignment
        texts = [k[0] for k in text_index]
        # Identical texts end up side by side, so a batch shares their lower layers.
        order = sorted(range(len(pairs)), key=lambda i: (len(ids[pair_text[i]]), pair_text[i]))
        out: list[Prediction | SpanPrediction | None] = [None] * len(pairs)
        with parametrize.cached():  # each LoReFT R is computed once per call, not per batch
            for lo in range(0, len(order), self.batch_size):
                batch = order[lo:lo + self.batch_size]
                preds = self._run_batch([pairs[i][0] for i in batch], [pair_text[i] for i in batch], ids,
                                        review_thresholds or {}, texts, alignments)
                for i, p in zip(batch, preds):
                    out[i] = p
        return out  # type: ignore[return-value]

    def predict_spans(self, adapter: Adapter, texts: Sequence[str],
                      review_threshold: float = DEFAULT_REVIEW_THRESHOLD) -> list[SpanPrediction]:
        """The spans a spans adapter finds in each text (`span_decoding.decode`), with a score
        each; a text needs review when a token's decoded tag is less likely than `review_threshold`."""
        return self.predict_mixed([(adapter, t) for t in texts], {adapter: review_threshold})  # type: ignore[return-value]

    @torch.inference_mode()
    def represent(self, adapter: Adapter, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each text's calibrated scores (N, labels) and the pooled edited representation its
        head reads (N, hidden): what selecting texts to label (`selection`) compares."""
        base = self.base
        ids = base.tokenize(texts, adapter.max_length)
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        scores = torch.zeros(len(texts), len(adapter.label_names))
        pooled = torch.zeros(len(texts), base.hidden_size)
        start = min(adapter.layers)
        with parametrize.cached():
            for lo in range(0, len(order), self.batch_size):
                batch = order[lo:lo + self.batch_size]
                input_ids, mask = base.pad([ids[i] for i in batch])
                hidden = encode_prefix(base, input_ids, mask, start)
                rows = torch.arange(len(batch), device=base.device)
                last = run_from(base, hidden, start, input_ids, mask, Edits([(adapter, rows)], mask))
                scores[batch] = adapter.scores(adapter.head(last, mask)).cpu()
                pooled[batch] = pool(last, mask, adapter.config.pooling).float().cpu()
        return scores, pooled

    def _run_batch(self, batch_adapters: list[Adapter], batch_texts: list[int], ids: list[list[int]],
                   review_thresholds: dict[Adapter, float], texts: list[str],
                   alignments: dict[int, Alignment]) -> list[Prediction | SpanPrediction]:
        base = self.base
        unique = list(dict.fromkeys(batch_texts))
        slot = {t: i for i, t in enumerate(unique)}
        input_ids, mask = base.pad([ids[t] for t in unique])
        start = min(min(a.layers) for a in batch_adapters)
        shared = encode_prefix(base, input_ids, mask, start)
        expand = torch.tensor([slot[t] for t in batch_texts], device=base.device)
        input_ids, mask, hidden = input_ids[expand], mask[expand], shared[expand]

        rows_of: dict[Adapter, list[int]] = {}  # modules hash by identity
        for row, adapter in enumerate(batch_adapters):
            rows_of.setdefault(adapter, []).append(row)
        groups = [(adapter, torch.tensor(rows, device=base.device)) for adapter, rows in rows_of.items()]
        last = run_from(base, hidden, start, input_ids, mask, Edits(groups, mask))

        preds: list[Prediction | SpanPrediction | None] = [None] * len(batch_adapters)
        for adapter, rows in groups:
            answers: list[Prediction | SpanPrediction]
            if adapter.kind == "spans":
                which = [batch_texts[r] for r in rows.tolist()]
                answers = [*decode(adapter.head(last[rows]), [alignments[t] for t in which],
                                   [texts[t] for t in which], adapter.label_names,
                                   review_thresholds.get(adapter, DEFAULT_REVIEW_THRESHOLD))]
            else:
                answers = [*adapter.predictions(adapter.head(last[rows], mask[rows]), review_thresholds.get(adapter))]
            for row, answer in zip(rows.tolist(), answers):
                preds[row] = answer
        return preds  # type: ignore[return-value]
