"""POST /v1/jobs and reading jobs: validation, idempotency, chunks, results, cancel, broker down."""
from store.models import Chunk, Job, JobItem, Result


def submit(client, auth, ls_id, items, key=None, **extra):
    headers = {**auth, **({"Idempotency-Key": key} if key else {})}
    return client.post("/v1/jobs", headers=headers, json={"label_set_id": ls_id, "items": items, **extra})


def nothing_stored(count_rows):
    return count_rows(Job) == 0 and count_rows(JobItem) == 0 and count_rows(Chunk) == 0


def test_tag_job_is_stored_in_chunks_and_each_chunk_enqueued(make_app, auth, make_label_set, add_adapter,
                                                              clean_redis, count_rows, db):
    client = make_app(chunk_size=4).test_client()
    ls = make_label_set()
    add_adapter(ls["id"], version=3)
    items = [{"id": f"t-{i}", "text": f"text {i}", "meta": {"n": i}} for i in range(10)]
    response = submit(client, auth, ls["id"], items)
    assert response.status_code == 202
    job = response.get_json()
    assert job["id"].startswith("job_") and job["type"] == "tag" and job["status"] == "queued"
    assert job["adapter_version"] == 3 and job["progress"] == {"total": 10, "done": 0, "failed": 0}
    assert job["finished_at"] is None and job["error"] is None and job["metrics"] is None
    with db() as session:
        from sqlalchemy import select
        chunks = session.execute(select(Chunk.index, Chunk.size).where(Chunk.job_id == job["id"])
                                 .order_by(Chunk.index)).all()
        positions = session.execute(select(JobItem.position, JobItem.item_id, JobItem.meta)
                                    .where(JobItem.job_id == job["id"]).order_by(JobItem.position)).all()
    assert [tuple(c) for c in chunks] == [(0, 4), (1, 4), (2, 2)]
    assert [tuple(p) for p in positions] == [(i, f"t-{i}", {"n": i}) for i in range(10)]
    assert clean_redis.queued_tasks("tag") == [{"task": "reftag.tag_chunk", "args": []}] * 3  # a token per chunk


def test_chunks_group_items_of_similar_length(make_app, auth, make_label_set, add_adapter, clean_redis, db):
    # Batches pad to their longest text, so a chunk should not mix a tweet with an article.
    client = make_app(chunk_size=3).test_client()
    ls = make_label_set()
    add_adapter(ls["id"])
    lengths = [40, 2, 300, 5, 41, 299, 1, 42, 301]
    job = submit(client, auth, ls["id"], [{"text": "x" * n} for n in lengths]).get_json()
    with db() as session:
        from sqlalchemy import select
        chunk_of = dict(session.execute(select(JobItem.position, JobItem.chunk)
                                        .where(JobItem.job_id == job["id"])).all())
    groups = {}
    for position, chunk in chunk_of.items():
        groups.setdefault(chunk, set()).add(lengths[position])
    assert sorted(groups.values(), key=min) == [{1, 2, 5}, {40, 41, 42}, {299, 300, 301}]


def test_items_without_ids_get_their_position(client, auth, make_label_set, add_adapter, db):
    ls = make_label_set()
    add_adapter(ls["id"])
    job = submit(client, auth, ls["id"], [{"text": "a"}, {"text": "b", "id": 7}]).get_json()
    with db() as session:
        from sqlalchemy import select
        ids = session.scalars(select(JobItem.item_id).where(JobItem.job_id == job["id"])
                              .order_by(JobItem.position)).all()
    assert ids == ["0", "7"]


def test_pinned_adapter_version_is_used(client, auth, make_label_set, add_adapter):
    ls = make_label_set()
    add_adapter(ls["id"], version=1, active=False)
    add_adapter(ls["id"], version=2, active=True)
    assert submit(client, auth, ls["id"], [{"text": "a"}], adapter_version=1).get_json()["adapter_version"] == 1


def test_tagging_a_label_set_without_adapter_is_a_conflict(client, auth, make_label_set, count_rows, clean_redis):
    ls = make_label_set()
    response = submit(client, auth, ls["id"], [{"text": "a"}])
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "no_adapter" and "train" in error["message"]
    assert nothing_stored(count_rows) and clean_redis.queue_length("tag") == 0


