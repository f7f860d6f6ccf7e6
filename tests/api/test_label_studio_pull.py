"""A label set's Label Studio connection, and the pull that reads the project's annotations
before training — against a small stand-in for Label Studio's REST API (the real Label Studio
is tests/e2e/test_real_label_studio.py)."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from store.models import Example, LabelStudioConnection
from tests.api.test_label_studio_contract import PROJECT, annotation_webhook, basic

LABEL_CONFIG = ('<View><Text name="review" value="$body"/><Choices name="topic" toName="review">'
                '<Choice value="billing"/><Choice value="delivery"/><Choice value="other"/></Choices></View>')
TOKEN = "0123456789abcdef0123456789abcdef01234567"
PERSONAL_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"


def task(task_id, text, *labels, annotation_id=None, cancelled=False):
    """A task as Label Studio's JSON export writes it."""
    annotations = [{"id": annotation_id or task_id * 10, "was_cancelled": cancelled, "ground_truth": False,
                    "created_at": "2026-12-02T10:00:00Z", "updated_at": "2026-12-02T10:00:00Z",
                    "result": [{"from_name": "topic", "to_name": "review", "type": "choices",
                                "value": {"choices": list(labels)}}]}]
    return {"id": task_id, "data": {"body": text}, "annotations": annotations, "predictions": []}


class FakeLabelStudio:
    """Label Studio's project, export and token-refresh endpoints, on a real socket."""

    def __init__(self):
        self.tasks = []
        self.requests = []  # (method, path, Authorization)
        self.answer = None  # (status, headers): answer every call with this instead
        self.label_config = LABEL_CONFIG  # the project's
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body, headers=()):
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                fake.requests.append(("POST", self.path, self.headers.get("Authorization")))
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/api/token/refresh/" and body == {"refresh": PERSONAL_TOKEN}:
                    return self.reply(200, {"access": "short-lived-access"})
                self.reply(401, {"detail": "invalid"})

            def do_GET(self):
                fake.requests.append(("GET", self.path, self.headers.get("Authorization")))
                if fake.answer:
                    return self.reply(fake.answer[0], {}, fake.answer[1])
                if self.headers.get("Authorization") not in (f"Token {TOKEN}", "Bearer short-lived-access"):
                    return self.reply(401, {"detail": "Authentication credentials were not provided."})
                path = urlsplit(self.path).path
                if path == "/api/projects/7/":
                    return self.reply(200, {"id": 7, "title": "tickets", "label_config": fake.label_config})
                if path == "/api/projects/7/export":
                    return self.reply(200, fake.tasks)
                self.reply(404, {"detail": "Not found."})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def app(make_app):
    return make_app(secret_key="the deployment's secret")


@pytest.fixture
def ls_set(make_label_set):
    return make_label_set(labels=("billing", "delivery", "other"))


@pytest.fixture
def connected(client, auth, ls_set, label_studio):
    response = client.put(f"/v1/label-sets/{ls_set['id']}/label-studio", headers=auth,
                          json={"url": label_studio.url, "project": 7, "token": TOKEN})
    assert response.status_code == 200, response.get_json()
    return ls_set


def examples(db, ls_id):
    with db() as session:
        return {e.text: e.labels for e in session.scalars(select(Example).where(Example.label_set_id == ls_id))}


def pull(client, auth, ls_id):
    response = client.post(f"/v1/label-sets/{ls_id}/label-studio/pull", headers=auth)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


# --- the connection -----------------------------------------------------------------------------


def test_the_token_is_sealed_at_rest_and_never_shown(client, auth, connected, label_studio, db):
    url = f"/v1/label-sets/{connected['id']}/label-studio"
    shown = client.get(url, headers=auth)
    assert shown.status_code == 200
    assert shown.get_json() == {**shown.get_json(), "url": label_studio.url, "project": 7, "token": "set",
                                "last_pull": None}
    assert TOKEN not in shown.get_data(as_text=True)
    with db() as session:
        sealed = session.scalar(select(LabelStudioConnection.sealed_token))
    assert TOKEN.encode() not in sealed and TOKEN[:12].encode() not in sealed


