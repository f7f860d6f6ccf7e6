"""Seeded random mutations of valid requests against every /v1 endpoint: never a 5xx, every
error in the error format, every success shaped like its schema. (Hand-written cases for each
rule live next to the endpoint's other tests.)"""
import copy
import json
import random

import pytest

from api.v1 import schemas

HOSTILE_VALUES = [
    None, True, 0, -1, 2**31, 2**80, -(2**80), 1.5, 1e308, "", " ", "\x00", "a\x00b", "\ud800", "x" * 30_000,
    "<script>alert(1)</script>", "'; DROP TABLE jobs; --", "💥" * 50, "ls_", "job_", [], {}, [[[[[]]]]],
    {"text": "nested"}, ["a", 1, None], "f1+l1", "auto", "billing",
]
SUCCESS_SCHEMAS = {
    ("post", "/v1/label-sets"): schemas.LabelSetOut,
    ("post", "examples"): schemas.ExamplesAddedOut,
    ("post", "train"): schemas.JobOut,
    ("post", "/v1/jobs"): schemas.JobOut,
}


def leaves(value, path=()):
    """Every path into a JSON value (including containers), for picking a spot to mutate."""
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from leaves(child, path + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from leaves(child, path + (index,))


def hostile(rng):
    return copy.deepcopy(rng.choice(HOSTILE_VALUES))


def mutate(body, rng):
    body = copy.deepcopy(body)
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in leaves(body) if p]
        if not paths:
            return hostile(rng)
        path = rng.choice(paths)
        parent = body
        for part in path[:-1]:
            parent = parent[part]
        action = rng.random()
        if action < 0.2 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action < 0.3 and isinstance(parent, dict):
            parent[rng.choice(["extra", "label", "labels", "id", "config"])] = hostile(rng)
        else:
            parent[path[-1]] = hostile(rng)
    return body


@pytest.fixture
def endpoints(client, auth, make_label_set, add_adapter):
    ls = make_label_set("fuzz", labels=("billing", "delivery", "other"))
    add_adapter(ls["id"])
    lid = ls["id"]
    return [
        ("post", "/v1/label-sets", "/v1/label-sets", {"name": "n", "multi_label": False,
                                     "labels": [{"name": "a", "description": "d"}, {"name": "b"}],
                                     "config": {"rank": 4, "layers": [1, 2], "positions": "f1+l1", "lr": 0.01}}),
        ("post", "/v1/label-sets/{label_set_id}/examples", f"/v1/label-sets/{lid}/examples",
         {"examples": [{"text": "t", "label": "billing"}, {"text": "u", "labels": ["other"]}]}),
        ("post", "/v1/label-sets/{label_set_id}/train", f"/v1/label-sets/{lid}/train",
         {"config": {"epochs": 2, "intervention": "red", "dropout": 0.1}}),
        ("post", "/v1/jobs", "/v1/jobs", {"label_set_id": lid, "items": [{"id": "a", "text": "x", "meta": {"k": [1]}},
                                                            {"text": "y"}], "adapter_version": 1}),
        ("post", "/v1/predict", "/v1/predict", {"label_set_id": lid, "items": [{"text": "x"}], "adapter_version": 1}),
    ]


def schema_for(method, url):
    for (m, suffix), model in SUCCESS_SCHEMAS.items():
        if m == method and url.endswith(suffix):
            return model
    return None


def test_mutated_requests_never_cause_a_server_error(make_app, auth, endpoints):
    client = make_app(predict_timeout=0.05, max_text_chars=20_000).test_client()
    documented = client.get("/openapi.json").get_json()["paths"]
    rng = random.Random(20261129)
    statuses = {}
    for case in range(1200):
        method, template, url, valid = endpoints[case % len(endpoints)]
        body = mutate(valid, rng)
        headers = {**auth, "Idempotency-Key": f"k{case}"} if url == "/v1/jobs" else auth
        response = getattr(client, method)(url, headers=headers, data=json.dumps(body),
                                           content_type="application/json")
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500 or response.status_code == 504, (url, body, response.get_json())
        assert str(response.status_code) in documented[template][method]["responses"], (url, response.status_code)
        payload = response.get_json()
        if response.status_code >= 400:
            assert set(payload) == {"error"} and set(payload["error"]) == {"code", "message", "details"}
        elif schema_for(method, url):
            schema_for(method, url).model_validate(payload)
    assert statuses.get(422, 0) > 100  # the mutations really did hit validation


def test_hostile_ids_in_paths_and_queries_answer_4xx(client, auth):
    for hostile in ["%00", "..%2F..%2Fetc", "' OR 1=1 --", "x" * 5000, "%F0%9F%92%A5", "<b>"]:
        for url in [f"/v1/label-sets/{hostile}", f"/v1/jobs/{hostile}", f"/v1/jobs/{hostile}/results",
                    f"/v1/label-sets/{hostile}/adapters", f"/v1/jobs/x/results?cursor={hostile}&limit={hostile}"]:
            response = client.get(url, headers=auth)
            assert 400 <= response.status_code < 500, (url, response.status_code)
            assert "error" in response.get_json()
