"""A label set's Label Studio connection, and the examples Label Studio's annotations became.

Annotations reach reftag two ways: the webhook, one at a time as people submit them (fast, but
lost while the webhook has no credentials), and a pull of the whole project through Label
Studio's API before training (`api/interop/label_studio_pull.py`), which makes the examples
match the project again: idempotent by task (one example per task, from its chosen
annotation), an updated annotation relabels, a task whose annotation is gone removes the example
that annotation made. Every function leaves the transaction to its caller.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .errors import Invalid
from .label_sets import NewExample, add_examples, check_example_labels, label_set_row, span_types, text_hash
from .models import Example, LabelSet, LabelSetKind, LabelStudioConnection, LabelStudioTask, utcnow


@dataclass(frozen=True)
class Annotated:
    """A Label Studio task's annotation as an example: its text and the labels it chose — or,
    for a spans set, the spans it marked (`{"start", "end", "label"}`, Python offsets)."""

    task_id: int
    annotation_id: int | None
    text: str
    labels: list[str]
    spans: list[dict[str, Any]] | None = None

    def example(self) -> NewExample:
        return NewExample(self.text, list(dict.fromkeys(self.labels)), self.spans)


@dataclass
class Synced:
    """What storing annotations changed; `rejected`: {"task_id", "reason"} for those not stored."""

    added: int = 0
    relabelled: int = 0
    removed: int = 0
    unchanged: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"added": self.added, "relabelled": self.relabelled, "removed": self.removed,
                "unchanged": self.unchanged, "rejected": self.rejected[:100]}


# --- the connection ----------------------------------------------------------------------------------


def connection(session: Session, tenant_id: str, label_set_id: str) -> LabelStudioConnection | None:
    label_set = label_set_row(session, tenant_id, label_set_id)
    return session.get(LabelStudioConnection, label_set.id)


def every_connection(session: Session) -> list[tuple[str, str]]:
    """(tenant id, label set id) of every label set that has a connection, for a scheduled pull."""
    return [(tenant_id, label_set_id) for tenant_id, label_set_id in session.execute(
        select(LabelSet.tenant_id, LabelStudioConnection.label_set_id)
        .join(LabelSet, LabelSet.id == LabelStudioConnection.label_set_id).order_by(LabelSet.id))]


def connect(session: Session, tenant_id: str, label_set_id: str, url: str, project_id: int,
            sealed_token: bytes) -> LabelStudioConnection:
    """Set (or replace) the label set's connection."""
    label_set = label_set_row(session, tenant_id, label_set_id)
    row = session.get(LabelStudioConnection, label_set.id)
    if row is None:
        row = LabelStudioConnection(label_set_id=label_set.id)
        session.add(row)
    row.url, row.project_id, row.sealed_token, row.last_pull = url, project_id, sealed_token, None
    session.flush()
    return row


def disconnect(session: Session, tenant_id: str, label_set_id: str) -> bool:
    label_set = label_set_row(session, tenant_id, label_set_id)
    row = session.get(LabelStudioConnection, label_set.id)
    if row is not None:
        session.delete(row)
    return row is not None


def record_pull(session: Session, label_set_id: str, outcome: dict[str, Any]) -> None:
    row = session.get(LabelStudioConnection, label_set_id)
    if row is not None:
        row.last_pull = {"at": utcnow().isoformat(), **outcome}


# --- annotations as examples ----------------------------------------------------------------------


def store_annotations(session: Session, tenant_id: str, label_set_id: str, annotated: Sequence[Annotated],
                      complete: bool = False, strict: bool = False) -> Synced:
    """Make the examples of these tasks' annotations. A task seen before keeps its example and
    takes the annotation's labels; a new task's text becomes an example (or, when it already is
    one, from an upload or another task, that example takes the labels). `complete`: this is
    every annotated task of the project (a pull), so a task seen before and missing now has no
    annotation any more, and the example its annotation made is removed. Labels that are not
    the set's: that task is left out and listed in `rejected`; `strict`: Invalid, nothing stored."""
    label_set = label_set_row(session, tenant_id, label_set_id, lock=True)
    synced = Synced()
    usable: dict[int, Annotated] = {}
    spans_set = label_set.kind == LabelSetKind.SPANS
    if strict:
        check_example_labels(label_set, [item.example() for item in annotated])
    for item in annotated:
        try:
            [spans] = check_example_labels(label_set, [item.example()])
        except Invalid as e:
            synced.rejected.append({"task_id": item.task_id, "reason": "; ".join(d["message"] for d in e.details)})
            continue
        names = span_types(label_set, spans) if spans_set else list(dict.fromkeys(item.labels))
        usable[item.task_id] = Annotated(item.task_id, item.annotation_id, item.text, names,
                                         spans if spans_set else None)
    seen = {row.task_id: row for row in session.scalars(
        select(LabelStudioTask).where(LabelStudioTask.label_set_id == label_set.id))}
    examples = examples_by_hash(session, label_set.id, [text_hash(item.text) for item in usable.values()])
    new = {text_hash(item.text): item.example() for item in usable.values() if text_hash(item.text) not in examples}
    synced.added = add_examples(session, tenant_id, label_set.id, list(new.values())).added
    examples.update(examples_by_hash(session, label_set.id, list(new)))
    dropped: set[int] = set()  # examples that tasks' annotations made and no longer name
    for item in usable.values():
        example, made = examples[text_hash(item.text)], text_hash(item.text) in new
        row = seen.get(item.task_id)
        if row is None:
            row = LabelStudioTask(label_set_id=label_set.id, task_id=item.task_id, example_id=example.id,
                                  owns_example=made)
            session.add(row)
        elif row.example_id != example.id:  # the task's text was edited
            if row.owns_example:
                dropped.add(row.example_id)
            row.example_id, row.owns_example = example.id, made
        row.annotation_id = item.annotation_id
        if made:
            continue
        if example.labels != item.labels or (spans_set and example.spans != item.spans):
            example.labels, example.spans = item.labels, item.spans if spans_set else example.spans
            synced.relabelled += 1
        else:
            synced.unchanged += 1
    if complete:
        for task_id, row in seen.items():
            if task_id not in usable:
                if row.owns_example:
                    dropped.add(row.example_id)
                session.delete(row)
    session.flush()
    synced.removed = remove_unused_examples(session, dropped)
    return synced


def examples_by_hash(session: Session, label_set_id: str, hashes: Sequence[str]) -> dict[str, Example]:
    found: dict[str, Example] = {}
    unique = list(dict.fromkeys(hashes))
    for start in range(0, len(unique), 500):
        found.update((e.text_hash, e) for e in session.scalars(select(Example).where(
            Example.label_set_id == label_set_id, Example.text_hash.in_(unique[start:start + 500]))))
    return found


def remove_unused_examples(session: Session, example_ids: set[int]) -> int:
    """Delete those of these examples that no task's annotation names any more."""
    used = set(session.scalars(select(LabelStudioTask.example_id).where(LabelStudioTask.example_id.in_(example_ids))))
    doomed = example_ids - used
    if doomed:
        session.execute(delete(Example).where(Example.id.in_(doomed)))
    return len(doomed)
