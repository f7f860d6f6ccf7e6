"""Examples uploaded in other tools' formats: Label Studio (JSON, JSON-MIN, CSV), doccano, Argilla.

The bodies are what those tools write (field for field, as their exporters produce them); rows
without a label are listed in `rejected`, a bad row rejects the upload and is named by its row.
"""
import json

from store.models import Example


def upload(client, auth, ls, fmt, body, **params):
    query = "&".join(f"{k}={v}" for k, v in {"format": fmt, **params}.items())
    data = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return client.post(f"/v1/label-sets/{ls['id']}/examples?{query}", headers=auth, data=data.encode("utf-8"))


def stored(db, ls_id):
    from sqlalchemy import select

    with db() as session:
        return {e.text: e.labels for e in session.scalars(select(Example).where(Example.label_set_id == ls_id))}


def ls_task(task_id, text, annotations=(), predictions=()):
    """A task as Label Studio's JSON export writes it (ExportDataSerializer)."""
    return {
        "id": task_id, "annotations": list(annotations), "file_upload": "a1b2c3d4-reviews.csv", "drafts": [],
        "predictions": list(predictions), "data": {"review": text, "shop": "eu"}, "meta": {},
        "created_at": "2024-05-02T09:12:44.218473Z", "updated_at": "2024-05-02T10:01:02.118221Z", "inner_id": task_id,
        "total_annotations": len(annotations), "cancelled_annotations": 0, "total_predictions": len(predictions),
        "comment_count": 0, "unresolved_comment_count": 0, "last_comment_updated_at": None, "project": 3,
        "updated_by": 1, "comment_authors": [],
    }


def ls_annotation(annotation_id, choices, task_id, updated_at="2024-05-02T10:01:02.0Z", cancelled=False,
                  ground_truth=False, from_name="topic"):
    result = [] if cancelled else [{"value": {"choices": list(choices)}, "id": f"r{annotation_id}",
                                    "from_name": from_name, "to_name": "review", "type": "choices",
                                    "origin": "manual"}]
    return {"id": annotation_id, "completed_by": 1, "result": result, "was_cancelled": cancelled,
            "ground_truth": ground_truth, "created_at": "2024-05-02T10:00:00.0Z", "updated_at": updated_at,
            "draft_created_at": None, "lead_time": 12.5, "prediction": {}, "result_count": 0, "unique_id": "u",
            "import_id": None, "last_action": None, "task": task_id, "project": 3, "updated_by": 1,
            "parent_prediction": None, "parent_annotation": None, "last_created_by": None}


def test_label_studio_json_takes_each_tasks_latest_annotation_and_lists_unlabelled_tasks(client, auth,
                                                                                        make_label_set, db):
    ls = make_label_set()
    tasks = [
        ls_task(11, "I was charged twice", [ls_annotation(1, ["billing"], 11)]),
        ls_task(12, "Nobody looked at me yet"),
        ls_task(13, "Parcel is late", [ls_annotation(2, ["other"], 13, updated_at="2024-05-02T10:00:00Z"),
                                       ls_annotation(3, ["delivery"], 13, updated_at="2024-05-03T08:00:00Z")]),
        ls_task(14, "Skipped by the annotator", [ls_annotation(4, [], 14, cancelled=True)]),
        ls_task(15, "Reviewed", [ls_annotation(5, ["billing"], 15, ground_truth=True,
                                               updated_at="2024-05-01T00:00:00Z"),
                                 ls_annotation(6, ["other"], 15)]),
    ]
    response = upload(client, auth, ls, "label_studio", tasks, text_field="review")
    assert response.status_code == 201, response.get_json()
    answer = response.get_json()
    assert answer["added"] == 3 and answer["duplicates"] == 0
    assert [r["index"] for r in answer["rejected"]] == [1, 3]
    assert "task 12" in answer["rejected"][0]["reason"] and "task 14" in answer["rejected"][1]["reason"]
    assert stored(db, ls["id"]) == {"I was charged twice": ["billing"], "Parcel is late": ["delivery"],
                                    "Reviewed": ["billing"]}


