"""Schemathesis, driven by the app's own `/openapi.json`, against every operation in it: over a
thousand generated requests (schema-valid ones, with random ids and with ids of real objects,
and schema-invalid ones), and for each answer: no 5xx, a documented status, the documented
content type and headers, a body that matches its schema, invalid input refused, and auth
enforced. That covers Label Studio's ML backend (`/ls/*`, called with the API key as a bearer
token or as the HTTP Basic password, as Label Studio sends it) and every value of the `format`
query parameters: each upload format is read (a one-example upload as its tool writes it) and
each export format written at least once. (tests/api/test_hostile_input.py mutates known-good
bodies with hand-picked hostile values; this one explores what the schema allows and forbids.)

Not checked: that every schema-valid request is accepted. JSON Schema cannot say "label names
distinct", "a label of this set" or "2.0 is not an integer", which the API does refuse (422, by
design), so that check would only report the limits of the schema language.
"""
from __future__ import annotations

import base64
import itertools
import json
import math
from collections import Counter

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api import interop
from reft_core.bases import MINILM
from store import jobs, loop, results
from store.models import Example, Job
from tests.api.test_label_studio_pull import TOKEN

# Requests in all, shared evenly by the operations that take input (an operation without any has
# one possible request); each share split between schema-valid requests with random ids, with the
# ids of real objects (where a path or body takes one), and schema-invalid requests.
TOTAL = 1100
RANDOM_IDS, REAL_IDS = 0.25, 0.45
SETTINGS = dict(deadline=None, database=None, derandomize=True, phases=[Phase.generate],
                suppress_health_check=list(HealthCheck))


@pytest.fixture
def world(make_app, auth, make_label_set, add_adapter, label_studio, db):
    """An app (no predict worker: predict answers its documented 504 at once) and real objects: a
    label set with examples and an adapter, a tag job with results, a queued train job, and a
    Label Studio connection to a stand-in Label Studio (made again before each request to the
    connection's routes, which a DELETE may have removed)."""
    app = make_app(predict_timeout=0.01, secret_key="fuzz")
    client = app.test_client()
    ls = make_label_set("fuzz", labels=("billing", "delivery", "other"))
    add_adapter(ls["id"])
    examples = [{"text": f"{label} example {i}", "label": label} for label in ("billing", "delivery", "other")
                for i in range(7)]  # enough to audit
    added = client.post(f"/v1/label-sets/{ls['id']}/examples", headers=auth, json={"examples": examples})
    assert added.status_code == 201
    tag = client.post("/v1/jobs", headers=auth, json={"label_set_id": ls["id"], "items": [
        {"id": "a", "text": "refund please"}, {"id": "b", "text": "where is my parcel"}]}).get_json()
    chunk = jobs.claim_chunk(tag["id"], 0)
    jobs.write_chunk_results(tag["id"], 0, [
        results.ResultRow(position, item_id, ["billing"], {"billing": 0.8, "delivery": 0.15, "other": 0.05}, False, 1)
        for position, item_id in zip(chunk.positions, chunk.item_ids)])
    train = client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth, json={}).get_json()
    audit = client.post(f"/v1/label-sets/{ls['id']}/audit", headers=auth).get_json()
    with db() as session:  # the audit's answer, as its worker writes it: one finding
        session.get(Job, audit["id"]).status, session.get(Job, audit["id"]).attempts = "running", 1
        example = session.query(Example).filter_by(label_set_id=ls["id"], text="other example 0").one()
        finding = {"example_id": example.id, "text": example.text, "given": "other", "suggested": "billing",
                   "confidence": 0.9, "given_score": 0.05}
    assert loop.complete_loop_job(audit["id"], 1, [finding], {"flagged": 1})
    # a spans set with a tagged job: where the formats that carry only spans (conll) are aimed
    spans = client.post("/v1/label-sets", headers=auth, json={"name": "fuzz-spans", "kind": "spans",
                                                             "labels": [{"name": "PER"}]}).get_json()
    add_adapter(spans["id"])
    span_tag = client.post("/v1/jobs", headers=auth, json={"label_set_id": spans["id"], "items": [
        {"id": "a", "text": "Ann Lee called"}]}).get_json()
    chunk = jobs.claim_chunk(span_tag["id"], 0)
    jobs.write_chunk_results(span_tag["id"], 0, [results.ResultRow(
        0, "a", ["PER"], {"PER": 0.9}, False, 1, confidence=0.9,
        spans=[{"start": 0, "end": 7, "label": "PER", "text": "Ann Lee", "score": 0.9}])])
    connection = {"url": label_studio.url, "project": 7, "token": TOKEN}

    def connect_label_studio() -> None:
        assert client.put(f"/v1/label-sets/{ls['id']}/label-studio", headers=auth, json=connection).status_code == 200

    return app, {"label_set_id": ls["id"], "job_ids": [tag["id"], train["id"]], "version": 1,
                 "audit_job_id": audit["id"], "example_id": finding["example_id"],
                 "labels": ["billing", "delivery", "other"], "label_studio": connection,
                 "spans_label_set_id": spans["id"], "spans_job_id": span_tag["id"],
                 "connect_label_studio": connect_label_studio,
                 "upload_formats": itertools.cycle(interop.EXAMPLE_FORMATS),
                 "result_formats": itertools.cycle(["json", *interop.RESULT_FORMATS])}


