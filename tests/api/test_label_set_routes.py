"""POST/GET /v1/label-sets: creation, reads, and every way a label set can be refused."""
from store.models import Label, LabelSet


def test_label_set_is_created_with_labels_in_order(client, auth):
    response = client.post("/v1/label-sets", headers=auth, json={
        "name": "support", "labels": [{"name": "billing", "description": "money"}, {"name": "delivery"}],
        "config": {"rank": 8, "epochs": 3}})
    assert response.status_code == 201
    body = response.get_json()
    assert body["id"].startswith("ls_")
    assert body["name"] == "support" and body["multi_label"] is False
    assert body["labels"] == [{"name": "billing", "description": "money"}, {"name": "delivery", "description": None}]
    assert body["config"] == {"rank": 8, "epochs": 3}
    assert body["example_count"] == 0 and body["active_adapter"] is None

    assert client.get(f"/v1/label-sets/{body['id']}", headers=auth).get_json() == body
    listed = client.get("/v1/label-sets", headers=auth).get_json()["label_sets"]
    assert [ls["id"] for ls in listed] == [body["id"]]


def test_label_set_shows_its_active_adapter(client, auth, make_label_set, add_adapter):
    ls = make_label_set()
    add_adapter(ls["id"], version=1, active=False)
    add_adapter(ls["id"], version=2, active=True, metrics={"accuracy": 0.93})
    body = client.get(f"/v1/label-sets/{ls['id']}", headers=auth).get_json()
    assert body["active_adapter"] == {"version": 2, "metrics": {"accuracy": 0.93}}
    assert client.get("/v1/label-sets", headers=auth).get_json()["label_sets"][0]["active_adapter"]["version"] == 2


def test_label_set_with_fewer_than_two_labels_is_rejected(client, auth, count_rows):
    response = client.post("/v1/label-sets", headers=auth, json={"name": "one", "labels": [{"name": "only"}]})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "too_few_labels"
    assert "at least 2 labels" in error["message"]
    assert error["details"][0]["pointer"] == "/labels"
    assert count_rows(LabelSet) == 0 and count_rows(Label) == 0


def test_duplicate_label_names_are_rejected_with_their_name(client, auth, count_rows):
    response = client.post("/v1/label-sets", headers=auth, json={
        "name": "dups", "labels": [{"name": "a"}, {"name": "b"}, {"name": "a"}]})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "duplicate_labels"
    assert error["details"][0]["pointer"] == "/labels/2/name"
    assert "'a'" in error["message"]
    assert count_rows(LabelSet) == 0


def test_duplicate_label_set_name_is_a_conflict(client, auth, make_label_set, count_rows):
    make_label_set("topics")
    response = client.post("/v1/label-sets", headers=auth,
                           json={"name": "topics", "labels": [{"name": "x"}, {"name": "y"}]})
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "label_set_exists"
    assert count_rows(LabelSet) == 1


def test_same_label_set_name_is_fine_for_another_tenant(client, make_tenant, make_label_set):
    make_label_set("topics")
    other = make_tenant("globex")
    assert make_label_set("topics", headers=other.headers)["name"] == "topics"


def test_missing_fields_are_named(client, auth, count_rows):
    response = client.post("/v1/label-sets", headers=auth, json={"multi_label": True})
    assert response.status_code == 422
    pointers = {d["pointer"] for d in response.get_json()["error"]["details"]}
    assert pointers == {"/name", "/labels"}
    assert count_rows(LabelSet) == 0


def test_wrong_types_are_rejected_with_pointers(client, auth, count_rows):
    response = client.post("/v1/label-sets", headers=auth, json={
        "name": 5, "multi_label": "yes", "labels": [{"name": "a"}, {"name": ["b"]}]})
    assert response.status_code == 422
    pointers = {d["pointer"] for d in response.get_json()["error"]["details"]}
    assert {"/name", "/multi_label", "/labels/1/name"} <= pointers
    assert count_rows(LabelSet) == 0


def test_unknown_training_option_is_rejected_by_name(client, auth, count_rows):
    response = client.post("/v1/label-sets", headers=auth, json={
        "name": "x", "labels": [{"name": "a"}, {"name": "b"}], "config": {"rank": 0, "learning_rate": 0.1}})
    assert response.status_code == 422
    pointers = {d["pointer"] for d in response.get_json()["error"]["details"]}
    assert pointers == {"/config/rank", "/config/learning_rate"}
    assert count_rows(LabelSet) == 0


def test_html_and_sql_in_label_names_are_stored_and_echoed_inertly(client, auth):
    names = ["<script>alert(1)</script>", "'); DROP TABLE labels; --"]
    response = client.post("/v1/label-sets", headers=auth,
                           json={"name": "<b>x</b>", "labels": [{"name": n} for n in names]})
    assert response.status_code == 201
    assert response.mimetype == "application/json"
    ls = client.get(f"/v1/label-sets/{response.get_json()['id']}", headers=auth).get_json()
    assert [label["name"] for label in ls["labels"]] == names and ls["name"] == "<b>x</b>"