def test_label_studio_unknown_label_is_named_at_its_task_not_at_a_shifted_row(client, auth, make_label_set,
                                                                             count_rows):
    ls = make_label_set()
    tasks = [ls_task(1, "not labelled"), ls_task(2, "fine", [ls_annotation(1, ["billing"], 2)]),
             ls_task(3, "odd one", [ls_annotation(2, ["shipping"], 3)])]
    response = upload(client, auth, ls, "label_studio", tasks, text_field="review")
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "invalid_examples" and "'shipping'" in error["message"]
    assert [d["pointer"] for d in error["details"]] == ["/examples/2/label"]
    assert count_rows(Example) == 0


def test_malformed_label_studio_rows_are_each_reported_and_nothing_stored(client, auth, make_label_set, count_rows):
    ls = make_label_set()
    tasks = [ls_task(1, "ok", [ls_annotation(1, ["billing"], 1)]), "not a task", {"id": 3, "annotations": []},
             {**ls_task(4, "x", [ls_annotation(2, ["billing"], 4)]), "data": {"body": "wrong key"}},
             ls_task(5, "bad result", [{**ls_annotation(3, ["billing"], 5), "result": {"choices": "billing"}}])]
    response = upload(client, auth, ls, "label_studio", tasks, text_field="review")
    assert response.status_code == 422
    pointers = [d["pointer"] for d in response.get_json()["error"]["details"]]
    assert pointers == ["/examples/1", "/examples/2", "/examples/3/data", "/examples/4"]
    assert count_rows(Example) == 0


def test_label_studio_predictions_are_read_only_when_asked(client, auth, make_label_set, db):
    ls = make_label_set()
    prediction = {"id": 7, "model_version": "reftag-v2", "score": 0.8, "created_ago": "2 hours",
                  "result": [{"from_name": "topic", "to_name": "review", "type": "choices",
                              "value": {"choices": ["delivery"]}}], "task": 1}
    tasks = [ls_task(1, "where is my parcel", predictions=[prediction])]
    assert upload(client, auth, ls, "label_studio", tasks, text_field="review").get_json()["error"]["code"] \
        == "no_labelled_rows"
    response = upload(client, auth, ls, "label_studio", tasks, text_field="review", labels_from="predictions")
    assert response.status_code == 201 and stored(db, ls["id"]) == {"where is my parcel": ["delivery"]}


def test_several_choices_tags_need_label_field(client, auth, make_label_set, db):
    ls = make_label_set()
    annotation = ls_annotation(1, ["billing"], 1)
    annotation["result"].append({"value": {"choices": ["urgent"]}, "id": "r9", "from_name": "priority",
                                 "to_name": "review", "type": "choices"})
    tasks = [ls_task(1, "refund now", [annotation])]
    ambiguous = upload(client, auth, ls, "label_studio", tasks, text_field="review")
    assert ambiguous.status_code == 422 and ambiguous.get_json()["error"]["code"] == "ambiguous_field"
    assert "priority, topic" in ambiguous.get_json()["error"]["message"]
    chosen = upload(client, auth, ls, "label_studio", tasks, text_field="review", label_field="topic")
    assert chosen.status_code == 201 and stored(db, ls["id"]) == {"refund now": ["billing"]}


def test_label_studio_json_min_reads_single_and_multiple_choices(client, auth, make_label_set, db):
    ls = make_label_set(multi_label=True)
    records = [  # as Label Studio's JSON-MIN export writes them
        {"review": "late and overcharged", "id": 21, "topic": {"choices": ["billing", "delivery"]}, "annotator": 1,
         "annotation_id": 31, "created_at": "2024-05-02T10:00:00.0Z", "updated_at": "2024-05-02T10:00:00.0Z",
         "lead_time": 4.2},
        {"review": "thanks!", "id": 22, "topic": "other", "annotator": 1, "annotation_id": 32,
         "created_at": "2024-05-02T10:00:00.0Z", "updated_at": "2024-05-02T10:00:00.0Z", "lead_time": 1.0},
        {"review": "not yet", "id": 23},
    ]
    response = upload(client, auth, ls, "label_studio_min", records, text_field="review")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["rejected"] == [{"index": 2, "reason": "no 'topic' (task not labelled yet)"}]
    assert stored(db, ls["id"]) == {"late and overcharged": ["billing", "delivery"], "thanks!": ["other"]}