def upload_in(fmt: str, label: str) -> str:
    """A one-example upload in format `fmt`, as its tool writes it (`?format=` of POST .../examples)."""
    text = f"please refund me, {label}"
    region = {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}
    return {
        "json": json.dumps({"examples": [{"text": text, "label": label}]}),
        "jsonl": json.dumps({"text": text, "label": label}) + "\n",
        "csv": f'text,label\n"{text}",{label}\n',
        "label_studio": json.dumps([{"id": 1, "data": {"text": text}, "annotations": [{"result": [region]}]}]),
        "label_studio_min": json.dumps([{"id": 1, "text": text, "label": label}]),
        "label_studio_csv": f"id,label,text\n1,{label},\"{text}\"\n",
        "doccano": json.dumps({"text": text, "label": [label]}) + "\n",
        "argilla": json.dumps([{"id": "1", "fields": {"text": text},
                                "responses": {"label": [{"value": label, "status": "submitted"}]}}]),
        # span rows, for the spans set (aim_at_real_objects sends them there)
        "conll": json.dumps({"tokens": ["Ann", "Lee", "called"], "tags": ["B-PER", "I-PER", "O"]}) + "\n",
    }[fmt]


def labeling_config(labels) -> str:
    """A Label Studio project's config whose choices are the set's labels."""
    return ('<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
            + "".join(f'<Choice value="{name}"/>' for name in labels) + "</Choices></View>")


def aim_at_real_objects(case, ids, data) -> None:
    """Point a schema-valid request at the world's objects: real ids in the path and the body,
    a real base's name, real label names in examples (random ones are refused, rightly, as unknown labels),
    an upload in each format the examples route reads, and Label Studio payloads with a labeling
    config of the set's labels and tasks with a text."""
    real = {"label_set_id": st.just(ids["label_set_id"]), "job_id": st.sampled_from(ids["job_ids"]),
            "version": st.just(ids["version"]), "item_id": st.sampled_from(["a", "b"])}
    names = [p.name for p in case.operation.path_parameters if p.name in real]
    case.path_parameters = {**(case.path_parameters or {}), **{name: data.draw(real[name]) for name in names}}
    if "/label-studio" in case.operation.path:
        ids["connect_label_studio"]()
    if case.operation.label.endswith("/examples"):  # each format in turn, with the query it needs
        fmt = next(ids["upload_formats"])
        case.query = {"format": fmt, "text_field": "text", "label_field": "label"} if fmt.startswith(
            ("label_studio", "argilla")) else {"format": fmt}
        case.media_type, case.body = "text/csv", upload_in(fmt, data.draw(st.sampled_from(ids["labels"])))
        if fmt == "conll":
            case.path_parameters["label_set_id"] = ids["spans_label_set_id"]
        return
    if case.operation.label.startswith("POST") and case.operation.label.endswith("/review"):  # a tag job's item
        case.path_parameters["job_id"] = ids["job_ids"][0]
        case.body = {"label": data.draw(st.sampled_from(ids["labels"]))}
        return
    if "/findings/" in case.operation.label:  # the audit's finding
        case.path_parameters.update(job_id=ids["audit_job_id"], example_id=ids["example_id"])
    if case.operation.label.endswith("/suggest") and isinstance(case.body, dict):  # over the tag job
        case.body["job_id"] = ids["job_ids"][0]
    if case.operation.label.endswith("/results"):  # each format in turn, of the tag job (spans-only: the spans job)
        fmt = next(ids["result_formats"])
        case.path_parameters["job_id"] = ids["spans_job_id"] if fmt == "conll" else ids["job_ids"][0]
        case.query = {**{k: v for k, v in (case.query or {}).items() if k != "cursor"}, "format": fmt}
    if not isinstance(case.body, dict):
        return
    for key in ("label_config", "schema"):  # Label Studio's /predict, /train and /setup
        if key in case.body:
            case.body[key] = labeling_config(ids["labels"])
    if isinstance(case.body.get("tasks"), list):
        case.body["tasks"] = [{"id": i, "data": {"text": f"text {i}"}} for i in range(len(case.body["tasks"]))]
    if isinstance(case.body.get("annotations"), list):  # /train: annotated tasks, as Label Studio's export
        case.body["annotations"] = [json.loads(upload_in("label_studio", label))[0] for label in ids["labels"]]
    if "token" in case.body:  # a connection to the stand-in Label Studio (random URLs are refused, rightly)
        case.body.update(ids["label_studio"])
    if "label_set_id" in case.body:
        case.body["label_set_id"] = ids["label_set_id"]
    if "base_model" in case.body:  # a random name is refused, rightly, as an unknown base
        case.body["base_model"] = data.draw(st.sampled_from(["auto", MINILM]))
    for example in case.body.get("examples") or []:
        label = data.draw(st.sampled_from(ids["labels"]))
        if example.get("label") is not None:
            example["label"] = label
        if example.get("labels") is not None:
            example["labels"] = [label]