def test_pinning_a_missing_adapter_version_is_a_conflict(client, auth, make_label_set, add_adapter, count_rows):
    ls = make_label_set()
    add_adapter(ls["id"], version=1)
    response = submit(client, auth, ls["id"], [{"text": "a"}], adapter_version=5)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "no_adapter" \
        and "version 5" in response.get_json()["error"]["message"]
    assert nothing_stored(count_rows)


def test_duplicate_item_ids_are_rejected_by_name(client, auth, make_label_set, add_adapter, count_rows):
    ls = make_label_set()
    add_adapter(ls["id"])
    response = submit(client, auth, ls["id"],
                      [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}, {"id": "a", "text": "z"}])
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "duplicate_item_ids" and "'a'" in error["message"]
    assert error["details"][0]["pointer"] == "/items/2/id"
    assert nothing_stored(count_rows)


def test_empty_text_is_rejected(client, auth, make_label_set, add_adapter, count_rows):
    ls = make_label_set()
    add_adapter(ls["id"])
    response = submit(client, auth, ls["id"], [{"text": "ok"}, {"text": ""}, {"text": " \n"}])
    assert response.status_code == 422
    assert [d["pointer"] for d in response.get_json()["error"]["details"]] == ["/items/1/text", "/items/2/text"]
    assert nothing_stored(count_rows)


def test_oversized_text_is_rejected_with_the_limit(make_app, auth, make_label_set, add_adapter, count_rows):
    client = make_app(max_text_chars=100).test_client()
    ls = make_label_set()
    add_adapter(ls["id"])
    response = submit(client, auth, ls["id"], [{"text": "ok"}, {"text": "x" * 101}])
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["details"][0]["pointer"] == "/items/1/text" and "limit is 100" in error["message"]
    assert nothing_stored(count_rows)


def test_too_many_items_is_refused_with_the_limit(make_app, auth, make_label_set, add_adapter, count_rows):
    client = make_app(max_job_items=5).test_client()
    ls = make_label_set()
    add_adapter(ls["id"])
    response = submit(client, auth, ls["id"], [{"text": f"t{i}"} for i in range(6)])
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "too_many_items" and "limit is 5" in error["message"]
    assert nothing_stored(count_rows)


def test_empty_item_list_and_missing_fields_are_rejected(client, auth, count_rows):
    response = client.post("/v1/jobs", headers=auth, json={"items": []})
    assert response.status_code == 422
    assert {d["pointer"] for d in response.get_json()["error"]["details"]} == {"/label_set_id", "/items"}
    assert nothing_stored(count_rows)


def test_wrong_item_types_are_rejected(client, auth, make_label_set, add_adapter, count_rows):
    ls = make_label_set()
    add_adapter(ls["id"])
    response = submit(client, auth, ls["id"], [{"text": 5}, "just a string", {"text": "a", "meta": [1]}],
                      adapter_version="1")
    assert response.status_code == 422
    pointers = {d["pointer"] for d in response.get_json()["error"]["details"]}
    assert {"/items/0/text", "/items/1", "/items/2/meta", "/adapter_version"} <= pointers
    assert nothing_stored(count_rows)


def test_same_idempotency_key_and_body_returns_the_same_job(client, auth, make_label_set, add_adapter, clean_redis,
                                                             count_rows):
    ls = make_label_set()
    add_adapter(ls["id"])
    first = submit(client, auth, ls["id"], [{"text": "a"}], key="order-17")
    again = submit(client, auth, ls["id"], [{"text": "a"}], key="order-17")
    assert first.status_code == again.status_code == 202
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count_rows(Job) == 1 and clean_redis.queue_length("tag") == 1


def test_same_idempotency_key_with_another_body_is_a_conflict(client, auth, make_label_set, add_adapter, count_rows):
    ls = make_label_set()
    add_adapter(ls["id"])
    submit(client, auth, ls["id"], [{"text": "a"}], key="order-17")
    response = submit(client, auth, ls["id"], [{"text": "b"}], key="order-17")
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "idempotency_conflict"
    assert count_rows(Job) == 1 and count_rows(JobItem) == 1


