"""Every failure answers {"error": {"code", "message", "details"}} with the right 4xx."""
import json

from store.models import Job, LabelSet


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code and body["error"]["message"]
    return body["error"]


def test_malformed_json_is_400(client, auth, count_rows):
    response = client.post("/v1/label-sets", headers={**auth, "Content-Type": "application/json"}, data='{"name": "x",')
    assert_error(response, 400, "malformed_json")
    assert count_rows(LabelSet) == 0


def test_empty_body_is_400(client, auth):
    assert_error(client.post("/v1/jobs", headers=auth), 400, "malformed_json")


def test_invalid_utf8_is_400(client, auth):
    response = client.post("/v1/label-sets", headers={**auth, "Content-Type": "application/json"},
                           data=b'{"name": "\xff\xfe", "labels": []}')
    assert_error(response, 400, "malformed_json")


def test_deeply_nested_json_is_400(client, auth):
    for depth in (100, 100_000):
        response = client.post("/v1/jobs", headers={**auth, "Content-Type": "application/json"},
                               data="[" * depth + "]" * depth)
        assert_error(response, 400, "malformed_json")


def test_top_level_array_is_422(client, auth):
    error = assert_error(client.post("/v1/label-sets", headers=auth, json=[1, 2]), 422, "invalid_request")
    assert error["details"][0]["pointer"] == ""


def test_nul_bytes_and_lone_surrogates_are_422(client, auth, make_label_set, add_adapter, count_rows):
    ls = make_label_set()
    add_adapter(ls["id"])
    body = f'{{"label_set_id": "{ls["id"]}", "items": [{{"text": "a\\u0000b"}}, {{"text": "\\ud800"}}]}}'
    response = client.post("/v1/jobs", headers={**auth, "Content-Type": "application/json"}, data=body)
    error = assert_error(response, 422, "invalid_request")
    assert [d["pointer"] for d in error["details"]] == ["/items/0/text", "/items/1/text"]
    assert count_rows(Job) == 0


def test_body_over_the_size_limit_is_413(make_app, auth, count_rows):
    client = make_app(max_body_bytes=1000).test_client()
    response = client.post("/v1/label-sets", headers=auth,
                           json={"name": "x" * 2000, "labels": [{"name": "a"}, {"name": "b"}]})
    error = assert_error(response, 413, "too_large")
    assert "1000 bytes" in error["message"]
    assert count_rows(LabelSet) == 0


def test_unknown_route_is_404_and_wrong_method_405(client, auth):
    assert_error(client.get("/v1/nothing-here", headers=auth), 404, "not_found")
    response = client.delete("/v1/label-sets", headers=auth)
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"] and "POST" in response.headers["Allow"]


def test_unknown_top_level_field_is_rejected(client, auth):
    error = assert_error(client.post("/v1/jobs", headers=auth, json={"label_set": "x", "items": [{"text": "a"}]}),
                         422, "invalid_request")
    assert {d["pointer"] for d in error["details"]} == {"/label_set", "/label_set_id"}


def test_a_bug_answers_a_bare_500_in_the_error_format(make_app, auth, monkeypatch):
    from store import label_sets

    def explode(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(label_sets, "list_label_sets", explode)
    app = make_app()
    app.testing = False  # let the error handlers run as in production
    response = app.test_client().get("/v1/label-sets", headers=auth)
    error = assert_error(response, 500, "internal_error")
    assert "secret" not in json.dumps(error)


def test_nan_and_infinity_are_not_json(client, auth):
    response = client.post("/v1/jobs", headers={**auth, "Content-Type": "application/json"},
                           data='{"label_set_id": "x", "items": [{"text": "a", "meta": {"v": NaN}}]}')
    assert_error(response, 400, "malformed_json")


def test_integers_beyond_the_database_range_are_refused_not_crashed(client, auth, make_label_set, add_adapter):
    ls = make_label_set()
    add_adapter(ls["id"])
    huge = 2**70
    response = client.post("/v1/jobs", headers=auth, json={"label_set_id": ls["id"], "items": [{"text": "a"}],
                                                           "adapter_version": huge})
    assert_error(response, 422, "invalid_request")
    assert_error(client.post(f"/v1/label-sets/{ls['id']}/adapters/{huge}/activate", headers=auth), 404, "not_found")
    from store.results import encode_cursor
    job = client.post("/v1/jobs", headers=auth, json={"label_set_id": ls["id"], "items": [{"text": "a"}]}).get_json()
    response = client.get(f"/v1/jobs/{job['id']}/results?cursor={encode_cursor(huge)}", headers=auth)
    assert_error(response, 422, "invalid_cursor")


def test_nul_in_item_meta_is_422(client, auth, make_label_set, add_adapter, count_rows):
    ls = make_label_set()
    add_adapter(ls["id"])
    response = client.post("/v1/jobs", headers={**auth, "Content-Type": "application/json"},
                           data=f'{{"label_set_id": "{ls["id"]}", '
                                '"items": [{"text": "a", "meta": {"k": ["x\\u0000"]}}]}')
    error = assert_error(response, 422, "invalid_request")
    assert error["details"][0]["pointer"] == "/items/0/meta"
    assert count_rows(Job) == 0


def test_ids_that_cannot_be_ids_are_404_before_the_database(client, auth):
    for url in ["/v1/label-sets/a%00b", "/v1/jobs/%F0%9F%92%A5", "/v1/jobs/" + "x" * 65]:
        assert_error(client.get(url, headers=auth), 404, "not_found")


def test_an_item_id_string_or_integer_is_refused_at_its_own_pointer(client, auth, make_label_set, add_adapter):
    """Pointers address the request, not pydantic's union members ("…/id/constrained-int"), and a
    string id's problem is not buried under "Input should be a valid integer"."""
    ls = make_label_set()
    add_adapter(ls["id"])
    for item_id, message in [("a\u0000", "NUL"), (-1, "greater than or equal to 0"), (1.5, "valid integer")]:
        response = client.post("/v1/jobs", headers=auth, json={"label_set_id": ls["id"],
                                                               "items": [{"id": item_id, "text": "a"}]})
        error = assert_error(response, 422, "invalid_request")
        assert {d["pointer"] for d in error["details"]} == {"/items/0/id"}, error
        assert any(message in d["message"] for d in error["details"]) and "constrained" not in error["message"]
    layers = client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth, json={"config": {"layers": "all"}})
    assert {d["pointer"] for d in assert_error(layers, 422, "invalid_request")["details"]} == {"/config/layers"}
