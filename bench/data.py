"""Reading the shared, human-labelled data sets the benchmarks measure on: `../shared/data`
beside the checkout (the team's copy of SST-2, AG News, GoEmotions, TNEWS and CoNLL-2003;
its README says where each comes from), or the folder REFTAG_DATA_DIR names. They are never
copied into the repo; tests use their own fixtures (tests/fixtures)."""
from __future__ import annotations

import json
import os
from pathlib import Path

DATA_DIR = Path(os.environ.get("REFTAG_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


class DataMissing(FileNotFoundError):
    pass


def folder(name: str) -> Path:
    path = DATA_DIR / name
    if not path.is_dir():
        raise DataMissing(f"benchmark data set {name!r} is not at {path}: the benchmarks read the team's shared "
                          "data sets (../shared/data beside the checkout: SST-2, AG News, GoEmotions, TNEWS, "
                          "CoNLL-2003, each with its source in that folder's README), or set REFTAG_DATA_DIR")
    return path


def read_jsonl(name: str, split: str, limit: int | None = None) -> list[dict]:
    rows = []
    with open(folder(name) / f"{split}.jsonl", encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def label_names(name: str) -> list[str]:
    return json.loads((folder(name) / "labels.json").read_text(encoding="utf-8"))


def row_labels(row: dict) -> str | list[str]:
    return row["labels"] if "labels" in row else row["label"]
