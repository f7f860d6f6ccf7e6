"""Request and response schemas, declared once. Requests are validated with them; responses
are built through them; `/openapi.json` is generated from them (see api/openapi.py).

Pydantic checks shape and types (strictly: "5" is not an int). Limits that come from settings
(items per job, characters per text) are checked by each request's `check(settings)`, which
reports every problem with a JSON pointer.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from flask import current_app, request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from store.catalog import LabelSetView
from store.models import Adapter, Job, Result
from service.settings import Settings

from .errors import ApiError, invalid, json_pointer, validation_error

MAX_META_BYTES = 16_384
MAX_JSON_DEPTH = 32
MAX_INT32 = 2**31 - 1


# --- strings that are safe to store -----------------------------------------------------------


def storable(value: str) -> str:
    """Refuse what a database cannot hold or would silently mangle: NUL characters and lone
    surrogates (JSON `\\ud800` escapes that are not valid Unicode)."""
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "must not contain NUL (\\u0000) characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("invalid_unicode", "is not valid Unicode (lone surrogate)") from None
    return value


def not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("empty_text", "must not be empty or only whitespace")
    return value


# The documented form of `not_blank` (JSON Schema search semantics: some non-space character).
NOT_BLANK = {"minLength": 1, "pattern": r"\S"}
StoredStr = Annotated[str, AfterValidator(storable)]
Name = Annotated[str, Field(min_length=1, max_length=200, json_schema_extra=NOT_BLANK), AfterValidator(storable),
                 AfterValidator(not_blank)]
Text = Annotated[str, Field(json_schema_extra=NOT_BLANK), AfterValidator(storable), AfterValidator(not_blank)]


def json_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((json_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((json_depth(v) for v in value), default=0)
    return 0


def json_strings(value: Any) -> Any:
    """Every string in a JSON value, object keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, child in value.items():
            yield key
            yield from json_strings(child)
    elif isinstance(value, list):
        for child in value:
            yield from json_strings(child)


