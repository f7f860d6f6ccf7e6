"""Interop with other labeling tools: every file format reftag reads examples from and writes
results to, in one table. A format is one row of `FORMATS`; its reader and writer live in the
module of its tool (`plain` for reftag's own JSON, JSON Lines and CSV), as functions of text.
The API's query parameters and the OpenAPI enums are built from this table, and which formats
can carry which kind of label set's results (`kinds`): a spans set exports as JSONL, CSV (a row
per span), Label Studio tasks, doccano and CoNLL; CoNLL carries nothing but spans."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from store.models import LabelSetKind

from ..errors import ApiError
from . import argilla, conll, doccano, label_studio, plain
from .document import ExportSpec, Reader, ReadOptions, Upload, Writer

__all__ = ["EXAMPLE_FORMATS", "ExportSpec", "FORMATS", "ReadOptions", "RESULT_FORMATS", "Upload", "example_reader",
           "write_results"]


@dataclass(frozen=True)
class Format:
    name: str
    media_type: str  # what an export in this format is served as
    suffix: str  # of an export's file name
    read: Reader | None  # upload text → examples
    write: Writer | None  # results → text (None: `json` results are the API's own paged form)
    upload_media: tuple[str, ...] = ()  # Content-Types that mean this format when `?format=` is absent
    upload_doc: str | None = None  # how the API reference describes an upload in it
    kinds: tuple[LabelSetKind, ...] = (LabelSetKind.CLASSIFICATION,)  # the label sets whose results it writes


BOTH = (LabelSetKind.CLASSIFICATION, LabelSetKind.SPANS)


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("json", "application/json", "json", plain.read_json, None, ("application/json",)),
    Format("jsonl", "application/x-ndjson", "jsonl", plain.read_jsonl, plain.write_jsonl,
           ("application/x-ndjson", "application/jsonl", "application/json-lines", "application/jsonlines"),
           'JSONL: one {"text", "label"}, {"text", "labels"} or {"text", "spans"} object per line', BOTH),
    Format("csv", "text/csv; charset=utf-8", "csv", plain.read_csv, plain.write_csv, ("text/csv",),
           "CSV with a header row: text,label or text,labels (labels `|`-separated or a JSON list); for spans "
           "text,start,end,label, one row per span", BOTH),
    Format("label_studio", "application/json", "json", label_studio.read, label_studio.write, kinds=BOTH),
    Format("label_studio_min", "application/json", "min.json", label_studio.read_min, label_studio.write_min),
    Format("label_studio_csv", "text/csv; charset=utf-8", "csv", label_studio.read_csv, label_studio.write_csv),
    Format("doccano", "application/x-ndjson", "jsonl", doccano.read, doccano.write, kinds=BOTH),
    Format("argilla", "application/json", "json", argilla.read, argilla.write),
    Format("conll", "application/x-ndjson", "jsonl", conll.read, conll.write, kinds=(LabelSetKind.SPANS,)),
)}
EXAMPLE_FORMATS = tuple(name for name, f in FORMATS.items() if f.read is not None)
RESULT_FORMATS = tuple(name for name, f in FORMATS.items() if f.write is not None)
UPLOAD_MEDIA = {f.upload_media[0]: f.upload_doc for f in FORMATS.values() if f.upload_doc}  # documented uploads
# The values `?format=` takes, as types for the query schemas (and so the OpenAPI enums).
ExampleFormat = Literal[EXAMPLE_FORMATS]  # type: ignore[valid-type]
ResultFormat = Literal[("json", *RESULT_FORMATS)]  # type: ignore[valid-type]


def format_for_media(mimetype: str) -> str:
    """The format an upload's Content-Type names (JSON when it names none of ours)."""
    return next((f.name for f in FORMATS.values() if mimetype in f.upload_media), "json")


def example_reader(name: str) -> Reader:
    """What reads an upload in format `name` as `{"examples": [...]}` (415 for a format that
    has no reader)."""
    reader = FORMATS[name].read if name in FORMATS else None
    if reader is None:
        raise ApiError(415, "unsupported_format",
                       f"format {name!r} is not supported for examples; use one of {sorted(EXAMPLE_FORMATS)}")
    return reader


def write_results(name: str, results: Iterable[dict[str, Any]], spec: ExportSpec) -> Iterable[str]:
    """The export's text, in chunks; 422 at once (before any chunk) for a format that cannot
    carry the label set's kind of results."""
    fmt = FORMATS[name]
    assert fmt.write is not None, f"{name} has no writer"
    kind = LabelSetKind(spec.kind)
    if kind not in fmt.kinds:
        able = sorted(n for n, f in FORMATS.items() if f.write is not None and kind in f.kinds)
        if kind == LabelSetKind.SPANS:
            raise ApiError(422, "format_not_for_spans", f"format {name!r} cannot carry spans; a spans label set's "
                           f"results export as json or {', '.join(able)}", [{"pointer": "/format", "in": "query"}])
        raise ApiError(422, "format_only_for_spans", f"format {name!r} carries spans only; a classification label "
                       f"set's results export as json or {', '.join(able)}", [{"pointer": "/format", "in": "query"}])
    return fmt.write(results, spec)
