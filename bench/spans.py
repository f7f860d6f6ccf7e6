"""Span labeling on CoNLL-2003: reftag's LoReFT against LoRA, full fine-tuning and a probe (issue 18).

Each cell trains one contender on `--train-rows` sentences (a seeded sample of the training
split; 4,000 by default, 50 and 200 for few-shot) and tags the first `--test-rows` sentences of
the test split (all 3,453 by default). CoNLL rows become text and character spans
(`reft_core.spans.from_conll`: tokens joined by single spaces), and every contender is scored
alike: constrained Viterbi over its per-token BIO scores (`span_decoding.decode`), then entity
micro-F1, exact match, against the gold character spans (`metrics.span_metrics`). Contenders,
each on the bundled MiniLM:

- loreft: `reft_core.train_spans` with its defaults (recorded with the cell), tagged through
          `Tagger.predict_spans`;
- lora:   peft LoRA r=8, alpha 16, dropout 0.05 on query/value, lr 5e-4, + a linear head per token;
- full:   every weight trained, lr 5e-5, + a linear head per token;
- probe:  logistic regression per token on the frozen model's last hidden state (C chosen on
          the held-out sentences' entity F1).

LoRA and full fine-tuning copy reftag's recipe wherever it is not the method itself: the same
held-out sentences (`span_training.held_out_rows`), the same tags and ignored tokens, length-
bucketed batches of 32, `epochs` epochs but at least `min_steps` steps, 10 % warm-up then linear
decay, a check about 20 times (at least once an epoch) with early stopping on the held-out score
(`span_training.stopping_score`: entity micro-F1, ties to the lower loss) after `patience` checks
without gain, the best check kept — but with fewer than `EARLY_STOPPING_MIN_EVAL` (30) held-out
sentences (50 training sentences hold out 8) no stopping: the whole budget, the last weights;
the head trains at reftag's lr.

Speed: each contender tags the first `--speed-rows` test sentences (500 by default; F1 is
always on every test sentence, tagged once) in batches of 64 sorted by length (tokenizing and
decoding included); `× bare` is its sentences per second over the bare model's forward pass on
the same batches (no head, no decoding); the two are timed in turn, three times, and the
fastest run of each counts.

Every cell is one JSON line in bench/measured/spans.jsonl, appended as it finishes; `--resume`
skips the cells already there, `--table` prints the table from the file.

    python -m bench.spans --train-rows 4000 --threads 1
    python -m bench.spans --train-rows 50,200 --seeds 0,1,2 --threads 1
    python -m bench.spans --table
"""
from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reft_core import Base, Tagger, TrainConfig, load_base, train_spans
from reft_core.bases import BUNDLED, MINILM
from reft_core.metrics import span_metrics
from reft_core.span_decoding import decode
from reft_core.span_training import EARLY_STOPPING_MIN_EVAL, IGNORE, held_out_rows, stopping_score, tag_targets
from reft_core.spans import Alignment, Span, SpanPrediction, align, bio_tags, from_conll
from reft_core.training import length_batches, warmup_then_decay

from .common import BASELINE_ENCODERS, BASELINE_LR, DEFAULTS, command_line, machine, markdown_table
from .data import label_names, read_jsonl

DATA = "conll2003"
CONTENDERS = ["loreft", "lora", "full", "probe"]
RESULTS = Path(__file__).resolve().parent / "measured" / "spans.jsonl"
TAG_BATCH = 64
PROBE_C = (0.1, 1.0, 10.0)


# -- data ------------------------------------------------------------------------------------------------------
class Sentences:
    def __init__(self, rows: Sequence[dict[str, Any]]):
        converted = [from_conll(r["tokens"], r["tags"]) for r in rows]
        self.texts = [text for text, _ in converted]
        self.spans = [spans for _, spans in converted]


def entity_types(name: str = DATA) -> list[str]:
    """The entity types of a BIO tag list, in order of first appearance (PER, ORG, LOC, MISC)."""
    return list(dict.fromkeys(tag[2:] for tag in label_names(name) if tag != "O"))