def test_idempotency_keys_are_per_tenant(client, make_tenant, make_label_set, add_adapter, auth, count_rows):
    other = make_tenant("globex")
    mine, theirs = make_label_set(), make_label_set(headers=other.headers)
    add_adapter(mine["id"])
    add_adapter(theirs["id"])
    a = submit(client, auth, mine["id"], [{"text": "a"}], key="k")
    b = submit(client, other.headers, theirs["id"], [{"text": "a"}], key="k")
    assert a.status_code == b.status_code == 202 and a.get_json()["id"] != b.get_json()["id"]


def write_results(db, job_id, positions, labels=("billing", "other"), status=None):
    """Results as a worker writes them (data setup; the API only reads these rows)."""
    with db() as session:
        for i in positions:
            session.add(Result(job_id=job_id, position=i, item_id=f"t-{i}", labels=[labels[i % 2]],
                               scores={labels[0]: 0.9 if i % 2 == 0 else 0.1, labels[1]: 0.1 if i % 2 == 0 else 0.9},
                               needs_review=False, adapter_version=1))
        job = session.get(Job, job_id)
        job.done += len(positions)
        job.status = status or job.status


def read_pages(client, auth, job_id, limit, cursor=None, max_pages=20):
    pages = []
    while len(pages) < max_pages:
        page = client.get(f"/v1/jobs/{job_id}/results?limit={limit}" + (f"&cursor={cursor}" if cursor else ""),
                          headers=auth).get_json()
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None or not page["results"]:
            break
    return pages


def test_results_are_paged_in_submission_order(client, auth, make_label_set, add_adapter, db):
    ls = make_label_set(labels=("billing", "other"))
    add_adapter(ls["id"])
    job = submit(client, auth, ls["id"], [{"id": f"t-{i}", "text": f"x{i}"} for i in range(7)]).get_json()
    write_results(db, job["id"], range(7), status="succeeded")
    pages = read_pages(client, auth, job["id"], limit=3)
    assert [len(p["results"]) for p in pages] == [3, 3, 1] and pages[-1]["next_cursor"] is None
    seen = [r for p in pages for r in p["results"]]
    assert [r["item_id"] for r in seen] == [f"t-{i}" for i in range(7)]
    assert seen[0] == {"item_id": "t-0", "labels": ["billing"], "scores": {"billing": 0.9, "other": 0.1},
                       "needs_review": False, "confidence": None, "review": None, "adapter_version": 1,
                       "error": None}
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth).get_json()["progress"]["done"] == 7


def test_paging_a_running_job_never_skips_a_result(client, auth, make_label_set, add_adapter, db):
    ls = make_label_set(labels=("billing", "other"))
    add_adapter(ls["id"])
    job = submit(client, auth, ls["id"], [{"id": f"t-{i}", "text": f"x{i}"} for i in range(6)]).get_json()
    write_results(db, job["id"], [0, 1, 4, 5], status="running")  # chunk 2-3 not written yet
    pages = read_pages(client, auth, job["id"], limit=10)
    assert [r["item_id"] for r in pages[0]["results"]] == ["t-0", "t-1"]
    cursor = pages[0]["next_cursor"]
    assert cursor is not None  # more will come: the job is still running
    assert client.get(f"/v1/jobs/{job['id']}/results?cursor={cursor}", headers=auth).get_json() == {
        "results": [], "next_cursor": cursor}
    write_results(db, job["id"], [2, 3], status="succeeded")
    rest = read_pages(client, auth, job["id"], limit=10, cursor=cursor)
    assert [r["item_id"] for p in rest for r in p["results"]] == ["t-2", "t-3", "t-4", "t-5"]
    assert rest[-1]["next_cursor"] is None


def test_bad_cursor_and_limit_are_rejected(client, auth, make_label_set, add_adapter):
    ls = make_label_set()
    add_adapter(ls["id"])
    job = submit(client, auth, ls["id"], [{"text": "a"}]).get_json()
    bad_cursor = client.get(f"/v1/jobs/{job['id']}/results?cursor=garbage!", headers=auth)
    assert bad_cursor.status_code == 422 and bad_cursor.get_json()["error"]["code"] == "invalid_cursor"
    bad_limit = client.get(f"/v1/jobs/{job['id']}/results?limit=0", headers=auth)
    assert bad_limit.status_code == 422 and bad_limit.get_json()["error"]["details"][0]["pointer"] == "/limit"


