"""A spans label set and Label Studio: annotations of a `<Labels>` config reach the set as span
examples through the webhook and through a pull (UTF-16 offsets converted, a bad region named in
the payload, an edited annotation respanning the example), against the stand-in Label Studio of
test_label_studio_pull (the real one answers pre-annotations in tests/e2e/test_real_label_studio.py)."""
import copy

import pytest
from sqlalchemy import select

from store.models import Example
from tests.api.test_label_studio_contract import PROJECT, annotation_webhook, basic
from tests.api.test_label_studio_pull import TOKEN, pull

SPAN_CONFIG = ('<View><Text name="msg" value="$body"/><Labels name="ner" toName="msg">'
               '<Label value="PER"/><Label value="ORG"/><Label value="LOC"/></Labels></View>')
TEXT = "🙂 张伟在北京的华为公司工作。"  # the emoji is one character here, two UTF-16 units in Label Studio


def region(start, end, label, text=TEXT):
    """A `labels` result as Label Studio sends it: offsets in UTF-16 units."""
    units = lambda i: len(text[:i].encode("utf-16-le")) // 2  # noqa: E731
    return {"from_name": "ner", "to_name": "msg", "type": "labels", "origin": "manual",
            "value": {"start": units(start), "end": units(end), "text": text[start:end], "labels": [label]}}


def span_webhook(regions, action="ANNOTATION_CREATED", text=TEXT, task_id=5):
    body = annotation_webhook([], action=action, text=text, task_id=task_id)
    body["annotation"]["result"] = regions
    body["project"] = {**copy.deepcopy(PROJECT), "label_config": SPAN_CONFIG}
    return body


@pytest.fixture
def app(make_app):
    return make_app(secret_key="the deployment's secret")


@pytest.fixture
def ner_set(client, auth):
    response = client.post("/v1/label-sets", headers=auth, json={
        "name": "ner", "kind": "spans", "labels": [{"name": "PER"}, {"name": "ORG"}, {"name": "LOC"}]})
    assert response.status_code == 201
    return response.get_json()


def spans_of(db, label_set_id):
    with db() as session:
        return {e.text: [e.text[s["start"]:s["end"]] + "/" + s["label"] for s in e.spans]
                for e in session.scalars(select(Example).where(Example.label_set_id == label_set_id))}


def test_a_webhook_annotation_becomes_a_span_example_and_an_update_respans_it(client, tenant, ner_set, db):
    hook = f"/ls/{ner_set['id']}/webhook"
    created = client.post(hook, headers=basic(tenant.key),
                          json=span_webhook([region(2, 4, "PER"), region(5, 7, "LOC")]))
    assert created.status_code == 201, created.get_json()
    assert spans_of(db, ner_set["id"]) == {TEXT: ["张伟/PER", "北京/LOC"]}
    updated = client.post(hook, headers=basic(tenant.key), json=span_webhook(
        [region(2, 4, "PER"), region(5, 7, "LOC"), region(8, 12, "ORG")], action="ANNOTATION_UPDATED"))
    assert updated.status_code == 201 and updated.get_json()["detail"]["relabelled"] is True
    assert spans_of(db, ner_set["id"]) == {TEXT: ["张伟/PER", "北京/LOC", "华为公司/ORG"]}
    # a submitted annotation that marks nothing: a text with no span is an example too
    empty = client.post(hook, headers=basic(tenant.key), json=span_webhook([], text="请问几点发货？", task_id=6))
    assert empty.status_code == 201 and spans_of(db, ner_set["id"])["请问几点发货？"] == []


def test_a_bad_region_is_refused_pointing_into_the_payload(client, tenant, ner_set, db):
    bad = span_webhook([region(2, 4, "PER"), region(3, 7, "LOC")])  # the second overlaps the first
    response = client.post(f"/ls/{ner_set['id']}/webhook", headers=basic(tenant.key), json=bad)
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["pointer"].startswith("/annotation/result/1")
    unknown = span_webhook([region(2, 4, "PRODUCT")])
    response = client.post(f"/ls/{ner_set['id']}/webhook", headers=basic(tenant.key), json=unknown)
    assert response.status_code == 422 and "PRODUCT" in response.get_json()["error"]["message"]
    assert spans_of(db, ner_set["id"]) == {}


def test_a_pull_reads_the_projects_span_annotations(client, auth, ner_set, label_studio, db):
    label_studio.label_config = SPAN_CONFIG
    assert client.put(f"/v1/label-sets/{ner_set['id']}/label-studio", headers=auth,
                      json={"url": label_studio.url, "project": 7, "token": TOKEN}).status_code == 200
    label_studio.tasks = [
        {"id": 1, "data": {"body": TEXT}, "predictions": [], "annotations": [
            {"id": 10, "was_cancelled": False, "ground_truth": False, "updated_at": "2026-12-02T10:00:00Z",
             "result": [region(2, 4, "PER"), region(8, 12, "ORG")]}]},
        {"id": 2, "data": {"body": "Alice joined Google."}, "predictions": [], "annotations": [
            {"id": 20, "was_cancelled": False, "ground_truth": False, "updated_at": "2026-12-02T10:00:00Z",
             "result": [region(0, 5, "PER", "Alice joined Google."), region(13, 19, "ORG", "Alice joined Google.")]}]},
        {"id": 3, "data": {"body": "nobody labelled me"}, "predictions": [], "annotations": []}]
    outcome = pull(client, auth, ner_set["id"])
    assert outcome["added"] == 2, outcome
    assert spans_of(db, ner_set["id"]) == {TEXT: ["张伟/PER", "华为公司/ORG"],
                                           "Alice joined Google.": ["Alice/PER", "Google/ORG"]}
    label_studio.tasks[0]["annotations"][0]["result"] = [region(2, 4, "PER")]
    assert pull(client, auth, ner_set["id"])["relabelled"] == 1
    assert spans_of(db, ner_set["id"])[TEXT] == ["张伟/PER"]