def test_a_host_the_operator_has_not_allowed_is_refused_naming_the_setting(client, auth, ls_set, count_rows):
    for url in ("http://example.com", "http://10.0.0.5:8080", "http://169.254.169.254/latest", "http://[fd00::1]:80",
                "http://127.0.0.1.nip.io:8080"):
        response = client.put(f"/v1/label-sets/{ls_set['id']}/label-studio", headers=auth,
                              json={"url": url, "project": 7, "token": TOKEN})
        assert response.status_code == 422, url
        error = response.get_json()["error"]
        assert error["code"] == "label_studio_host_not_allowed" and "REFTAG_LABEL_STUDIO_HOSTS" in error["message"]
        assert error["details"][0]["pointer"] == "/url"
    assert count_rows(LabelStudioConnection) == 0


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/", "http://admin:pw@127.0.0.1:8080",
                                 "127.0.0.1"])
def test_a_url_that_is_not_plain_http_is_refused(client, auth, ls_set, url):
    response = client.put(f"/v1/label-sets/{ls_set['id']}/label-studio", headers=auth,
                          json={"url": url, "project": 7, "token": TOKEN})
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "invalid_label_studio_url"


def test_the_operator_chooses_the_hosts(make_app, auth, make_label_set):
    client = make_app(secret_key="s", label_studio_hosts=("labelstudio.internal",)).test_client()
    ls = client.post("/v1/label-sets", headers=auth, json={"name": "t", "labels": [{"name": "a"}, {"name": "b"}]})
    url = f"/v1/label-sets/{ls.get_json()['id']}/label-studio"
    assert client.put(url, headers=auth, json={"url": "http://LabelStudio.internal:8080/", "project": 1,
                                               "token": TOKEN}).status_code == 200
    assert client.put(url, headers=auth, json={"url": "http://127.0.0.1:8080", "project": 1,
                                               "token": TOKEN}).status_code == 422


def test_another_tenants_label_set_has_no_connection_to_show(client, connected, make_tenant):
    other = make_tenant("globex")
    assert client.get(f"/v1/label-sets/{connected['id']}/label-studio", headers=other.headers).status_code == 404
    assert client.post(f"/v1/label-sets/{connected['id']}/label-studio/pull", headers=other.headers).status_code == 404


def test_disconnect_forgets_the_token_and_keeps_the_examples(client, auth, connected, label_studio, db, count_rows):
    label_studio.tasks = [task(1, "charged twice", "billing")]
    pull(client, auth, connected["id"])
    assert client.delete(f"/v1/label-sets/{connected['id']}/label-studio", headers=auth).status_code == 204
    assert count_rows(LabelStudioConnection) == 0 and examples(db, connected["id"]) == {"charged twice": ["billing"]}
    response = client.post(f"/v1/label-sets/{connected['id']}/label-studio/pull", headers=auth)
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "no_label_studio_connection"


# --- the pull -----------------------------------------------------------------------------------


def test_a_pull_adds_relabels_and_removes_and_changes_nothing_when_sent_again(client, auth, connected,
                                                                                label_studio, db):
    label_studio.tasks = [task(1, "charged twice", "billing"), task(2, "parcel lost", "delivery"),
                          task(3, "hello", "other"), task(4, "skipped one", "other", cancelled=True)]
    first = pull(client, auth, connected["id"])
    assert (first["added"], first["relabelled"], first["removed"], first["tasks"]) == (3, 0, 0, 3)
    assert examples(db, connected["id"]) == {"charged twice": ["billing"], "parcel lost": ["delivery"],
                                             "hello": ["other"]}
    assert pull(client, auth, connected["id"])["unchanged"] == 3  # idempotent
    # In Label Studio: task 1 relabelled, task 3's annotation deleted, task 5 annotated.
    label_studio.tasks = [task(1, "charged twice", "delivery", annotation_id=99), task(2, "parcel lost", "delivery"),
                          task(5, "new one", "billing")]
    second = pull(client, auth, connected["id"])
    assert (second["added"], second["relabelled"], second["removed"], second["unchanged"]) == (1, 1, 1, 1)
    assert examples(db, connected["id"]) == {"charged twice": ["delivery"], "parcel lost": ["delivery"],
                                             "new one": ["billing"]}
    last = client.get(f"/v1/label-sets/{connected['id']}/label-studio", headers=auth).get_json()["last_pull"]
    assert last["added"] == 1 and last["removed"] == 1 and "at" in last


