"""The Chinese news fixture (tests/fixtures/news_zh) on each bundled base: why "auto" matters.

reft_core's default recipe on the fixture's 240 training headlines (8 topics), tested on its 240
test headlines; one torch thread. The e2e test tests/e2e/test_chinese_news.py sets its accuracy
bar from these figures.

    python -m bench.zh_fixture
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from reft_core import Tagger, load_base, train
from reft_core.bases import BUNDLED

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "news_zh"


def rows(split: str) -> list[dict]:
    with open(FIXTURE / f"{split}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main(seed: int = 0) -> None:
    torch.set_num_threads(1)
    train_rows, test_rows = rows("train"), rows("test")
    names = json.loads((FIXTURE / "labels.json").read_text(encoding="utf-8"))
    for name in BUNDLED:
        base = load_base(name)
        t0 = time.perf_counter()
        adapter = train(base, [r["text"] for r in train_rows], [r["label"] for r in train_rows], names,
                        config={"seed": seed})
        seconds = time.perf_counter() - t0
        predicted = Tagger(base).predict(adapter, [r["text"] for r in test_rows])
        accuracy = sum(p.labels == [r["label"]] for p, r in zip(predicted, test_rows)) / len(test_rows)
        print(f"{name}: test accuracy {accuracy:.3f}, train {seconds:.0f} s "
              f"({adapter.metrics.get('evaluation')})", flush=True)


if __name__ == "__main__":
    main()