def test_results_stream_as_jsonl_and_csv(client, auth, make_label_set, add_adapter, db):
    ls = make_label_set(labels=("billing", "other"))
    add_adapter(ls["id"])
    job = submit(client, auth, ls["id"], [{"id": f"t-{i}", "text": f"x{i}"} for i in range(3)]).get_json()
    write_results(db, job["id"], range(3), status="succeeded")
    jsonl = client.get(f"/v1/jobs/{job['id']}/results?format=jsonl", headers=auth)
    assert jsonl.status_code == 200 and jsonl.mimetype == "application/x-ndjson"
    import json
    assert [json.loads(line)["item_id"] for line in jsonl.get_data(as_text=True).splitlines()] == ["t-0", "t-1", "t-2"]
    csv_text = client.get(f"/v1/jobs/{job['id']}/results?format=csv", headers=auth).get_data(as_text=True)
    lines = csv_text.splitlines()
    assert lines[0] == "item_id,text,labels,needs_review,adapter_version,error,score:billing,score:other"
    assert lines[1] == "t-0,x0,billing,false,1,,0.9,0.1" and len(lines) == 4


def test_cancel_marks_the_job_cancelled_and_keeps_results(client, auth, make_label_set, add_adapter, db):
    ls = make_label_set(labels=("billing", "other"))
    add_adapter(ls["id"])
    job = submit(client, auth, ls["id"], [{"text": f"x{i}"} for i in range(4)]).get_json()
    write_results(db, job["id"], [0, 1], status="running")
    response = client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
    assert response.status_code == 202
    assert response.get_json()["status"] == "cancelled" and response.get_json()["finished_at"] is not None
    page = client.get(f"/v1/jobs/{job['id']}/results", headers=auth).get_json()
    assert len(page["results"]) == 2 and page["next_cursor"] is None
    again = client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "job_finished"


def test_submission_while_redis_is_down_is_503_and_stores_nothing(client, auth, make_label_set, add_adapter,
                                                                  redis_server, count_rows):
    ls = make_label_set()
    add_adapter(ls["id"])
    redis_server.stop()
    try:
        response = submit(client, auth, ls["id"], [{"text": "a"}, {"text": "b"}], key="while-down")
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert response.get_json()["error"]["code"] == "broker_unavailable"
        assert nothing_stored(count_rows)
        # reads keep working while the broker is down
        assert client.get(f"/v1/label-sets/{ls['id']}", headers=auth).status_code == 200
    finally:
        redis_server.start()
    retried = submit(client, auth, ls["id"], [{"text": "a"}, {"text": "b"}], key="while-down")
    assert retried.status_code == 202 and count_rows(Job) == 1


def test_train_while_redis_is_down_is_503_and_stores_nothing(client, auth, make_label_set, redis_server, count_rows):
    ls = make_label_set(labels=("a", "b"))
    rows = [{"text": f"{label}{i}", "label": label} for label in "ab" for i in range(4)]
    client.post(f"/v1/label-sets/{ls['id']}/examples", headers=auth, json={"examples": rows})
    redis_server.stop()
    try:
        response = client.post(f"/v1/label-sets/{ls['id']}/train", headers=auth, json={})
        assert response.status_code == 503 and "Retry-After" in response.headers
        assert count_rows(Job) == 0
    finally:
        redis_server.start()


def test_concurrent_submissions_with_one_idempotency_key_make_one_job(app, auth, make_label_set, add_adapter,
                                                                       count_rows, clean_redis):
    from concurrent.futures import ThreadPoolExecutor

    ls = make_label_set()
    add_adapter(ls["id"])
    body = {"label_set_id": ls["id"], "items": [{"text": f"t{i}"} for i in range(50)]}

    def post(_):
        response = app.test_client().post("/v1/jobs", headers={**auth, "Idempotency-Key": "race"}, json=body)
        return response.status_code, response.get_json()["id"]

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(post, range(6)))
    assert {status for status, _ in answers} == {202}
    assert len({job_id for _, job_id in answers}) == 1
    assert count_rows(Job) == 1 and count_rows(JobItem) == 50 and clean_redis.queue_length("tag") == 1
