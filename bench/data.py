"""Reading the shared, human-labelled data sets (`../shared/data`, never copied into the repo)."""
from __future__ import annotations

import json
import os
from pathlib import Path

DATA_DIR = Path(os.environ.get("REFTAG_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def read_jsonl(name: str, split: str, limit: int | None = None) -> list[dict]:
    rows = []
    with open(DATA_DIR / name / f"{split}.jsonl", encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def label_names(name: str) -> list[str]:
    return json.loads((DATA_DIR / name / "labels.json").read_text(encoding="utf-8"))


def row_labels(row: dict) -> str | list[str]:
    return row["labels"] if "labels" in row else row["label"]