def test_a_pull_removes_an_example_only_when_an_annotation_made_it(client, auth, connected, label_studio, db):
    assert client.post(f"/v1/label-sets/{connected['id']}/examples", headers=auth,
                       json={"examples": [{"text": "uploaded", "label": "other"}]}).status_code == 201
    label_studio.tasks = [task(1, "uploaded", "billing"), task(2, "annotated", "delivery")]
    assert pull(client, auth, connected["id"])["relabelled"] == 1  # the annotation is the newer word
    label_studio.tasks = []
    assert pull(client, auth, connected["id"])["removed"] == 1
    assert examples(db, connected["id"]) == {"uploaded": ["billing"]}


def test_an_annotation_with_a_label_the_set_lacks_is_listed_not_stored(client, auth, connected, label_studio, db):
    label_studio.tasks = [task(1, "charged twice", "billing"), task(2, "spam!", "spam"), task(3, "", "other")]
    outcome = pull(client, auth, connected["id"])
    assert outcome["added"] == 1
    assert [r["task_id"] for r in outcome["rejected"]] == [2] and "'spam'" in outcome["rejected"][0]["reason"]
    assert [s["task_id"] for s in outcome["skipped"]] == [3]
    assert examples(db, connected["id"]) == {"charged twice": ["billing"]}


def test_a_webhook_annotation_deleted_in_label_studio_goes_at_the_next_pull(client, auth, tenant, connected,
                                                                            label_studio, db):
    body = annotation_webhook(["billing"], text="charged twice", task_id=1)
    assert client.post(f"/ls/{connected['id']}/webhook", headers=basic(tenant.key), json=body).status_code == 201
    label_studio.tasks = [task(1, "charged twice", "billing")]
    assert pull(client, auth, connected["id"])["unchanged"] == 1  # the webhook's example is the task's
    label_studio.tasks = []
    assert pull(client, auth, connected["id"])["removed"] == 1 and examples(db, connected["id"]) == {}


def test_start_training_pulls_the_annotations_the_webhook_never_delivered(client, auth, tenant, connected,
                                                                          label_studio, db, clean_redis):
    """The webhook Label Studio creates has no credentials: every annotation event got 401."""
    label_studio.tasks = [task(i, f"ticket {i}", ("billing", "delivery", "other")[i % 3]) for i in range(1, 10)]
    response = client.post(f"/ls/{connected['id']}/webhook", headers=basic(tenant.key),
                           json={"action": "START_TRAINING", "project": PROJECT})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["detail"]["pulled"]["added"] == 9
    assert len(examples(db, connected["id"])) == 9
    assert clean_redis.queued_tasks("train")[0]["args"] == [response.get_json()["detail"]["train_job"]["id"]]


def test_a_train_request_over_the_api_pulls_first(client, auth, connected, label_studio, db, clean_redis):
    label_studio.tasks = [task(i, f"ticket {i}", ("billing", "delivery", "other")[i % 3]) for i in range(1, 7)]
    response = client.post(f"/v1/label-sets/{connected['id']}/train", headers=auth, json={})
    assert response.status_code == 202, response.get_json()
    assert len(examples(db, connected["id"])) == 6


