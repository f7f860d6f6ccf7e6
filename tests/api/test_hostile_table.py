"""Hand-written hostile and broken input at the default limits, one row per case: each refused
request gets its 4xx and code and stores nothing; each accepted one is stored whole, and hostile
text in it comes back verbatim, inert.

Rows of the same table that live beside their endpoint's other tests: invalid UTF-8 in a label
set, NUL and lone surrogates in item texts and meta, JSON nested 100 and 100,000 deep in a job
(test_error_format.py); SQL and HTML in label names (test_label_set_routes.py); limits lowered
to a few items or characters (test_job_routes.py, test_example_routes.py); seeded mutations
and schemathesis over every endpoint (test_hostile_input.py, test_openapi_fuzz.py).
"""
from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import func, inspect, select

from store import jobs, results
from store.models import Example, Job, JobItem, LabelSet

JSON = "application/json"
JSONL = "application/x-ndjson"
CSV = "text/csv"
MB = 1_000_000


def dumps(value) -> bytes:
    return json.dumps(value).encode()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def nest(depth: int) -> list:
    """A value nested `depth` arrays deep."""
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


# (case, path ({ls} is a label set with an adapter), Content-Type, body(ls), status, code, pointer)
REFUSED = [
    ("200,000 items in one job (limit 100,000)", "/v1/jobs", JSON,
     lambda ls: dumps({"label_set_id": ls, "items": [{"text": "t"}] * 200_000}), 413, "too_many_items", "/items"),
    ("a 1 MB text in a job (limit 20,000 characters)", "/v1/jobs", JSON,
     lambda ls: dumps({"label_set_id": ls, "items": [{"text": "ok"}, {"text": "x" * MB}]}),
     422, "invalid_request", "/items/1/text"),
    ("a 1 MB text in an example", "/v1/label-sets/{ls}/examples", JSON,
     lambda ls: dumps({"examples": [{"text": "x" * MB, "label": "billing"}]}),
     422, "invalid_request", "/examples/0/text"),
    ("a 1 MB text to predict", "/v1/predict", JSON,
     lambda ls: dumps({"label_set_id": ls, "items": [{"text": "x" * MB}]}), 422, "invalid_request", "/items/0/text"),
    ("a 33 MiB body (limit 32 MiB)", "/v1/jobs", JSON,
     lambda ls: dumps({"label_set_id": ls, "items": [{"text": "x" * 20_000}] * 1730}), 413, "too_large", None),
    ("invalid UTF-8 in a job", "/v1/jobs", JSON,
     lambda ls: b'{"label_set_id": "%s", "items": [{"text": "\xff\xfe"}]}' % ls.encode(), 400, "malformed_json", None),
    ("invalid UTF-8 in JSONL examples", "/v1/label-sets/{ls}/examples", "application/x-ndjson",
     lambda ls: b'{"text": "fine", "label": "billing"}\n{"text": "\xc3\x28", "label": "billing"}\n',
     400, "malformed_body", None),
    ("invalid UTF-8 in CSV examples", "/v1/label-sets/{ls}/examples", "text/csv",
     lambda ls: b"text,label\nfine,billing\n\xff\xfe,billing\n", 400, "malformed_body", None),
    ("JSON nested 10,000 deep in examples", "/v1/label-sets/{ls}/examples", JSON,
     lambda ls: nested(10_000), 400, "malformed_json", None),
    ("JSON nested 10,000 deep to predict", "/v1/predict", JSON, lambda ls: nested(10_000), 400, "malformed_json", None),
    ("JSON nested 40 deep in a label set", "/v1/label-sets", JSON,
     lambda ls: b'{"name": "n", "labels": ' + nested(40) + b"}", 400, "malformed_json", None),
    ("JSON nested 600 deep in a job (parsed, then too deep to measure)", "/v1/jobs", JSON,
     lambda ls: nested(600), 400, "malformed_json", None),
    # The 116-byte body of issue 15: a JSON-MIN label nested 40 deep once took days to read.
    ("a Label Studio JSON-MIN label nested 40 deep", "/v1/label-sets/{ls}/examples?format=label_studio_min", JSON,
     lambda ls: b'[{"text":"hi","label":' + b"[" * 40 + b'"billing"' + b"]" * 40 + b"}]", 400, "malformed_json", None),
    ("the same label in a Label Studio CSV cell", "/v1/label-sets/{ls}/examples?format=label_studio_csv", CSV,
     lambda ls: b'text,label\nfine,billing\nhi,"' + b"[" * 40 + b'""billing""' + b"]" * 40 + b'"\n',
     400, "malformed_csv", "/examples/1/label"),
    ("a Label Studio CSV cell nested 5,000 deep", "/v1/label-sets/{ls}/examples?format=label_studio_csv", CSV,
     lambda ls: b"text,label\nhi," + nested(5_000) + b"\n", 400, "malformed_csv", "/examples/0/label"),
    ("a CSV labels cell nested 5,000 deep", "/v1/label-sets/{ls}/examples", CSV,
     lambda ls: b"text,labels\nfine,billing\nhi," + nested(5_000) + b"\n", 400, "malformed_csv", "/examples/1/labels"),
    # Depth is checked on the raw body, before a reader picks out what it reads.
    ("Label Studio tasks with data nested 40 deep", "/v1/label-sets/{ls}/examples?format=label_studio", JSON,
     lambda ls: dumps([{"data": {"text": "hi", "extra": nest(40)}, "annotations": [
         {"result": [{"from_name": "label", "type": "choices", "value": {"choices": ["billing"]}}]}]}]),
     400, "malformed_json", None),
    ("a doccano line with meta nested 40 deep", "/v1/label-sets/{ls}/examples?format=doccano", JSONL,
     lambda ls: dumps({"text": "fine", "label": ["billing"]}) + b"\n"
     + dumps({"text": "hi", "label": ["billing"], "meta": nest(40)}) + b"\n", 400, "malformed_jsonl", None),
    ("an Argilla record with metadata nested 40 deep", "/v1/label-sets/{ls}/examples?format=argilla", JSON,
     lambda ls: dumps([{"fields": {"text": "hi"}, "metadata": nest(40),
                        "responses": {"label": [{"value": "billing", "user_id": "u"}]}}]), 400, "malformed_json", None),
    # Found by the fuzz guard (test_reader_fuzz.py): each was a 500.
    ("a CSV row with more cells than the header", "/v1/label-sets/{ls}/examples", CSV,
     lambda ls: b"text,label\nfine,billing\nhi,billing,extra\n", 400, "malformed_csv", None),
    ("Label Studio tasks whose annotations are a number", "/v1/label-sets/{ls}/examples?format=label_studio", JSON,
     lambda ls: dumps([{"data": {"text": "hi"}, "annotations": 1.5}]), 422, None, None),
    ("Label Studio annotations whose result is a number", "/v1/label-sets/{ls}/examples?format=label_studio", JSON,
     lambda ls: dumps([{"data": {"text": "hi"}, "annotations": [{"result": 7}]}]), 422, None, None),
    ("Argilla suggestions that are a boolean", "/v1/label-sets/{ls}/examples?format=argilla&labels_from=predictions",
     JSON, lambda ls: dumps([{"fields": {"text": "hi"}, "suggestions": True}]), 422, "invalid_request",
     "/examples/0/suggestions"),
    ("Argilla responses that are not lists", "/v1/label-sets/{ls}/examples?format=argilla", JSON,
     lambda ls: dumps([{"fields": {"text": "hi"}, "responses": {"label": 3}}]), 422, "invalid_request",
     "/examples/0/responses"),
    ("a million wrong items in a job (2 MB)", "/v1/jobs", JSON,
     lambda ls: dumps({"label_set_id": ls, "items": [0] * 1_000_000}), 413, "too_many_items", "/items"),
    ("a million JSONL rows (limit 50,000)", "/v1/label-sets/{ls}/examples", JSONL,
     lambda ls: b"0\n" * 1_000_000, 413, "too_many_examples", "/examples"),
    ("a NUL in a label name", "/v1/label-sets", JSON,
     lambda ls: dumps({"name": "n", "labels": [{"name": "a\u0000b"}, {"name": "c"}]}),
     422, "invalid_request", "/labels/0/name"),
    ("a NUL in an item id", "/v1/jobs", JSON,
     lambda ls: dumps({"label_set_id": ls, "items": [{"id": "a\u0000", "text": "t"}]}), 422, "invalid_request",
     "/items/0/id"),
    ("a NUL in an example label", "/v1/label-sets/{ls}/examples", JSON,
     lambda ls: dumps({"examples": [{"text": "t", "label": "billing\u0000"}]}), 422, None, None),
]