def storable_meta(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if json_depth(value) > 8:
        raise PydanticCustomError("meta_too_deep", "meta is nested deeper than 8 levels")
    for text in json_strings(value):
        storable(text)
    if len(json.dumps(value, ensure_ascii=False).encode("utf-8")) > MAX_META_BYTES:
        raise PydanticCustomError("meta_too_large", f"meta is larger than {MAX_META_BYTES} bytes as JSON")
    return value


class RequestModel(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    def check(self, settings: Settings) -> None:
        """Limits from settings; raise ApiError listing every problem."""


def text_problems(texts: list[tuple[str, str]], settings: Settings) -> list[dict[str, Any]]:
    return [
        {"pointer": pointer, "message": f"text has {len(text)} characters; the limit is {settings.max_text_chars}",
         "type": "text_too_long"}
        for pointer, text in texts if len(text) > settings.max_text_chars
    ]


def too_many(what: str, count: int, limit: int, pointer: str, setting: str) -> ApiError:
    return ApiError(413, f"too_many_{what}", f"{count} {what} in one request; the limit is {limit} ({setting})",
                    [{"pointer": pointer, "message": f"at most {limit} {what}", "limit": limit}])


# --- training config --------------------------------------------------------------------------


class TrainConfig(RequestModel):
    """Training overrides; every field optional (defaults in docs/internals.md)."""

    intervention: Literal["loreft", "direft", "red"] | None = None
    layers: Literal["auto"] | Annotated[list[Annotated[int, Field(ge=0, le=1000)]], Field(min_length=1, max_length=256)] | None = None
    positions: Annotated[str, Field(pattern=r"^(all|f\d{1,3}\+l\d{1,3})$")] | None = None
    rank: Annotated[int, Field(ge=1, le=256)] | None = None
    epochs: Annotated[int, Field(ge=1, le=100)] | None = None
    lr: Annotated[float, Field(gt=0, le=1)] | None = None
    dropout: Annotated[float, Field(ge=0, le=0.9)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=1024)] | None = None
    max_length: Annotated[int, Field(ge=8, le=4096)] | None = None
    eval_fraction: Annotated[float, Field(ge=0.05, le=0.5)] | None = None
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    pooling: Literal["auto", "mean", "cls", "last"] | None = None
    patience: Annotated[int, Field(ge=1, le=100)] | None = None

    def overrides(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


# --- label sets -------------------------------------------------------------------------------


class LabelIn(RequestModel):
    name: Name
    description: Annotated[StoredStr, Field(max_length=2000)] | None = None


class LabelSetCreate(RequestModel):
    name: Name
    multi_label: bool = False
    labels: Annotated[list[LabelIn], Field(json_schema_extra={"minItems": 2})]  # checked in check(), by name
    config: TrainConfig | None = None

    def check(self, settings: Settings) -> None:
        if len(self.labels) < 2:
            raise invalid([{"pointer": "/labels", "type": "too_few_labels",
                            "message": f"a label set needs at least 2 labels, got {len(self.labels)}"}],
                          code="too_few_labels")
        if len(self.labels) > settings.max_labels:
            raise invalid([{"pointer": "/labels", "type": "too_many_labels",
                            "message": f"at most {settings.max_labels} labels (REFTAG_MAX_LABELS)"}])
        seen: set[str] = set()
        duplicates = []
        for i, label in enumerate(self.labels):
            if label.name in seen:
                duplicates.append({"pointer": f"/labels/{i}/name", "type": "duplicate_label",
                                   "message": f"label {label.name!r} appears more than once"})
            seen.add(label.name)
        if duplicates:
            raise invalid(duplicates, code="duplicate_labels")


class LabelOut(BaseModel):
    name: str
    description: str | None


class ActiveAdapterOut(BaseModel):
    version: int
    metrics: dict[str, Any]


class LabelSetOut(BaseModel):
    id: str
    name: str
    multi_label: bool
    labels: list[LabelOut]
    config: dict[str, Any]
    example_count: int
    active_adapter: ActiveAdapterOut | None
    created_at: datetime


class LabelSetList(BaseModel):
    label_sets: list[LabelSetOut]


# --- examples ---------------------------------------------------------------------------------


class ExampleIn(RequestModel):
    """One labelled text: `label` for single-label sets, `labels` for multi-label ones (either is
    accepted for both when it makes sense). Other fields are ignored, so exports load as-is."""

    model_config = ConfigDict(strict=True, extra="ignore", json_schema_extra={"oneOf": [
        {"required": ["label"], "properties": {"label": {"type": "string"}}},
        {"required": ["labels"], "properties": {"labels": {"type": "array"}}},
    ]})

    text: Text
    label: Annotated[StoredStr, Field(max_length=200)] | None = None
    labels: list[Annotated[StoredStr, Field(max_length=200)]] | None = None

    @model_validator(mode="after")
    def _one_of_label_or_labels(self) -> ExampleIn:
        if (self.label is None) == (self.labels is None):
            raise PydanticCustomError("label_required", "give exactly one of `label` or `labels`")
        return self

    def label_names(self) -> list[str]:
        return [self.label] if self.label is not None else list(self.labels or [])


class ExamplesUpload(RequestModel):
    examples: Annotated[list[ExampleIn], Field(min_length=1)]

    def check(self, settings: Settings) -> None:
        if len(self.examples) > settings.max_examples_per_request:
            raise too_many("examples", len(self.examples), settings.max_examples_per_request,
                           "/examples", "REFTAG_MAX_EXAMPLES")
        problems = text_problems([(f"/examples/{i}/text", e.text) for i, e in enumerate(self.examples)], settings)
        if problems:
            raise invalid(problems)

    def pairs(self) -> list[tuple[str, list[str]]]:
        return [(e.text, e.label_names()) for e in self.examples]


class RejectedRow(BaseModel):
    index: int
    reason: str


class ExamplesAddedOut(BaseModel):
    added: int
    duplicates: int
    rejected: list[RejectedRow]


class TrainRequest(RequestModel):
    config: TrainConfig | None = None


# --- adapters ---------------------------------------------------------------------------------


class AdapterOut(BaseModel):
    version: int
    active: bool
    metrics: dict[str, Any]
    param_count: int
    size_bytes: int
    checksum: str
    train_job_id: str | None
    note: str | None
    created_at: datetime


class AdapterList(BaseModel):
    adapters: list[AdapterOut]
    active_version: int | None


# --- jobs -------------------------------------------------------------------------------------


class JobItemIn(RequestModel):
    id: Annotated[StoredStr, Field(min_length=1, max_length=200)] | Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    text: Text
    meta: Annotated[dict[str, Any] | None, AfterValidator(storable_meta)] = None


class JobCreate(RequestModel):
    label_set_id: Annotated[StoredStr, Field(max_length=64)]
    items: Annotated[list[JobItemIn], Field(min_length=1)]
    adapter_version: Annotated[int, Field(ge=1, le=MAX_INT32)] | None = None

    def item_ids(self) -> list[str]:
        return [str(item.id) if item.id is not None else str(i) for i, item in enumerate(self.items)]

    def check(self, settings: Settings) -> None:
        if len(self.items) > settings.max_job_items:
            raise too_many("items", len(self.items), settings.max_job_items, "/items", "REFTAG_MAX_JOB_ITEMS")
        problems = text_problems([(f"/items/{i}/text", item.text) for i, item in enumerate(self.items)], settings)
        first_seen: dict[str, int] = {}
        for i, item_id in enumerate(self.item_ids()):
            if item_id in first_seen:
                problems.append({"pointer": f"/items/{i}/id", "type": "duplicate_item_id",
                                 "message": f"item id {item_id!r} is also used by /items/{first_seen[item_id]}"})
            else:
                first_seen[item_id] = i
        if problems:
            only_duplicates = all(p["type"] == "duplicate_item_id" for p in problems)
            raise invalid(problems, code="duplicate_item_ids" if only_duplicates else "invalid_request")

    def rows(self) -> list[tuple[str, str, dict[str, Any] | None]]:
        return [(item_id, item.text, item.meta) for item_id, item in zip(self.item_ids(), self.items)]


class Progress(BaseModel):
    total: int
    done: int
    failed: int


class JobOut(BaseModel):
    id: str
    type: Literal["train", "tag"]
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    label_set_id: str
    adapter_version: int | None
    progress: Progress
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: dict[str, Any] | None
    metrics: dict[str, Any] | None
    detail: dict[str, Any] = Field(description="train jobs: step, epoch, loss, eta_seconds as the trainer reports them")


class JobList(BaseModel):
    jobs: list[JobOut]


class JobListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label_set_id: Annotated[str, Field(max_length=64)] | None = None
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None
    type: Literal["train", "tag"] | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50


class ResultOut(BaseModel):
    item_id: str
    labels: list[str]
    scores: dict[str, float]
    needs_review: bool
    adapter_version: int | None
    error: str | None = None


class ResultsPageOut(BaseModel):
    results: list[ResultOut]
    next_cursor: str | None


class ResultsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    cursor: Annotated[str, Field(max_length=64)] | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    format: Literal["json", "jsonl", "csv", "label_studio", "label_studio_min", "label_studio_csv", "doccano",
                    "argilla"] = "json"
    # Where exports in a tool's format put the text and the label (docs/api.md, "Formats").
    text_field: Annotated[str, Field(min_length=1, max_length=200)] = "text"
    label_field: Annotated[str, Field(min_length=1, max_length=200)] = "label"
    to_name: Annotated[str, Field(min_length=1, max_length=200)] = "text"
    bom: bool = Field(False, description="CSV: start with a UTF-8 byte order mark (for Excel)")


# --- predict ----------------------------------------------------------------------------------


class PredictItem(RequestModel):
    id: Annotated[StoredStr, Field(min_length=1, max_length=200)] | Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    text: Text


class PredictRequest(RequestModel):
    label_set_id: Annotated[StoredStr, Field(max_length=64)]
    items: Annotated[list[PredictItem], Field(min_length=1)]
    adapter_version: Annotated[int, Field(ge=1, le=MAX_INT32)] | None = None

    def check(self, settings: Settings) -> None:
        if len(self.items) > settings.max_predict_items:
            raise too_many("items", len(self.items), settings.max_predict_items, "/items", "REFTAG_MAX_PREDICT_ITEMS")
        problems = text_problems([(f"/items/{i}/text", item.text) for i, item in enumerate(self.items)], settings)
        if problems:
            raise invalid(problems)


class PredictOut(BaseModel):
    results: list[ResultOut]


# --- meta -------------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"]


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]]