def sample(train_rows: int, seed: int, test_rows: int | None) -> tuple[Sentences, Sentences]:
    rows = read_jsonl(DATA, "train")
    return Sentences(random.Random(seed).sample(rows, min(train_rows, len(rows)))), \
        Sentences(read_jsonl(DATA, "test", test_rows))


def score(gold: Sequence[Sequence[Span]], predicted: Sequence[SpanPrediction], labels: list[str]) -> dict[str, Any]:
    return span_metrics(gold, [[s.span for s in p.spans] for p in predicted], labels)


# -- tagging any per-token scorer, and the bare forward pass ------------------------------------------------------
Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (input_ids, mask) → (B, T, tags) logits


def tag_with(base: Base, scorer: Scorer, texts: Sequence[str], labels: list[str],
             alignments: Sequence[Alignment] | None = None) -> list[SpanPrediction]:
    alignments = alignments or align(base.tokenizer, texts, DEFAULTS.max_length, base.text_prefix)
    order = sorted(range(len(texts)), key=lambda i: len(alignments[i].ids))
    out: list[SpanPrediction | None] = [None] * len(texts)
    with torch.inference_mode():
        for lo in range(0, len(order), TAG_BATCH):
            rows = order[lo:lo + TAG_BATCH]
            logits = scorer(*base.pad([alignments[i].ids for i in rows]))
            for i, p in zip(rows, decode(logits, [alignments[i] for i in rows], [texts[i] for i in rows], labels)):
                out[i] = p
    return out  # type: ignore[return-value]


def bare_seconds(base: Base, texts: Sequence[str]) -> float:
    """The bare model's forward pass over the texts, batched as tagging batches them."""
    t0 = time.perf_counter()
    ids = base.tokenize(list(texts), DEFAULTS.max_length)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    with torch.inference_mode():
        for lo in range(0, len(order), TAG_BATCH):
            input_ids, mask = base.pad([ids[i] for i in order[lo:lo + TAG_BATCH]])
            base.model(input_ids=input_ids, attention_mask=mask)
    return time.perf_counter() - t0


def timed(base: Base, tag: Callable[[Sequence[str]], list[SpanPrediction]], texts: Sequence[str],
          repeats: int = 3) -> tuple[list[SpanPrediction], float, float]:
    """The tagged texts, and the least seconds of `repeats` runs of tagging them and of the bare
    forward pass over them, the two taken in turn so that both meet the same machine load."""
    tag_seconds, bare = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predicted = tag(texts)
        tag_seconds.append(time.perf_counter() - t0)
        bare.append(bare_seconds(base, texts))
    return predicted, min(tag_seconds), min(bare)


# -- contenders --------------------------------------------------------------------------------------------------------
def run_loreft(base: Base, train: Sentences, labels: list[str], seed: int) -> dict[str, Any]:
    config = {"seed": seed}
    t0 = time.perf_counter()
    adapter = train_spans(base, train.texts, train.spans, labels, config=config)
    seconds = time.perf_counter() - t0
    params = adapter.param_count
    return {"tag": lambda texts: Tagger(base, batch_size=TAG_BATCH).predict_spans(adapter, texts),
            "train_seconds": seconds,
            "params": {"adapter": params["intervention"], "head": params["head"], "total": params["total"]},
            "details": {"recipe": {**TrainConfig().to_dict(), **config}, "layers": adapter.layers,
                        "steps_run": adapter.metrics["steps_run"], "held_out_f1": adapter.metrics.get("micro_f1"),
                        "spans_dropped": adapter.metrics["spans_dropped"], "adapter_bytes": adapter.size_bytes()}}


class TokenClassifier(nn.Module):
    """An encoder (trainable in whole or through LoRA) + a linear head at every token."""

    def __init__(self, encoder: nn.Module, hidden_size: int, n_tags: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(hidden_size, n_tags)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state)