@pytest.fixture
def label_set_id(make_label_set, add_adapter) -> str:
    ls = make_label_set()
    add_adapter(ls["id"])
    return ls["id"]


def stored(count_rows) -> tuple[int, ...]:
    return count_rows(LabelSet), count_rows(Job), count_rows(JobItem), count_rows(Example)


@pytest.mark.parametrize("case, path, media, body, status, code, pointer", REFUSED, ids=[row[0] for row in REFUSED])
def test_hostile_request_is_refused_clearly_and_stores_nothing(client, auth, label_set_id, count_rows,
                                                               case, path, media, body, status, code, pointer):
    before = stored(count_rows)
    response = client.post(path.format(ls=label_set_id), headers={**auth, "Content-Type": media},
                           data=body(label_set_id))
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    error = response.get_json()["error"]
    assert error["message"] and (code is None or error["code"] == code), error
    if pointer:
        assert pointer in [d.get("pointer") for d in error["details"]], error
    if status == 413 and code == "too_many_items":
        assert "100000" in error["message"]  # the limit, named
    assert stored(count_rows) == before


def test_json_nested_too_deep_is_refused_naming_the_limit_and_where(client, auth, label_set_id):
    csv_upload = client.post(f"/v1/label-sets/{label_set_id}/examples?format=label_studio_csv",
                             headers={**auth, "Content-Type": CSV}, data=b"text,label\nok,billing\nhi," + nested(33))
    error = csv_upload.get_json()["error"]
    assert csv_upload.status_code == 400 and "row 1, column 'label'" in error["message"] and "32" in error["message"]
    assert error["details"] == [{"pointer": "/examples/1/label", "row": 1, "column": "label", "limit": 32}]
    jsonl = client.post(f"/v1/label-sets/{label_set_id}/examples", headers={**auth, "Content-Type": JSONL},
                        data=b'{"text": "ok", "label": "billing"}\n' + nested(33))
    assert jsonl.status_code == 400 and jsonl.get_json()["error"]["details"] == [{"line": 2, "limit": 32}]
    body = client.post("/v1/predict", headers={**auth, "Content-Type": JSON}, data=nested(33))
    assert body.status_code == 400 and "deeper than 32 levels" in body.get_json()["error"]["message"]
    # 32 deep is within the limit: the request gets as far as its schema
    assert client.post("/v1/predict", headers={**auth, "Content-Type": JSON}, data=nested(32)).status_code == 422


