"""Train a default adapter on SST-2 with the bundled MiniLM and tag the full test split.

    python -m bench.reft_core [--train-rows 4000] [--config '{"rank": 4}']
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from reft_core import Tagger, load_base, train

from .data import label_names, read_jsonl, row_labels


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="sst2")
    parser.add_argument("--train-rows", type=int, default=4000)
    parser.add_argument("--config", default="{}")
    args = parser.parse_args()
    torch.manual_seed(0)
    base = load_base()
    train_rows = read_jsonl(args.data, "train", args.train_rows)
    test_rows = read_jsonl(args.data, "test")
    names = label_names(args.data)

    t0 = time.perf_counter()
    adapter = train(base, [r["text"] for r in train_rows], [row_labels(r) for r in train_rows], names,
                    multi_label="labels" in train_rows[0], config=json.loads(args.config))
    train_seconds = time.perf_counter() - t0

    tagger = Tagger(base)
    texts = [r["text"] for r in test_rows]
    t0 = time.perf_counter()
    preds = tagger.predict(adapter, texts)
    tag_seconds = time.perf_counter() - t0
    correct = sum(p.labels == ([r["label"]] if "label" in r else sorted(r["labels"])) for p, r in zip(preds, test_rows))

    params = adapter.param_count
    print(f"command: python -m bench.reft_core {' '.join(sys.argv[1:])}")
    print("| data | train rows | test rows | accuracy | intervention params | head params | adapter bytes | train s "
          "| epochs | tag items/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.data} | {len(train_rows)} | {len(test_rows)} | {correct / len(test_rows):.4f} "
          f"| {params['intervention']} | {params['head']} | {adapter.size_bytes()} | {train_seconds:.1f} "
          f"| {adapter.metrics['epochs_run']} | {len(texts) / tag_seconds:.0f} |")
    print("held-out:", json.dumps({k: adapter.metrics[k] for k in ("accuracy", "macro_f1", "loss_curve")}))


if __name__ == "__main__":
    main()