def finetune_tokens(base: Base, method: str, train: Sentences, labels: list[str], seed: int) -> dict[str, Any]:
    """LoRA or full fine-tuning of a token classifier with reftag's loop (module docstring)."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = TokenClassifier(BASELINE_ENCODERS[method](base), base.hidden_size, len(bio_tags(labels))).to(base.device)
    model.train()
    alignments = align(base.tokenizer, train.texts, DEFAULTS.max_length, base.text_prefix)
    targets, _ = tag_targets(alignments, train.spans, labels)
    lengths = [len(a.ids) for a in alignments]
    train_rows, eval_rows = held_out_rows(len(train.texts), DEFAULTS.eval_fraction, seed)
    encoder = [p for p in model.encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": encoder, "lr": BASELINE_LR[method]},
                                   {"params": list(model.head.parameters()), "lr": DEFAULTS.lr}], weight_decay=0.0)
    per_epoch = math.ceil(len(train_rows) / DEFAULTS.batch_size)
    total = max(per_epoch * DEFAULTS.epochs, DEFAULTS.min_steps)
    check_every = max(per_epoch, math.ceil(total / 20))
    schedule = warmup_then_decay(optimizer, total)

    def held_out_score() -> float:
        """`span_training.stopping_score` of the held-out sentences, as reftag's own runs stop."""
        model.eval()
        predicted, loss = [], 0.0
        with torch.inference_mode():
            for lo in range(0, len(eval_rows), TAG_BATCH):
                rows = eval_rows[lo:lo + TAG_BATCH]
                logits = model(*base.pad([alignments[i].ids for i in rows])).float()
                y = targets[rows, : logits.shape[1]].to(base.device)
                loss += F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE).item() * len(rows)
                predicted += decode(logits, [alignments[i] for i in rows], [train.texts[i] for i in rows], labels)
        model.train()
        f1 = score([train.spans[i] for i in eval_rows], predicted, labels)["micro_f1"]
        return stopping_score(f1, loss / len(eval_rows))

    keep = lambda k: k.startswith("head.") or "lora_" in k or method == "full"  # noqa: E731
    best, best_state, stale, step, checks = -1.0, None, 0, 0, []
    # as reftag: too few held-out sentences to stop on → the whole budget, the last weights kept
    patience = DEFAULTS.patience if len(eval_rows) >= EARLY_STOPPING_MIN_EVAL else math.inf
    while step < total and stale < patience:
        for rows in length_batches(lengths, train_rows, DEFAULTS.batch_size, rng):
            logits = model(*base.pad([alignments[i].ids for i in rows]))
            y = targets[rows, : logits.shape[1]].to(base.device)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=IGNORE)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if eval_rows and (step % check_every == 0 or step == total):
                check = held_out_score()
                checks.append((step, round(check, 5)))
                if check > best:
                    best, stale = check, 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items() if keep(k)}
                else:
                    stale += 1
            if step >= total or stale >= patience:
                break
    if best_state is not None and patience != math.inf:
        model.load_state_dict(best_state, strict=False)
    model.eval()
    trainable = sum(p.numel() for p in encoder)
    head = sum(p.numel() for p in model.head.parameters())
    return {"model": model, "train_seconds": time.perf_counter() - t0,
            "params": {"adapter": trainable, "head": head, "total": trainable + head},
            "details": {"steps_run": step, "checks": checks, "lr": BASELINE_LR[method]}}


def run_baseline(method: str) -> Callable[..., dict[str, Any]]:
    def run(base: Base, train: Sentences, labels: list[str], seed: int) -> dict[str, Any]:
        tuned = finetune_tokens(base, method, train, labels, seed)
        model = tuned.pop("model")
        return {**tuned, "tag": lambda texts: tag_with(base, model, texts, labels)}
    return run


def last_hidden(base: Base) -> Scorer:
    return lambda input_ids, mask: base.model(input_ids=input_ids, attention_mask=mask).last_hidden_state


