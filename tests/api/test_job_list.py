"""GET /v1/jobs: the tenant's jobs, newest first, filtered by label set, status or type."""


def submit(client, auth, ls_id, n=2):
    response = client.post("/v1/jobs", headers=auth,
                           json={"label_set_id": ls_id, "items": [{"text": f"text {i}"} for i in range(n)]})
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def test_jobs_are_listed_newest_first_and_filtered(client, auth, make_label_set, add_adapter, clean_redis):
    first, second = make_label_set("first"), make_label_set("second")
    for ls in (first, second):
        add_adapter(ls["id"])
    a, b, c = submit(client, auth, first["id"]), submit(client, auth, second["id"]), submit(client, auth, first["id"])
    assert client.post(f"/v1/jobs/{a}/cancel", headers=auth).status_code == 202

    listed = client.get("/v1/jobs", headers=auth)
    assert listed.status_code == 200
    assert [job["id"] for job in listed.get_json()["jobs"]] == [c, b, a]
    assert listed.get_json()["jobs"][0]["progress"] == {"total": 2, "done": 0, "failed": 0}

    def ids(query):
        return [job["id"] for job in client.get(f"/v1/jobs?{query}", headers=auth).get_json()["jobs"]]

    assert ids(f"label_set_id={first['id']}") == [c, a]
    assert ids("status=cancelled") == [a]
    assert ids("status=queued&limit=1") == [c]
    assert ids("type=train") == []


def test_another_tenants_jobs_are_not_listed(client, auth, make_tenant, make_label_set, add_adapter, clean_redis):
    ls = make_label_set()
    add_adapter(ls["id"])
    submit(client, auth, ls["id"])
    other = make_tenant("other")
    assert client.get("/v1/jobs", headers=other.headers).get_json() == {"jobs": []}


def test_a_bad_filter_is_a_422_naming_the_parameter(client, auth):
    response = client.get("/v1/jobs?status=done&limit=0", headers=auth)
    assert response.status_code == 422
    pointers = {d["pointer"] for d in response.get_json()["error"]["details"]}
    assert pointers == {"/status", "/limit"}
    assert client.get("/v1/jobs?colour=red", headers=auth).status_code == 422