class ErrorOut(BaseModel):
    error: ErrorBody


# --- parsing a request ------------------------------------------------------------------------


def settings() -> Settings:
    return current_app.config["REFTAG_SETTINGS"]


def json_body(allow_empty: bool = False) -> Any:
    """The request body as JSON, whatever the Content-Type says; 400 when it is not JSON."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if allow_empty:
            return {}
        raise ApiError(400, "malformed_json", "request body is empty; expected a JSON object")
    try:
        return json.loads(raw, parse_constant=reject_constant)
    except RecursionError:
        raise ApiError(400, "malformed_json", "request body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, "malformed_json", f"request body is not valid JSON: {e}") from None


def reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def validate(model: type[RequestModel], data: Any) -> Any:
    if json_depth(data) > MAX_JSON_DEPTH:
        raise ApiError(400, "malformed_json", f"JSON is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        parsed = model.model_validate(data)
    except ValidationError as e:
        raise validation_error(e) from None
    parsed.check(settings())
    return parsed


def parse_body(model: type[RequestModel], allow_empty: bool = False) -> Any:
    return validate(model, json_body(allow_empty))


def parse_query(model: type[BaseModel]) -> Any:
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as e:
        details = [{"pointer": json_pointer(tuple(err["loc"])), "in": "query", "message": err["msg"], "type": err["type"]}
                   for err in e.errors(include_url=False, include_input=False)]
        raise invalid(details) from None


# --- rows → API JSON (one function per resource) ----------------------------------------------


def iso(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; every stored time is UTC.
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


def label_set_json(view: LabelSetView) -> dict[str, Any]:
    ls, active = view.label_set, view.active_adapter
    return LabelSetOut(
        id=ls.id, name=ls.name, multi_label=ls.multi_label,
        labels=[LabelOut(name=label.name, description=label.description) for label in ls.labels],
        config=ls.config or {}, example_count=view.example_count,
        active_adapter=ActiveAdapterOut(version=active.version, metrics=active.metrics or {}) if active else None,
        created_at=iso(ls.created_at),
    ).model_dump(mode="json")


def adapter_json(adapter: Adapter) -> dict[str, Any]:
    return AdapterOut(
        version=adapter.version, active=adapter.is_active, metrics=adapter.metrics or {},
        param_count=adapter.param_count, size_bytes=adapter.size_bytes, checksum=adapter.checksum,
        train_job_id=adapter.train_job_id, note=adapter.note, created_at=iso(adapter.created_at),
    ).model_dump(mode="json")


def job_progress(job: Job) -> Progress:
    """Tag jobs count items; train jobs count optimizer steps, as the trainer reports them
    (early stopping may end before the last planned step: a succeeded job shows done = total)."""
    if job.type == "train":
        detail = job.detail or {}
        total = int(detail.get("total_steps") or 0)
        done = total if job.status == "succeeded" else min(int(detail.get("step") or 0), total)
        return Progress(total=total, done=done, failed=0)
    return Progress(total=job.total, done=job.done, failed=job.failed)


def job_json(job: Job) -> dict[str, Any]:
    return JobOut(
        id=job.id, type=job.type, status=job.status, label_set_id=job.label_set_id,
        adapter_version=job.adapter_version, progress=job_progress(job),
        created_at=iso(job.created_at), started_at=iso(job.started_at), finished_at=iso(job.finished_at),
        error=job.error, metrics=job.metrics, detail=job.detail or {},
    ).model_dump(mode="json")


def result_json(result: Result) -> dict[str, Any]:
    # Plain dict, no model round trip: result exports stream up to max_job_items rows.
    return {"item_id": result.item_id, "labels": result.labels, "scores": result.scores,
            "needs_review": result.needs_review, "adapter_version": result.adapter_version, "error": result.error}
