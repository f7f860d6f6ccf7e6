"""Argilla records as `Record.to_dict()` writes them: read as examples (people's responses, or
the suggestions) and written as results (the labels as suggestions to review)."""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from .document import (
    ExportSpec,
    ReadOptions,
    Upload,
    json_array,
    json_lines,
    json_rows,
    labelled,
    malformed,
    model_version,
    only_one,
)


def answers(record: dict[str, Any], labels_from: str) -> dict[str, list[Any]] | None:
    """question → the values given for it: people's responses (v2: {q: [{"value"}]}, v1:
    [{"values": {q: {"value"}}, "status"}], discarded ones left out), or the suggestions (v2:
    {q: {"value"}}, v1: [{"question_name", "value"}]). None when they have neither shape."""
    found: dict[Any, list[Any]] = {}
    if labels_from == "predictions":
        suggestions = record.get("suggestions") or {}
        if isinstance(suggestions, dict):
            pairs = list(suggestions.items())
        elif isinstance(suggestions, list):
            pairs = [(s.get("question_name"), s) for s in suggestions if isinstance(s, dict)]
        else:
            return None
        for question, suggestion in pairs:
            if isinstance(question, str) and isinstance(suggestion, dict) and "value" in suggestion:
                found.setdefault(question, []).append(suggestion["value"])
        return found
    responses = record.get("responses") or {}
    if isinstance(responses, dict):
        for question, given in responses.items():
            if not isinstance(given, list):
                return None
            found[question] = [a["value"] for a in given if isinstance(a, dict) and "value" in a
                               and a.get("status", "submitted") == "submitted"]
    elif isinstance(responses, list):
        for response in responses:
            if isinstance(response, dict) and response.get("status", "submitted") == "submitted":
                values = response.get("values") or {}
                if not isinstance(values, dict):
                    return None
                for question, answer in values.items():
                    if isinstance(answer, dict) and "value" in answer:
                        found.setdefault(question, []).append(answer["value"])
    else:
        return None
    return found


def majority(values: list[Any]) -> list[Any]:
    """The answer most people gave (the first of those tied); a label is a string or a list."""
    given = [[v] if isinstance(v, str) else v for v in values]
    counts = Counter(json.dumps(a, sort_keys=True, ensure_ascii=False) for a in given)
    best = max(counts.values())
    return next(a for a in given if counts[json.dumps(a, sort_keys=True, ensure_ascii=False)] == best)


def read(text: str, options: ReadOptions) -> Upload:
    """`{"id", "fields": {"text"}, "responses": {q: [{"value", "user_id"}]}, "suggestions": {q:
    {"value", "score", "agent"}}}` per record (a JSON array, or one per line). The label is the
    answer most responses gave."""
    records = (json_rows(text, "Argilla records", options.max_rows) if text.lstrip().startswith("[")
               else json_lines(text, options.max_rows))
    text_key = options.text_field or "text"
    values = [answers(r, options.labels_from) if isinstance(r, dict) else {} for r in records]
    question = options.label_field or only_one({q for v in values if v for q, given in v.items() if given},
                                               "questions", "label_field")
    examples: list[dict[str, Any] | None] = []
    reasons: list[str | None] = []
    problems = []
    kind = "response" if options.labels_from == "annotations" else "suggestion"
    for i, (record, record_answers) in enumerate(zip(records, values)):
        fields = record.get("fields") if isinstance(record, dict) else None
        if not isinstance(fields, dict) or text_key not in fields:
            problems.append({"pointer": f"/examples/{i}/fields", "message": f"a record has fields with a {text_key!r} "
                             "(name the text field with ?text_field=)"})
            continue
        if record_answers is None:
            problems.append({"pointer": f"/examples/{i}/{kind}s", "message": f"{kind}s are not in Argilla's shape "
                             '(responses: {question: [{"value", "status"}]}; suggestions: {question: {"value"}})'})
            continue
        given = record_answers.get(question or "", [])
        if any(not (isinstance(v, str) or isinstance(v, list)) for v in given):
            problems.append({"pointer": f"/examples/{i}", "message": f"answers to {question!r} are labels or lists"})
            continue
        names = majority(given) if given else []
        examples.append({"text": fields[text_key], "labels": names} if given else None)
        reasons.append(None if given else f"record {record.get('id', i)} has no submitted {kind} to {question!r}")
    malformed(problems)
    return labelled(examples, reasons)


def record(r: dict[str, Any], spec: ExportSpec) -> dict[str, Any]:
    suggestions = {}
    if r["error"] is None and (r["labels"] or spec.multi_label):
        value: Any
        score: Any
        if spec.multi_label:  # a multi-label question: a list of labels with a list of scores
            value = r["labels"]
            score = [round(float(r["scores"][name]), 6) for name in r["labels"]]
        else:
            value, score = r["labels"][0], round(float(r["scores"][r["labels"][0]]), 6)
        suggestions[spec.label_field] = {"value": value, "score": score, "agent": model_version(r["adapter_version"])}
    return {"id": r["item_id"], "fields": {spec.text_field: r["text"]},
            "metadata": {"needs_review": r["needs_review"], "adapter_version": r["adapter_version"]},
            "suggestions": suggestions, "responses": {}, "vectors": {}}


def write(results: Iterable[dict[str, Any]], spec: ExportSpec) -> Iterable[str]:
    """Records (as `dataset.records.to_json` writes them) with the results as suggestions."""
    return json_array(record(r, spec) for r in results)