def token_features(base: Base, alignments: Sequence[Alignment]) -> tuple[np.ndarray, list[int]]:
    """The frozen model's last hidden state at every content token, stacked; and each text's count."""
    order = sorted(range(len(alignments)), key=lambda i: len(alignments[i].ids))
    per_text: list[np.ndarray | None] = [None] * len(alignments)
    with torch.inference_mode():
        for lo in range(0, len(order), TAG_BATCH):
            rows = order[lo:lo + TAG_BATCH]
            hidden = last_hidden(base)(*base.pad([alignments[i].ids for i in rows])).float().cpu()
            for j, i in enumerate(rows):
                per_text[i] = hidden[j, alignments[i].content].numpy()
    return np.concatenate(per_text), [len(a.content) for a in alignments]  # type: ignore[arg-type]


def run_probe(base: Base, train: Sentences, labels: list[str], seed: int) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    tags = bio_tags(labels)
    alignments = align(base.tokenizer, train.texts, DEFAULTS.max_length, base.text_prefix)
    targets, _ = tag_targets(alignments, train.spans, labels)
    x, counts = token_features(base, alignments)
    y = np.concatenate([targets[i, a.content].numpy() for i, a in enumerate(alignments)])
    text_of = np.repeat(np.arange(len(alignments)), counts)
    train_rows, eval_rows = held_out_rows(len(train.texts), DEFAULTS.eval_fraction, seed)
    fit_tokens, eval_tokens = np.isin(text_of, train_rows), np.isin(text_of, eval_rows)

    def scorer(clf: Any) -> Scorer:
        """(B, T, tags) log-probabilities from the frozen last hidden state (tags absent from the fit: −30)."""
        def forward(input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            hidden = last_hidden(base)(input_ids, mask).float().cpu()
            flat = clf.predict_log_proba(hidden.reshape(-1, hidden.shape[-1]).numpy())
            out = np.full((flat.shape[0], len(tags)), -30.0, dtype=np.float32)
            out[:, clf.classes_.astype(int)] = flat
            return torch.from_numpy(out).reshape(*hidden.shape[:2], len(tags))
        return forward

    best = None
    for c in PROBE_C:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000)).fit(x[fit_tokens],
                                                                                                y[fit_tokens])
        if not eval_tokens.any():
            best = (0.0, c, clf)
            break
        f1 = score([train.spans[i] for i in eval_rows],
                   tag_with(base, scorer(clf), [train.texts[i] for i in eval_rows], labels,
                            [alignments[i] for i in eval_rows]), labels)["micro_f1"]
        if best is None or f1 > best[0]:
            best = (f1, c, clf)
    assert best is not None
    _, c, clf = best
    seconds = time.perf_counter() - t0
    head = (base.hidden_size + 1) * len(tags)
    return {"tag": lambda texts: tag_with(base, scorer(clf), texts, labels), "train_seconds": seconds,
            "params": {"adapter": 0, "head": head, "total": head}, "details": {"C": c}}


RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {
    "loreft": run_loreft, "lora": run_baseline("lora"), "full": run_baseline("full"), "probe": run_probe}


# -- results -------------------------------------------------------------------------------------------------------
def read_results() -> list[dict[str, Any]]:
    if not RESULTS.exists():
        return []
    return [json.loads(line) for line in RESULTS.read_text(encoding="utf-8").splitlines() if line.strip()]


