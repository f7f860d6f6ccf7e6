"""From per-token tag scores to spans: the best BIO sequence that is valid, and its spans' scores.

A token head scores every tag at every token independently, so the most likely tag of each
token can make an invalid sequence (I-PER after O, I-ORG after B-PER). `viterbi` finds the
sequence of highest total log-probability among the valid ones: I-x only after B-x or I-x, and
never first. O and every B-x may follow anything, so a valid sequence always exists.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .spans import DEFAULT_REVIEW_THRESHOLD, Alignment, ScoredSpan, SpanPrediction, bio_tags, tag_parts, tag_runs


def bio_constraints(labels: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(allowed (K, K): allowed[i, j] — tag j may follow tag i; first (K,): may start a text)."""
    parts = [tag_parts(tag) for tag in bio_tags(labels)]
    allowed = torch.tensor([[b[0] != "I" or (a[1] == b[1] and a[0] != "O") for b in parts] for a in parts])
    first = torch.tensor([p[0] != "I" for p in parts])
    return allowed, first


def viterbi(log_probs: torch.Tensor, lengths: Sequence[int], labels: Sequence[str]) -> list[list[int]]:
    """Best valid tag indices per row. log_probs (B, L, K): each row's tokens first, `lengths[b]` of them."""
    allowed, first = bio_constraints(labels)
    log_probs = log_probs.float().cpu()
    if log_probs.shape[1] == 0:
        return [[] for _ in lengths]
    barred = torch.tensor(float("-inf"))
    transition = torch.where(allowed, 0.0, barred)  # (K, K)
    score = log_probs[:, 0] + torch.where(first, 0.0, barred)
    lengths_t = torch.tensor(list(lengths))
    back = []
    for t in range(1, log_probs.shape[1]):
        best, arg = (score.unsqueeze(2) + transition).max(1)  # over the previous tag
        back.append(arg)
        score = torch.where((t < lengths_t).unsqueeze(1), best + log_probs[:, t], score)
    paths: list[list[int]] = []
    for b, n in enumerate(lengths):
        if n == 0:
            paths.append([])
            continue
        tag = int(score[b].argmax())
        path = [tag]
        for t in range(n - 1, 0, -1):
            tag = int(back[t - 1][b, tag])
            path.append(tag)
        paths.append(path[::-1])
    return paths


def decode(logits: torch.Tensor, alignments: Sequence[Alignment], texts: Sequence[str], labels: Sequence[str],
           review_threshold: float = DEFAULT_REVIEW_THRESHOLD) -> list[SpanPrediction]:
    """Spans of each row of a right-padded batch. logits (B, T, K): column i is token i of that
    row's alignment. Each span's score is the least probability of its tokens' tags."""
    tags = bio_tags(labels)
    probs = torch.softmax(logits.float(), dim=-1).cpu()
    lengths = [len(a.content) for a in alignments]
    width = max(lengths, default=0)
    content = torch.zeros(len(alignments), width, len(tags))
    for b, alignment in enumerate(alignments):
        content[b, : lengths[b]] = probs[b, alignment.content]
    paths = viterbi(content.clamp(min=1e-12).log(), lengths, labels)
    out = []
    for b, (alignment, path, text) in enumerate(zip(alignments, paths, texts)):
        chosen = content[b, torch.arange(len(path)), torch.tensor(path, dtype=torch.long)].tolist() if path else []
        spans = []
        for first, last, label in tag_runs([tags[k] for k in path]):
            start, end = alignment.offsets[alignment.content[first]][0], alignment.offsets[alignment.content[last]][1]
            spans.append(ScoredSpan(start, end, label, text[start:end], min(chosen[first:last + 1])))
        confidence = min(chosen, default=1.0)
        out.append(SpanPrediction(spans, confidence < review_threshold, confidence))
    return out
