"""The v1 API's request and response schemas, declared once. Requests are validated with them;
responses are built through them; `/openapi.json` is generated from them (see api/openapi.py).
Field types and body parsing shared with the other parts of the web tier are in api/requests.py;
the training options come from reft_core's own definition (`train_config_schema`)."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic_core import PydanticCustomError

from reft_core import bases
from reft_core.config import Option
from reft_core.config import TrainConfig as CoreTrainConfig
from service.settings import Settings
from store.label_sets import LabelSetView, NewExample
from store.loop import MAX_SUGGEST
from store.models import Adapter, Job, JobOutput, JobStatus, JobType, LabelSetKind, Result, as_utc

from ..errors import invalid
from ..interop import ExampleFormat, ResultFormat
from ..requests import MAX_INT32, CountLimit, ItemId, Name, RequestModel, StoredStr, Text, storable_meta, text_problems

# --- training config --------------------------------------------------------------------------


def option_type(spec: Option) -> Any:
    """The JSON type an option takes, with its bounds and choices written into the schema (they
    are checked by reft_core's own validator, `TrainConfig.problem`)."""
    limits: dict[str, Any] = {key: value for key, value in (
        ("minimum", spec.ge), ("exclusiveMinimum", spec.gt), ("maximum", spec.le), ("pattern", spec.pattern))
        if value is not None}
    if spec.choices is not None:
        return Literal[spec.choices]
    if spec.kind == "layers":
        index = Annotated[int, Field(json_schema_extra=limits)]
        return Literal["auto"] | Annotated[list[index], Field(json_schema_extra={"minItems": 1,
                                                                                 "maxItems": spec.max_items})]
    kind = {"int": int, "float": float, "str": str}[spec.kind]
    return Annotated[kind, Field(json_schema_extra=limits)]


def checked_by_reft_core(name: str) -> AfterValidator:
    def check(value: Any) -> Any:
        problem = CoreTrainConfig.problem(name, value)
        if problem:
            raise PydanticCustomError("invalid_option", "must be {problem}", {"problem": problem})
        return value

    return AfterValidator(check)


class TrainConfigBase(RequestModel):
    def overrides(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


def train_config_schema() -> type[TrainConfigBase]:
    """The request schema of training overrides, built from reft_core's `TrainConfig`: every
    option optional, typed, documented with its default, and validated by reft_core."""
    fields: dict[str, Any] = {
        name: (Annotated[option_type(spec), checked_by_reft_core(name)] | None,
               Field(None, description=f"{spec.doc} (default: {default!r})"))
        for name, (spec, default) in CoreTrainConfig.options().items()
    }
    return create_model("TrainConfig", __base__=TrainConfigBase,
                        __doc__="Training overrides; every field optional (defaults in docs/internals.md).", **fields)


if TYPE_CHECKING:  # a class made at import is a value to mypy; its base is what code relies on
    TrainConfig = TrainConfigBase
else:
    TrainConfig = train_config_schema()


# --- label sets -------------------------------------------------------------------------------


class LabelIn(RequestModel):
    name: Name
    description: Annotated[StoredStr, Field(max_length=2000)] | None = None


BaseModelName = Annotated[str, Field(min_length=1, max_length=200, description=(
    '"auto" (chosen from the examples at the first training: the multilingual base when most of their '
    'letters are not Latin) or the name of a base in GET /v1/base-models'))]


def check_base_model(name: str, settings: Settings, pointer: str = "/base_model") -> None:
    known = ["auto", *bases.available(settings.english_base)]
    if name not in known:
        raise invalid([{"pointer": pointer, "type": "unknown_base_model",
                        "message": f"unknown base model {name!r}; one of {', '.join(known)}"}],
                      code="unknown_base_model")


ReviewPrecision = Annotated[float | None, Field(
    gt=0.5, lt=1.0, description=(
        "auto-accept: results whose calibrated confidence reaches the threshold training found for this precision "
        "(e.g. 0.95: 95 % of them right) are accepted, the rest need review; null: needs_review marks results near "
        "a decision boundary"))]


RetrainAfter = Annotated[int | None, Field(
    ge=1, le=1_000_000, description=(
        "retrain on its own: once this many examples were added or relabelled since the set's latest training "
        "started, a train job is queued (as a train request naming no config; the promotion rules decide as "
        "always); null: only when asked"))]


Kind = Annotated[Literal["classification", "spans"], Field(description=(
    "classification: each text gets one label (several when multi_label); spans: labels are entity types and "
    "each example marks character spans of its text"))]

SpanReviewThreshold = Annotated[float, Field(gt=0.0, lt=1.0, description=(
    "spans sets: a result needs review when some token's decoded tag (a span's, or no span) is less likely than "
    "this"))]


class LabelSetCreate(RequestModel):
    name: Name
    kind: Kind = "classification"
    multi_label: bool = False
    labels: Annotated[list[LabelIn], Field(json_schema_extra={"minItems": 1})]  # checked in check(), by name
    config: TrainConfig | None = None
    base_model: BaseModelName = "auto"
    review_precision: ReviewPrecision = None
    retrain_after: RetrainAfter = 50

    def check(self, settings: Settings) -> None:
        check_base_model(self.base_model, settings)
        if self.kind == "spans" and self.multi_label:
            raise invalid([{"pointer": "/multi_label", "type": "spans_not_multi_label",
                            "message": "a spans label set marks one label per span; multi_label is for "
                                       "classification"}], code="spans_not_multi_label")
        if self.kind == "spans" and self.review_precision is not None:
            raise invalid([{"pointer": "/review_precision", "type": "not_for_spans",
                            "message": "review_precision (auto-accept by calibrated confidence) is for "
                                       "classification; a spans set's results need review below "
                                       "span_review_threshold"}], code="not_for_spans")
        problem = CoreTrainConfig.from_dict(self.config.overrides() if self.config else {}) \
            .problem_for_set(self.kind, self.multi_label)
        if problem:
            raise invalid([{"pointer": f"/config/{problem.field}", "type": "option_not_for_set",
                            "message": problem.message}], code="option_not_for_set")
        least = 1 if self.kind == "spans" else 2
        if len(self.labels) < least:
            what = "a spans label set needs at least 1 label (an entity type)" if least == 1 else \
                "a label set needs at least 2 labels"
            raise invalid([{"pointer": "/labels", "type": "too_few_labels",
                            "message": f"{what}, got {len(self.labels)}"}], code="too_few_labels")
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


class LabelSetUpdate(RequestModel):
    """Only the fields sent change; `"review_precision": null` turns auto-accept off."""

    base_model: BaseModelName | None = None
    review_precision: ReviewPrecision = None
    retrain_after: RetrainAfter = None
    span_review_threshold: SpanReviewThreshold | None = None

    def check(self, settings: Settings) -> None:
        if self.base_model is not None:
            check_base_model(self.base_model, settings)
        if not self.model_fields_set:
            raise invalid([{"pointer": "", "type": "empty_update",
                            "message": "send base_model, review_precision, retrain_after and/or "
                                       "span_review_threshold"}],
                          code="empty_update")


class BaseModelOut(BaseModel):
    name: str
    languages: str
    layers: int
    hidden_size: int
    fingerprint: str | None = Field(description="of the weights, once a worker has loaded them "
                                                "(adapters are tied to it)")
    loaded: bool = Field(description="a worker holds it now")
    english_default: bool = Field(description='what "auto" picks for Latin-script examples (BASE_MODEL)')


class BaseModelList(BaseModel):
    base_models: list[BaseModelOut]


class LabelOut(BaseModel):
    name: str
    description: str | None


class ActiveAdapterOut(BaseModel):
    version: int
    metrics: dict[str, Any]


class LabelSetOut(BaseModel):
    id: str
    name: str
    kind: Literal["classification", "spans"]
    multi_label: bool
    labels: list[LabelOut]
    config: dict[str, Any]
    base_model: str = Field(description='as set: "auto" or a base\'s name')
    resolved_base_model: str | None = Field(description="the base its adapters train on (set at the first training)")
    review_precision: float | None
    span_review_threshold: float | None = Field(description="spans sets only")
    retrain_after: int | None
    example_count: int
    active_adapter: ActiveAdapterOut | None
    created_at: datetime


class LabelSetList(BaseModel):
    label_sets: list[LabelSetOut]


# --- examples ---------------------------------------------------------------------------------


class SpanIn(RequestModel):
    """A labelled span: character offsets into the text (Python's code points, not UTF-16
    units), `end` exclusive. Other fields (a span's `text`, as exports carry it) are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")

    start: Annotated[int, Field(ge=0, le=MAX_INT32)]
    end: Annotated[int, Field(ge=0, le=MAX_INT32)]
    label: Annotated[StoredStr, Field(min_length=1, max_length=200)]


class ExampleIn(RequestModel):
    """One labelled text: `label` for single-label sets, `labels` for multi-label ones (either is
    accepted for both when it makes sense), `spans` for spans sets (`[]`: a text with no span).
    Other fields are ignored, so exports load as-is."""

    model_config = ConfigDict(strict=True, extra="ignore", json_schema_extra={"oneOf": [
        {"required": ["label"], "properties": {"label": {"type": "string"}}},
        {"required": ["labels"], "properties": {"labels": {"type": "array"}}},
        {"required": ["spans"], "properties": {"spans": {"type": "array"}}},
    ]})

    text: Text
    label: Annotated[StoredStr, Field(max_length=200)] | None = None
    labels: list[Annotated[StoredStr, Field(max_length=200)]] | None = None
    spans: Annotated[list[SpanIn], Field(max_length=10_000)] | None = None

    @model_validator(mode="after")
    def _one_of_label_or_labels(self) -> ExampleIn:
        if sum(x is not None for x in (self.label, self.labels, self.spans)) != 1:
            raise PydanticCustomError("label_required", "give exactly one of `label`, `labels` or `spans`")
        return self

    def label_names(self) -> list[str]:
        return [self.label] if self.label is not None else list(self.labels or [])


class ExamplesUpload(RequestModel):
    count_limit = CountLimit("examples", "max_examples_per_request", "REFTAG_MAX_EXAMPLES")
    examples: Annotated[list[ExampleIn], Field(min_length=1)]

    def check(self, settings: Settings) -> None:
        problems = text_problems([(f"/examples/{i}/text", e.text) for i, e in enumerate(self.examples)], settings)
        if problems:
            raise invalid(problems)

    def pairs(self) -> list[NewExample]:
        return [NewExample(e.text, [], [span.model_dump() for span in e.spans]) if e.spans is not None
                else NewExample(e.text, e.label_names()) for e in self.examples]


class RejectedRow(BaseModel):
    index: int
    reason: str


class ExamplesQuery(BaseModel):
    """Query parameters of an examples upload."""

    model_config = ConfigDict(extra="ignore")

    format: ExampleFormat | None = Field(None, description="default: from Content-Type, else json")
    text_field: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    label_field: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    labels_from: Literal["annotations", "predictions"] = "annotations"


class ExamplesAddedOut(BaseModel):
    added: int
    duplicates: int
    rejected: list[RejectedRow]
    train_job_id: str | None = Field(None, description="the train job these examples made due (retrain_after)")


class TrainRequest(RequestModel):
    config: TrainConfig | None = None


# --- Label Studio connection -------------------------------------------------------------------------


class LabelStudioConnectionIn(RequestModel):
    url: Annotated[str, Field(min_length=1, max_length=2000, description="Label Studio's address, e.g. "
                              "http://127.0.0.1:8080; its host must be in REFTAG_LABEL_STUDIO_HOSTS")]
    project: Annotated[int, Field(ge=1, le=MAX_INT32, description="the Label Studio project's id")]
    token: Annotated[str, Field(min_length=1, max_length=4096, description="a Label Studio user's API token "
                                "(legacy or personal access token); stored sealed, never shown again")]


class LabelStudioConnectionOut(BaseModel):
    label_set_id: str
    url: str
    project: int
    token: Literal["set"] = Field(description="the token is never shown")
    last_pull: dict[str, Any] | None
    created_at: datetime


class LabelStudioPullOut(BaseModel):
    added: int
    relabelled: int
    removed: int
    unchanged: int
    tasks: int = Field(description="annotated tasks read from Label Studio")
    rejected: list[dict[str, Any]] = Field(description="tasks whose labels are not the set's: {task_id, reason}")
    skipped: list[dict[str, Any]] = Field(description="annotated tasks with no text or no choice: {task_id, reason}")


def connection_json(row: Any) -> dict[str, Any]:
    return LabelStudioConnectionOut(label_set_id=row.label_set_id, url=row.url, project=row.project_id, token="set",
                                    last_pull=row.last_pull, created_at=as_utc(row.created_at)).model_dump(mode="json")


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
    id: ItemId | None = None
    text: Text
    meta: Annotated[dict[str, Any] | None, AfterValidator(storable_meta)] = None


class JobCreate(RequestModel):
    label_set_id: Annotated[StoredStr, Field(max_length=64)]
    items: Annotated[list[JobItemIn], Field(min_length=1)]
    adapter_version: Annotated[int, Field(ge=1, le=MAX_INT32)] | None = None
    count_limit = CountLimit("items", "max_job_items", "REFTAG_MAX_JOB_ITEMS")

    def item_ids(self) -> list[str]:
        return [str(item.id) if item.id is not None else str(i) for i, item in enumerate(self.items)]

    def check(self, settings: Settings) -> None:
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


class JobReviewOut(BaseModel):
    review_precision: float | None = Field(description="the label set's when the job was submitted")
    needs_review: int = Field(description="results marked needs_review")
    auto_accepted: int = Field(description="results tagged and not marked")
    coverage: float | None = Field(description="auto_accepted / results tagged (null before the first)")
    reviewed: int = Field(description="results a person reviewed (GET /v1/jobs/{id}/review is what is left)")


class JobWarning(BaseModel):
    """Something a train job's request should know that did not stop it."""

    code: str
    message: str
    labels: list[str] = Field(default_factory=list, description="the labels it is about")
    examples: dict[str, int] | None = Field(default=None, description="few_examples: each of those labels' "
                                            "examples when the job was asked for")


class JobOut(BaseModel):
    id: str
    type: JobType
    status: JobStatus
    label_set_id: str
    adapter_version: int | None
    progress: Progress
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: dict[str, Any] | None
    metrics: dict[str, Any] | None = Field(description=(
        "train jobs: the new version's metrics — `evaluation` (held_out with `n_eval` rows, or k-fold with "
        "`folds`), accuracy, macro_f1 (micro_f1 for multi-label), per label — and `promotion`: whether it "
        "replaced the active version, by which rule, with both scores"))
    warnings: list[JobWarning] = Field(default_factory=list, description="train jobs: e.g. labels with very few "
                                                                          "examples (code `few_examples`)")
    detail: dict[str, Any] = Field(description="train jobs: step, epoch, loss, eta_seconds as the trainer reports "
                                               "them; a tag job reftag made for a large Label Studio /predict: "
                                               '{"made_by": "label_studio_predict", "project"}')
    queued_after: str | None = Field(None, description=(
        "train jobs: the train job of the set that was running when this one was asked for; this one waits "
        "for it and starts when it has finished"))
    review: JobReviewOut | None = Field(None, description="tag jobs: how many results were auto-accepted "
                                                          "(coverage) and how many need or had review")


class JobList(BaseModel):
    jobs: list[JobOut]


class JobListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label_set_id: Annotated[str, Field(max_length=64)] | None = None
    status: JobStatus | None = None
    type: JobType | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50


class ReviewOut(BaseModel):
    labels: list[str]
    at: datetime
    by: str | None = Field(description="the prefix of the API key that reviewed")


class SpanOut(BaseModel):
    start: int
    end: int
    label: str
    text: str
    score: float = Field(description="the least probability among the span's tokens' tags")


class ResultOut(BaseModel):
    item_id: str
    labels: list[str] = Field(description="spans sets: the distinct labels of `spans`")
    spans: list[SpanOut] | None = Field(None, description="spans sets only: the spans found, in text order")
    scores: dict[str, float] = Field(description="calibrated probabilities (adapters trained with calibration)")
    needs_review: bool
    confidence: float | None = Field(None, description="calibrated chance that `labels` are exactly right")
    review: ReviewOut | None = Field(None, description="a person's answer, once reviewed")
    adapter_version: int | None
    error: str | None = None


class ReviewItemOut(ResultOut):
    text: str
    margin: float | None


class ReviewQueueOut(BaseModel):
    items: list[ReviewItemOut]
    next_cursor: str | None
    remaining: int = Field(description="results of the job still waiting for review")


class ReviewQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    order: Literal["uncertainty", "disagreement"] = "uncertainty"
    cursor: Annotated[str, Field(max_length=200)] | None = None
    limit: Annotated[int, Field(ge=1, le=500)] = 50


class ReviewIn(RequestModel):
    """`{"label": name}` (single-label sets) or `{"labels": [names]}`: the right answer, the
    model's own to accept it."""

    label: Name | None = None
    labels: Annotated[list[Name], Field(max_length=1000)] | None = None

    def check(self, settings: Settings) -> None:
        if (self.label is None) == (self.labels is None):
            raise invalid([{"pointer": "", "type": "label_or_labels",
                            "message": "send exactly one of label or labels"}], code="invalid_review")

    def names(self) -> list[str]:
        return [self.label] if self.label is not None else list(self.labels or [])


class ReviewedOut(BaseModel):
    result: ResultOut
    example_id: int
    example_created: bool = Field(description="false when the text was already an example (relabelled)")
    train_job_id: str | None = Field(None, description="the train job this review made due (retrain_after)")


class ResultsPageOut(BaseModel):
    # a tag job's results; a suggest job's picks or an audit job's findings, in rank order
    results: list[ResultOut] | list[SuggestionOut] | list[FindingOut]
    next_cursor: str | None


# --- the labeling loop: suggest and audit ------------------------------------------------------


class SuggestRequest(RequestModel):
    """Which of a tag job's items to label next."""

    job_id: Annotated[str, Field(min_length=1, max_length=64, description="a tag job of this label set")]
    n: Annotated[int, Field(ge=1, le=MAX_SUGGEST, description="how many items to pick")] = 50


class AuditRequest(RequestModel):
    """An audit takes no options: the set's own training recipe is trained per fold."""


class FindingDecisionIn(RequestModel):
    """`accept`: relabel the example with the suggested label(s), keeping the old ones in its
    history; `keep`: its label stays (the finding is marked kept)."""

    decision: Literal["accept", "keep"]


class SuggestionOut(BaseModel):
    item_id: str
    text: str
    score: float
    reason: str
    labels: list[str]


class FindingOut(BaseModel):
    example_id: int
    text: str
    given: str | list[str]
    suggested: str | list[str]
    confidence: float
    given_score: float
    decision: Literal["accepted", "kept"] | None = None


class FindingDecidedOut(BaseModel):
    finding: FindingOut
    example: dict[str, Any]
    train_job_id: str | None


class ResultsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    cursor: Annotated[str, Field(max_length=64)] | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    format: ResultFormat = "json"
    # Where exports in a tool's format put the text and the label (docs/api.md, "Formats").
    text_field: Annotated[str, Field(min_length=1, max_length=200)] = "text"
    label_field: Annotated[str, Field(min_length=1, max_length=200)] = "label"
    to_name: Annotated[str, Field(min_length=1, max_length=200)] = "text"
    bom: bool = Field(False, description="CSV: start with a UTF-8 byte order mark (for Excel)")


# --- predict ----------------------------------------------------------------------------------


class PredictItem(RequestModel):
    id: ItemId | None = None
    text: Text


class PredictRequest(RequestModel):
    label_set_id: Annotated[StoredStr, Field(max_length=64)]
    items: Annotated[list[PredictItem], Field(min_length=1)]
    adapter_version: Annotated[int, Field(ge=1, le=MAX_INT32)] | None = None
    count_limit = CountLimit("items", "max_predict_items", "REFTAG_MAX_PREDICT_ITEMS")

    def check(self, settings: Settings) -> None:
        problems = text_problems([(f"/items/{i}/text", item.text) for i, item in enumerate(self.items)], settings)
        if problems:
            raise invalid(problems)


class PredictOut(BaseModel):
    results: list[ResultOut]


# --- meta -------------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"]


# --- rows → API JSON (one function per resource) ----------------------------------------------


def label_set_json(view: LabelSetView) -> dict[str, Any]:
    ls, active = view.label_set, view.active_adapter
    return LabelSetOut(
        id=ls.id, name=ls.name, kind=LabelSetKind(ls.kind).value, multi_label=ls.multi_label,
        span_review_threshold=ls.span_review_threshold if ls.kind == LabelSetKind.SPANS else None,
        labels=[LabelOut(name=label.name, description=label.description) for label in ls.labels],
        config=ls.config or {}, base_model=ls.base_model, resolved_base_model=ls.base_model_resolved,
        review_precision=ls.review_precision, retrain_after=ls.retrain_after, example_count=view.example_count,
        active_adapter=ActiveAdapterOut(version=active.version, metrics=active.metrics or {}) if active else None,
        created_at=as_utc(ls.created_at),
    ).model_dump(mode="json")


def adapter_json(adapter: Adapter) -> dict[str, Any]:
    return AdapterOut(
        version=adapter.version, active=adapter.is_active, metrics=adapter.metrics or {},
        param_count=adapter.param_count, size_bytes=adapter.size_bytes, checksum=adapter.checksum,
        train_job_id=adapter.train_job_id, note=adapter.note, created_at=as_utc(adapter.created_at),
    ).model_dump(mode="json")


def job_progress(job: Job) -> Progress:
    """Tag jobs count items; train jobs count optimizer steps, as the trainer reports them
    (early stopping may end before the last planned step: a succeeded job shows done = total)."""
    if job.type in (JobType.TRAIN, JobType.AUDIT):  # a trainer's steps (an audit trains per fold)
        detail = job.detail or {}
        total = int(detail.get("total_steps") or 0)
        done = total if job.status == JobStatus.SUCCEEDED else min(int(detail.get("step") or 0), total)
        return Progress(total=total, done=done, failed=0)
    return Progress(total=job.total, done=job.done, failed=job.failed)


def job_review(job: Job, counts: dict[str, int] | None) -> JobReviewOut | None:
    if job.type != JobType.TAG:
        return None
    needs = (counts or {}).get("needs_review", 0)
    accepted = max(0, job.done - needs)
    return JobReviewOut(review_precision=job.review_precision, needs_review=needs, auto_accepted=accepted,
                        coverage=round(accepted / job.done, 4) if job.done else None,
                        reviewed=(counts or {}).get("reviewed", 0))


def job_json(job: Job, review_counts: dict[str, int] | None = None) -> dict[str, Any]:
    return JobOut(
        id=job.id, type=JobType(job.type), status=JobStatus(job.status), label_set_id=job.label_set_id,
        adapter_version=job.adapter_version, progress=job_progress(job),
        created_at=as_utc(job.created_at), started_at=as_utc(job.started_at), finished_at=as_utc(job.finished_at),
        error=job.error, metrics=job.metrics, warnings=job.warnings or [], detail=job.detail or {},
        queued_after=job.queued_after, review=job_review(job, review_counts),
    ).model_dump(mode="json")


def result_json(result: Result, key_prefixes: dict[int, str] | None = None) -> dict[str, Any]:
    # Plain dict, no model round trip: result exports stream up to max_job_items rows.
    review = None
    if result.reviewed_at is not None:
        by = (key_prefixes or {}).get(result.reviewed_by) if result.reviewed_by is not None else None
        review = {"labels": result.reviewed_labels or [], "at": as_utc(result.reviewed_at).isoformat(), "by": by}
    out = {"item_id": result.item_id, "labels": result.labels, "scores": result.scores,
           "needs_review": result.needs_review, "confidence": result.confidence, "review": review,
           "adapter_version": result.adapter_version, "error": result.error}
    if result.spans is not None:
        out["spans"] = result.spans
    return out


def output_json(row: JobOutput) -> dict[str, Any]:
    """A suggest job's pick or an audit job's finding (with the decision made about it)."""
    return {**row.body, "decision": row.decision} if row.example_id is not None else dict(row.body)