def append_result(cell: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a", encoding="utf-8") as f:
        f.write(json.dumps(cell, ensure_ascii=False) + "\n")


Cell = tuple[str, int, int, str, int]  # base, train rows, test rows, contender, seed


def cell_key(cell: dict[str, Any]) -> Cell:
    return cell["base"], cell["train_rows"], cell["n_test"], cell["contender"], cell["seed"]


def table(cells: list[dict[str, Any]]) -> str:
    latest = {cell_key(c): c for c in cells}  # a re-run replaces its cell
    groups: dict[tuple[str, int, int, str], list[dict[str, Any]]] = defaultdict(list)
    for (base, n_train, n_test, contender, _seed), cell in latest.items():
        groups[(base, n_train, n_test, contender)].append(cell)
    rows = []
    for key in sorted(groups, key=lambda k: (k[0], -k[1], k[2], CONTENDERS.index(k[3]))):
        runs = groups[key]
        lora = groups.get((*key[:3], "lora"), [])
        lora_params = lora[0]["params"]["adapter"] if lora else 0
        params = runs[0]["params"]
        scores = [r["score"] for r in runs]
        sd = f" ± {statistics.stdev(scores):.3f}" if len(scores) > 1 else ""
        m = runs[0]["metrics"]
        rows.append([key[0], key[1], key[2], key[3], f"{statistics.mean(scores):.4f}{sd} ({len(scores)})",
                     f"{m['precision']:.3f} / {m['recall']:.3f}", f"{params['adapter']:,}", f"{params['head']:,}",
                     f"{lora_params / params['adapter']:.3g}×" if lora_params and params["adapter"] else "",
                     f"{statistics.mean(r['train_seconds'] for r in runs):.0f}",
                     f"{statistics.mean(r['sentences_per_second'] for r in runs):.0f}",
                     f"{statistics.mean(r['speed_vs_bare'] for r in runs):.2f}"])
    return markdown_table(["base", "train sentences", "test sentences", "contender",
                           "entity micro-F1 (mean ± sd, seeds)", "P / R (first seed)", "adapter params",
                           "head params", "LoRA adapter / this", "train s", "tagged sentences/s", "× bare forward"],
                          rows)


# -- main -------------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-rows", default="4000", help="training sentences, comma-separated (e.g. 50,200,4000)")
    parser.add_argument("--test-rows", type=int, default=None, help="the first N test sentences (default: all)")
    parser.add_argument("--speed-rows", type=int, default=500,
                        help="time tagging and the bare forward pass on the first N test sentences (3 runs each)")
    parser.add_argument("--seeds", default="0", help="comma-separated: the sample, the held-out split, the init")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--base", default=MINILM, choices=sorted(BUNDLED))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (recorded with each cell)")
    parser.add_argument("--resume", action="store_true", help="skip the cells bench/measured/spans.jsonl holds")
    parser.add_argument("--table", action="store_true", help="print the table from bench/measured/spans.jsonl")
    args = parser.parse_args(argv)
    unknown = set(args.contenders.split(",")) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}; known: {CONTENDERS}")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.table:
        print(table(read_results()))
        return read_results()
    command = command_line("bench.spans")
    if args.threads:
        torch.set_num_threads(args.threads)
    base = load_base(args.base)
    labels = entity_types()
    done = {cell_key(c) for c in read_results()} if args.resume else set()
    made = []
    for n_train in [int(x) for x in args.train_rows.split(",")]:
        for seed in [int(x) for x in args.seeds.split(",")]:
            train, test = sample(n_train, seed, args.test_rows)
            for contender in args.contenders.split(","):
                if (base.name, n_train, len(test.texts), contender, seed) in done:
                    continue
                torch.manual_seed(seed)
                result = RUNNERS[contender](base, train, labels, seed)
                tag = result.pop("tag")
                predicted = tag(test.texts)
                metrics = score(test.spans, predicted, labels)
                timed_texts = test.texts[: args.speed_rows]
                _, result["tag_seconds"], bare = timed(base, tag, timed_texts)
                cell = {"base": base.name, "data": DATA, "contender": contender, "train_rows": n_train, "seed": seed,
                        "n_train": len(train.texts), "n_test": len(test.texts), "score": metrics["micro_f1"],
                        "metrics": metrics, **result,
                        "n_timed": len(timed_texts),
                        "sentences_per_second": round(len(timed_texts) / result["tag_seconds"], 1),
                        "bare_sentences_per_second": round(len(timed_texts) / bare, 1),
                        "speed_vs_bare": round(bare / result["tag_seconds"], 3),
                        "command": command, "machine": machine()}
                append_result(cell)
                made.append(cell)
                print(f"{base.name} {n_train} sentences seed {seed} {contender}: F1 {cell['score']:.4f} "
                      f"(train {cell['train_seconds']:.1f} s, tag {cell['sentences_per_second']} sent/s, "
                      f"{cell['speed_vs_bare']}× bare)", flush=True)
    print(f"\ncommand: {command}\n")
    print(table(read_results()))
    return made


if __name__ == "__main__":
    main()
