"""GET /v1/label-sets/{id}/adapters and POST .../adapters/{version}/activate."""


def test_adapters_are_listed_with_metrics_and_the_active_one(client, auth, make_label_set, add_adapter):
    ls = make_label_set()
    add_adapter(ls["id"], version=1, active=True, metrics={"accuracy": 0.8})
    add_adapter(ls["id"], version=2, active=False, metrics={"accuracy": 0.7})
    body = client.get(f"/v1/label-sets/{ls['id']}/adapters", headers=auth).get_json()
    assert body["active_version"] == 1
    assert [(a["version"], a["active"], a["metrics"]) for a in body["adapters"]] == [
        (1, True, {"accuracy": 0.8}), (2, False, {"accuracy": 0.7})]
    assert "weights" not in body["adapters"][0]


def test_activating_a_version_rolls_back_or_promotes(client, auth, make_label_set, add_adapter):
    ls = make_label_set()
    add_adapter(ls["id"], version=1, active=False)
    add_adapter(ls["id"], version=2, active=True)
    response = client.post(f"/v1/label-sets/{ls['id']}/adapters/1/activate", headers=auth)
    assert response.status_code == 200
    assert response.get_json()["version"] == 1 and response.get_json()["active"] is True
    body = client.get(f"/v1/label-sets/{ls['id']}/adapters", headers=auth).get_json()
    assert body["active_version"] == 1 and [a["active"] for a in body["adapters"]] == [True, False]
    assert client.get(f"/v1/label-sets/{ls['id']}", headers=auth).get_json()["active_adapter"]["version"] == 1


def test_activating_a_missing_version_is_404(client, auth, make_label_set, add_adapter):
    ls = make_label_set()
    add_adapter(ls["id"], version=1)
    response = client.post(f"/v1/label-sets/{ls['id']}/adapters/7/activate", headers=auth)
    assert response.status_code == 404 and "version 7" in response.get_json()["error"]["message"]
    assert client.get(f"/v1/label-sets/{ls['id']}/adapters", headers=auth).get_json()["active_version"] == 1