def test_a_personal_access_token_is_exchanged_for_an_access_token(client, auth, ls_set, label_studio):
    client.put(f"/v1/label-sets/{ls_set['id']}/label-studio", headers=auth,
               json={"url": label_studio.url, "project": 7, "token": PERSONAL_TOKEN})
    label_studio.tasks = [task(1, "charged twice", "billing")]
    assert pull(client, auth, ls_set["id"])["added"] == 1
    assert label_studio.requests[0][:2] == ("POST", "/api/token/refresh/")
    assert {authorization for method, _, authorization in label_studio.requests if method == "GET"} == {
        "Bearer short-lived-access"}


def test_when_label_studio_refuses_training_goes_on_and_the_refusal_is_recorded(client, auth, tenant, connected,
                                                                               label_studio, clean_redis, caplog):
    for i in range(3):
        body = annotation_webhook([("billing", "delivery", "other")[i]], text=f"ticket {i}", task_id=i + 1)
        client.post(f"/ls/{connected['id']}/webhook", headers=basic(tenant.key), json=body)
    client.put(f"/v1/label-sets/{connected['id']}/label-studio", headers=auth,
               json={"url": label_studio.url, "project": 7, "token": "revoked-token"})
    started = client.post(f"/ls/{connected['id']}/webhook", headers=basic(tenant.key),
                          json={"action": "START_TRAINING", "project": PROJECT})
    assert started.status_code == 201
    assert "refused the connection's API token (401)" in started.get_json()["detail"]["pulled"]["error"]
    assert any("without pulling Label Studio first" in r.getMessage() and r.levelname == "WARNING"
               for r in caplog.records)
    shown = client.get(f"/v1/label-sets/{connected['id']}/label-studio", headers=auth).get_json()
    assert "401" in shown["last_pull"]["error"]
    explicit = client.post(f"/v1/label-sets/{connected['id']}/label-studio/pull", headers=auth)
    assert explicit.status_code == 502 and explicit.get_json()["error"]["code"] == "label_studio_unavailable"


def test_a_redirect_is_not_followed(client, auth, connected, label_studio):
    label_studio.answer = (302, [("Location", "http://169.254.169.254/latest/meta-data")])
    response = client.post(f"/v1/label-sets/{connected['id']}/label-studio/pull", headers=auth)
    assert response.status_code == 502 and "answered 302" in response.get_json()["error"]["message"]
    assert len(label_studio.requests) == 1


def test_a_host_removed_from_the_operators_list_is_not_fetched_any_more(make_app, auth, connected, label_studio):
    client = make_app(secret_key="the deployment's secret", label_studio_hosts=("labelstudio.internal",)).test_client()
    response = client.post(f"/v1/label-sets/{connected['id']}/label-studio/pull", headers=auth)
    assert response.status_code == 502 and "REFTAG_LABEL_STUDIO_HOSTS" in response.get_json()["error"]["message"]
    assert label_studio.requests == []


def test_a_token_sealed_under_another_secret_key_asks_for_the_connection_again(make_app, auth, connected):
    client = make_app(secret_key="a new secret").test_client()
    response = client.post(f"/v1/label-sets/{connected['id']}/label-studio/pull", headers=auth)
    assert response.status_code == 502 and "set the Label Studio connection again" in response.get_json()["error"][
        "message"]


def test_the_scheduled_pull_reads_every_connected_project(app, auth, connected, label_studio, db, make_label_set,
                                                          client):
    unconnected = make_label_set(name="not connected")
    label_studio.tasks = [task(1, "charged twice", "billing"), task(2, "parcel lost", "delivery")]
    result = app.test_cli_runner().invoke(args=["reftag", "pull-label-studio"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{connected['id']}: 2 added, 0 relabelled, 0 removed, 0 unchanged"
    assert len(examples(db, connected["id"])) == 2 and examples(db, unconnected["id"]) == {}
    label_studio.answer = (500, [])
    failing = app.test_cli_runner().invoke(args=["reftag", "pull-label-studio"])
    assert failing.exit_code == 1 and "answered 500" in failing.output and "1 of 1 pulls failed" in failing.output
