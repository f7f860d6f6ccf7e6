"""Bearer keys, hashed storage, revocation, and tenant isolation on every endpoint."""
import hashlib

import pytest
from sqlalchemy import select

from store import tenants
from store.models import ApiKey, Example, Job, Label, LabelSet
from tests.api.test_dashboard_pages import sign_in


def test_missing_or_malformed_authorization_is_401(client):
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}):
        response = client.get("/v1/label-sets", headers=headers)
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_key_is_401(client):
    response = client.get("/v1/label-sets", headers={"Authorization": "Bearer rt_not-a-real-key"})
    assert response.status_code == 401 and "unknown or revoked" in response.get_json()["error"]["message"]


def test_revoked_key_is_401_immediately(client, tenant, db):
    assert client.get("/v1/label-sets", headers=tenant.headers).status_code == 200
    with db() as session:
        tenants.revoke_api_key(session, tenants.key_prefix(tenant.key))
    assert client.get("/v1/label-sets", headers=tenant.headers).status_code == 401


def test_keys_are_stored_only_as_sha256(tenant, db):
    with db() as session:
        rows = session.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant.id)).all()
        dump = repr([(r.key_hash, r.prefix, r.name) for r in rows])
    assert [r.key_hash for r in rows] == [hashlib.sha256(tenant.key.encode()).hexdigest()]
    assert tenant.key not in dump
    assert len(rows[0].prefix) <= 12 and tenant.key.startswith(rows[0].prefix)


def test_public_endpoints_need_no_key(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200


@pytest.fixture
def their_objects(client, make_tenant, make_label_set, add_adapter, db):
    """Another tenant's label set (with examples and an adapter) and tag job."""
    other = make_tenant("globex")
    ls = make_label_set("globex-set", labels=("a", "b"), headers=other.headers)
    add_adapter(ls["id"])
    client.post(f"/v1/label-sets/{ls['id']}/examples", headers=other.headers,
                json={"examples": [{"text": f"globex example {x}{i}", "label": x} for x in "ab" for i in range(4)]})
    job = client.post("/v1/jobs", headers=other.headers,
                      json={"label_set_id": ls["id"], "items": [{"id": "globex-item", "text": "globex text"}]})
    assert job.status_code == 202
    return {"ls": ls["id"], "job": job.get_json()["id"]}


def other_tenant_requests(ids):
    ls, job = ids["ls"], ids["job"]
    return [
        ("get", f"/v1/label-sets/{ls}", None),
        ("post", f"/v1/label-sets/{ls}/examples", {"examples": [{"text": "mine now", "label": "a"}]}),
        ("post", f"/v1/label-sets/{ls}/train", {}),
        ("get", f"/v1/label-sets/{ls}/adapters", None),
        ("post", f"/v1/label-sets/{ls}/adapters/1/activate", None),
        ("post", "/v1/jobs", {"label_set_id": ls, "items": [{"text": "x"}]}),
        ("get", f"/v1/jobs/{job}", None),
        ("get", f"/v1/jobs/{job}/results", None),
        ("get", f"/v1/jobs/{job}/results?format=csv", None),
        ("post", f"/v1/jobs/{job}/cancel", None),
        ("get", f"/v1/jobs/{job}/review", None),
        ("post", f"/v1/jobs/{job}/items/0/review", {"label": "a"}),
        ("post", "/v1/predict", {"label_set_id": ls, "items": [{"text": "x"}]}),
    ]


def test_other_tenants_ids_answer_404_on_every_endpoint(client, auth, their_objects, count_rows, db):
    for method, url, body in other_tenant_requests(their_objects):
        response = getattr(client, method)(url, headers=auth, json=body)
        assert response.status_code == 404, (method, url, response.get_json())
        assert response.get_json()["error"]["code"] == "not_found"
        assert their_objects["ls"] not in str(response.get_json()["error"]["details"])
    assert client.get("/v1/label-sets", headers=auth).get_json() == {"label_sets": []}
    # and nothing of theirs changed
    assert count_rows(Job, label_set_id=their_objects["ls"]) == 1
    assert client.get(f"/v1/jobs/{their_objects['job']}", headers=auth).status_code == 404
    with db() as session:
        assert session.get(Job, their_objects["job"]).status == "queued"
        assert session.get(LabelSet, their_objects["ls"]) is not None
    assert count_rows(Label, label_set_id=their_objects["ls"]) == 2


def test_no_documented_operation_serves_or_changes_another_tenants_objects(app, client, auth, tenant, their_objects,
                                                                         count_rows, db):
    """Every operation in /openapi.json whose path names a label set or a job, with the other
    tenant's ids (on the dashboard, signed in with our key): a 4xx, never a byte of theirs
    (every text, name and item id of theirs carries "globex"), and nothing of theirs changed."""
    sign_in(client, tenant.key)  # the dashboard's session, where there is one
    ids = {"label_set_id": their_objects["ls"], "job_id": their_objects["job"], "version": "1", "format_name": "csv",
           "item_id": "0", "example_id": "1"}
    swept = []
    for path, operations in client.get("/openapi.json").get_json()["paths"].items():
        if "{label_set_id}" not in path and "{job_id}" not in path:
            continue
        for method in operations:
            url = path.format(**ids)
            for body in (None, {}):
                response = client.open(url, method=method.upper(), headers=auth, json=body)
                assert 400 <= response.status_code < 500, (method, url, response.status_code)
                assert "globex" not in response.get_data(as_text=True), (method, url)
            swept.append(f"{method.upper()} {path}")
    assert len(swept) >= 10, swept
    listed = client.get(f"/v1/jobs?label_set_id={their_objects['ls']}", headers=auth)
    assert listed.status_code == 200 and listed.get_json() == {"jobs": []}
    with db() as session:
        job = session.get(Job, their_objects["job"])
        assert (job.status, job.done) == ("queued", 0)
    assert count_rows(Job, label_set_id=their_objects["ls"]) == 1
    assert count_rows(Label, label_set_id=their_objects["ls"]) == 2
    assert count_rows(Example, label_set_id=their_objects["ls"]) == 8