def test_a_10_mb_job_under_the_limits_is_stored_whole(client, auth, label_set_id, count_rows, clean_redis):
    items = [{"id": f"long-{i}", "text": f"{i} " + "x" * 9_990} for i in range(1_000)]  # 1,000 texts of 10,000 chars
    body = dumps({"label_set_id": label_set_id, "items": items})
    assert len(body) > 10 * MB
    response = client.post("/v1/jobs", headers={**auth, "Content-Type": JSON}, data=body)
    assert response.status_code == 202, response.get_data(as_text=True)[:300]
    assert response.get_json()["progress"]["total"] == 1_000
    assert count_rows(JobItem, job_id=response.get_json()["id"]) == 1_000


def test_sql_and_html_in_item_ids_and_meta_are_stored_and_echoed_inertly(client, auth, label_set_id, db,
                                                                        clean_redis):
    hostile = ["'); DROP TABLE results; --", "<script>alert(1)</script>", "\" OR 1=1 --", "a\tb,c\nd"]
    items = [{"id": text, "text": f"text {i}", "meta": {"note": text}} for i, text in enumerate(hostile)]
    job = client.post("/v1/jobs", headers=auth, json={"label_set_id": label_set_id, "items": items}).get_json()
    chunk = jobs.claim_chunk(job["id"], 0)
    jobs.write_chunk_results(job["id"], 0, [
        results.ResultRow(p, item_id, ["billing"], {"billing": 0.9, "delivery": 0.05, "other": 0.05}, False, 1)
        for p, item_id in zip(chunk.positions, chunk.item_ids)])

    page = client.get(f"/v1/jobs/{job['id']}/results", headers=auth)
    assert page.mimetype == JSON
    assert [r["item_id"] for r in page.get_json()["results"]] == hostile
    exported = client.get(f"/v1/jobs/{job['id']}/results?format=csv", headers=auth).get_data(as_text=True)
    assert [row["item_id"] for row in csv.DictReader(io.StringIO(exported.lstrip("\ufeff")))] == hostile
    with db() as s:
        assert {"results", "jobs", "labels"} <= set(inspect(s.get_bind()).get_table_names())
        assert s.scalars(select(JobItem.meta).where(JobItem.job_id == job["id"]).order_by(JobItem.position)).all() \
            == [{"note": text} for text in hostile]
        assert s.scalar(select(func.count()).select_from(JobItem).where(JobItem.job_id == job["id"])) == 4