def test_label_studio_csv_as_label_studio_writes_it(client, auth, make_label_set, db):
    ls = make_label_set(multi_label=True)
    # label-studio-sdk's csv2 exporter: sorted columns, QUOTE_NONNUMERIC, several choices as JSON
    body = ('"annotation_id","annotator","created_at","id","lead_time","review","topic","updated_at"\n'
            '31,"ann@example.com","2024-05-02T10:00:00.0Z",21,4.2,"late, and overcharged",'
            '"{""choices"": [""billing"", ""delivery""]}","2024-05-02T10:00:00.0Z"\n'
            '32,"ann@example.com","2024-05-02T10:00:00.0Z",22,1.0,"thanks!","other","2024-05-02T10:00:00.0Z"\n')
    response = upload(client, auth, ls, "label_studio_csv", body, text_field="review")
    assert response.status_code == 201, response.get_json()
    assert stored(db, ls["id"]) == {"late, and overcharged": ["billing", "delivery"], "thanks!": ["other"]}


def test_doccano_jsonl_labels_are_lists(client, auth, make_label_set, db):
    ls = make_label_set()
    body = "\n".join(json.dumps(r) for r in [
        {"id": 1, "text": "refund please", "label": ["billing"]},
        {"id": 2, "text": "not reviewed", "label": []},
        {"id": 3, "text": "parcel lost", "label": ["delivery"], "Comments": []},
    ])
    response = upload(client, auth, ls, "doccano", body)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["rejected"] == [{"index": 1, "reason": "no label (empty `label` list)"}]
    assert stored(db, ls["id"]) == {"refund please": ["billing"], "parcel lost": ["delivery"]}


def test_argilla_records_take_the_majority_response(client, auth, make_label_set, db):
    ls = make_label_set()
    records = [  # Record.to_dict() of Argilla 2.x
        {"id": "r1", "fields": {"text": "refund please"}, "metadata": {}, "vectors": {}, "_server_id": None,
         "suggestions": {"label": {"value": "other", "score": 0.6, "agent": "m"}},
         "responses": {"label": [{"value": "billing", "user_id": "u1"}, {"value": "billing", "user_id": "u2"},
                                 {"value": "other", "user_id": "u3"}]}},
        {"id": "r2", "fields": {"text": "only a suggestion"}, "metadata": {}, "vectors": {}, "_server_id": None,
         "suggestions": {"label": {"value": "delivery", "score": 0.7, "agent": "m"}}, "responses": {}},
    ]
    response = upload(client, auth, ls, "argilla", records)
    assert response.status_code == 201, response.get_json()
    assert [r["index"] for r in response.get_json()["rejected"]] == [1]
    assert stored(db, ls["id"]) == {"refund please": ["billing"]}


def test_argilla_v1_feedback_records_and_jsonl(client, auth, make_label_set, db):
    ls = make_label_set(multi_label=True)
    records = [  # FeedbackDataset records (Argilla 1.x), one per line
        {"fields": {"text": "late and overcharged"}, "metadata": {}, "external_id": "a",
         "responses": [{"user_id": "u1", "status": "submitted",
                        "values": {"topics": {"value": ["billing", "delivery"]}}},
                       {"user_id": "u2", "status": "discarded", "values": {"topics": {"value": ["other"]}}}],
         "suggestions": [{"question_name": "topics", "value": ["billing"], "score": [0.9], "agent": "m"}]},
    ]
    response = upload(client, auth, ls, "argilla", "\n".join(json.dumps(r) for r in records))
    assert response.status_code == 201, response.get_json()
    assert stored(db, ls["id"]) == {"late and overcharged": ["billing", "delivery"]}


def test_a_row_with_two_labels_in_a_single_label_set_is_named(client, auth, make_label_set, count_rows):
    ls = make_label_set()
    body = "\n".join(json.dumps(r) for r in [{"text": "a", "label": []}, {"text": "b", "label": ["billing", "other"]}])
    response = upload(client, auth, ls, "doccano", body)
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["pointer"] == "/examples/1/label"
    assert count_rows(Example) == 0


def test_unknown_format_parameters_are_422_with_a_pointer(client, auth, make_label_set):
    ls = make_label_set()
    response = upload(client, auth, ls, "label_studio", [], labels_from="models")
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["pointer"] == "/labels_from"