def test_generated_requests_get_no_5xx_and_answers_match_the_schema(world, auth):
    app, ids = world
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    statuses: Counter = Counter()
    formats_answered: set[tuple[str, str]] = set()
    basic = {"Authorization": "Basic " + base64.b64encode(b"label-studio:" + auth["Authorization"].split()[1].encode()
                                                          ).decode()}
    # With no predict worker, predictions answer 504, documented and checked below.
    no_worker = ("POST /v1/predict", "POST /ls/{label_set_id}/predict")

    def run(operation, strategy, real_ids: bool, examples: int) -> None:
        @hypothesis.settings(max_examples=examples, **SETTINGS)
        @given(case=strategy, data=st.data())
        def call(case, data):
            if real_ids:
                aim_at_real_objects(case, ids, data)
            excluded = [positive_data_acceptance] + ([not_a_server_error] if operation.label in no_worker else [])
            # Label Studio connects with HTTP Basic, the API key as the password; it may send a bearer token too
            headers = data.draw(st.sampled_from([auth, basic])) if operation.path.startswith("/ls/") else auth
            response = case.call_and_validate(headers=headers, excluded_checks=excluded)
            statuses[(operation.label, response.status_code)] += 1
            fmt = (case.query or {}).get("format")
            if fmt and response.status_code < 300:
                formats_answered.add((operation.label, fmt))

        try:
            call()
        except hypothesis.errors.Unsatisfiable:
            pass  # no invalid request exists for an operation without inputs

    operations = [result.ok() for result in schema.get_all_operations()]
    with_inputs = [op for op in operations if op.path_parameters or op.query or op.headers or op.body]
    share = math.ceil(TOTAL / len(with_inputs))
    for operation in operations:
        if operation not in with_inputs:
            run(operation, operation.as_strategy(generation_mode=GenerationMode.POSITIVE), False, 1)
            continue
        real = round(share * REAL_IDS) if operation.path_parameters or operation.body else 0
        random_ids = round(share * (RANDOM_IDS + REAL_IDS)) - real
        run(operation, operation.as_strategy(generation_mode=GenerationMode.POSITIVE), False, random_ids)
        if real:
            run(operation, operation.as_strategy(generation_mode=GenerationMode.POSITIVE), True, real)
        run(operation, operation.as_strategy(generation_mode=GenerationMode.NEGATIVE), False,
            share - random_ids - real)

    total = sum(statuses.values())
    by_status = Counter()
    for (_, status), n in statuses.items():
        by_status[status] += n
    print(f"{total} requests; by status: {dict(sorted(by_status.items()))}")
    assert total >= 1000
    assert {key for key in statuses if key[1] >= 500} <= {(label, 504) for label in no_worker}, statuses
    # The real ids took the requests past the 404s: every /v1 and /ls operation succeeded at least once.
    reached = {label for (label, status) in statuses if 200 <= status < 300}
    ours = {label for (label, _) in statuses if " /v1/" in label or " /ls/" in label}
    assert ours - reached <= set(no_worker), f"never answered 2xx: {sorted(ours - reached)}"
    # ... and every format: each upload format read, each export format written.
    uploads = {fmt for label, fmt in formats_answered if label.endswith("/examples")}
    exports = {fmt for label, fmt in formats_answered if label.endswith("/results")}
    assert uploads == set(interop.EXAMPLE_FORMATS) and exports == {"json", *interop.RESULT_FORMATS}, formats_answered
