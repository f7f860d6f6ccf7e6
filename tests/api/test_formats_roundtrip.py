"""Results exported in every format read back in as the same examples — with Chinese news titles
(tests/fixtures/news_zh) and Chinese label names, which must come out as written, in the set's
order, and open right in Excel (CSV with a BOM)."""
import csv
import io
import json
from pathlib import Path

import pytest

from store.models import Example, Job, Result

NEWS_ZH = Path(__file__).resolve().parents[1] / "fixtures" / "news_zh"
# The set's order is not code-point order: nothing may sort the labels by their bytes.
CHINESE = {"news_finance": "财经", "news_edu": "教育", "news_travel": "旅游", "news_sports": "体育",
           "news_tech": "科技"}
LABELS = list(CHINESE.values())


@pytest.fixture(scope="module")
def zh_rows():
    rows = []
    with open(NEWS_ZH / "train.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["label"] in CHINESE and "\n" not in row["text"]:
                rows.append({"text": row["text"], "label": CHINESE[row["label"]]})
            if len(rows) == 40:
                return rows
    return rows


def tagged_job(client, auth, db, add_adapter, make_label_set, rows, multi_label=False, name="新闻"):
    """A label set with Chinese labels and a finished tag job over `rows`, its results as a
    worker writes them (the label of each row, scores that favour it)."""
    ls = make_label_set(name=name, labels=tuple(LABELS), multi_label=multi_label)
    add_adapter(ls["id"], version=3)
    items = [{"id": f"新-{i}", "text": r["text"]} for i, r in enumerate(rows)]
    job = client.post("/v1/jobs", headers=auth, json={"label_set_id": ls["id"], "items": items}).get_json()
    with db() as session:
        for i, row in enumerate(rows):
            labels = [row["label"], LABELS[(LABELS.index(row["label"]) + 1) % 5]] if multi_label and i % 3 == 0 \
                else [row["label"]]
            scores = {name: (0.9 if name in labels else 0.02) for name in LABELS}
            session.add(Result(job_id=job["id"], position=i, item_id=items[i]["id"], labels=labels, scores=scores,
                               needs_review=False, adapter_version=3))
        session.get(Job, job["id"]).status = "succeeded"
    return ls, job


def stored(db, ls_id):
    from sqlalchemy import select

    with db() as session:
        return {e.text: e.labels for e in session.scalars(select(Example).where(Example.label_set_id == ls_id))}


def exported(client, auth, job, fmt, **params):
    query = "&".join(f"{k}={v}" for k, v in {"format": fmt, **params}.items())
    response = client.get(f"/v1/jobs/{job['id']}/results?{query}", headers=auth)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


ROUND_TRIPS = [  # export format and parameters → how that export is uploaded again
    ("jsonl", {}, {"format": "jsonl"}),
    ("csv", {}, {"format": "csv"}),
    ("csv", {"bom": "true"}, {"format": "csv"}),
    ("label_studio", {"text_field": "新闻", "label_field": "类别", "to_name": "新闻"},
     {"format": "label_studio", "text_field": "新闻", "labels_from": "predictions"}),
    ("label_studio_min", {}, {"format": "label_studio_min"}),
    ("label_studio_csv", {"label_field": "topic"}, {"format": "label_studio_csv"}),
    ("doccano", {}, {"format": "doccano"}),
    ("argilla", {}, {"format": "argilla", "labels_from": "predictions"}),
]


@pytest.mark.parametrize("multi_label", [False, True], ids=["single", "multi"])
def test_every_export_reads_back_as_the_same_examples(client, auth, db, add_adapter, make_label_set, zh_rows,
                                                      multi_label):
    ls, job = tagged_job(client, auth, db, add_adapter, make_label_set, zh_rows, multi_label)
    with db() as session:
        from sqlalchemy import select

        expected = {r["text"]: [] for r in zh_rows}
        for result in session.scalars(select(Result).where(Result.job_id == job["id"])):
            expected[zh_rows[result.position]["text"]] = result.labels
    for n, (fmt, export_params, upload_params) in enumerate(ROUND_TRIPS):
        body = exported(client, auth, job, fmt, **export_params).get_data()
        again = client.post("/v1/label-sets", headers=auth, json={
            "name": f"again-{n}", "multi_label": multi_label, "labels": [{"name": name} for name in LABELS]}).get_json()
        query = "&".join(f"{k}={v}" for k, v in upload_params.items())
        response = client.post(f"/v1/label-sets/{again['id']}/examples?{query}", headers=auth, data=body)
        assert response.status_code == 201, (fmt, response.get_json())
        assert response.get_json() == {"added": len(zh_rows), "duplicates": 0, "rejected": [],
                                       "train_job_id": None}, fmt
        assert stored(db, again["id"]) == expected, fmt


def test_chinese_labels_keep_the_sets_order_and_are_not_escaped(client, auth, db, add_adapter, make_label_set,
                                                               zh_rows):
    ls, job = tagged_job(client, auth, db, add_adapter, make_label_set, zh_rows[:3])
    label_set = client.get(f"/v1/label-sets/{ls['id']}", headers=auth)
    assert label_set.get_json()["name"] == "新闻" and [x["name"] for x in label_set.get_json()["labels"]] == LABELS
    assert "财经" in label_set.get_data(as_text=True) and "\\u" not in label_set.get_data(as_text=True)
    page = client.get(f"/v1/jobs/{job['id']}/results", headers=auth).get_json()
    assert list(page["results"][0]["scores"]) == LABELS  # the set's order, not sorted
    jsonl = exported(client, auth, job, "jsonl").get_data(as_text=True)
    first = jsonl.splitlines()[0]
    assert zh_rows[0]["text"] in first and list(json.loads(first)["scores"]) == LABELS

    csv_text = exported(client, auth, job, "csv").get_data(as_text=True)
    header, row = list(csv.reader(io.StringIO(csv_text)))[:2]
    assert header[-5:] == [f"score:{name}" for name in LABELS]
    assert row[:3] == ["新-0", zh_rows[0]["text"], zh_rows[0]["label"]]


def test_csv_with_bom_opens_as_utf8_in_excel(client, auth, db, add_adapter, make_label_set, zh_rows):
    _, job = tagged_job(client, auth, db, add_adapter, make_label_set, zh_rows[:2])
    plain = exported(client, auth, job, "csv").get_data()
    with_bom = exported(client, auth, job, "csv", bom="true")
    assert not plain.startswith(b"\xef\xbb\xbf")
    assert with_bom.get_data() == b"\xef\xbb\xbf" + plain and with_bom.mimetype == "text/csv"
    assert exported(client, auth, job, "label_studio_csv", bom="1").get_data().startswith(b"\xef\xbb\xbf")
    # Excel on a Chinese Windows reads a CSV without BOM as GBK: the BOM is what makes it UTF-8
    assert zh_rows[0]["text"] in with_bom.get_data().decode("utf-8-sig")


def test_label_studio_export_is_tasks_with_predictions(client, auth, db, add_adapter, make_label_set, zh_rows):
    _, job = tagged_job(client, auth, db, add_adapter, make_label_set, zh_rows[:2])
    tasks = exported(client, auth, job, "label_studio", label_field="category", to_name="news").get_json()
    assert tasks[0] == {"data": {"text": zh_rows[0]["text"], "item_id": "新-0"}, "predictions": [
        {"result": [{"from_name": "category", "to_name": "news", "type": "choices",
                     "value": {"choices": [zh_rows[0]["label"]]}}], "score": 0.9, "model_version": "reftag-v3"}]}


def test_argilla_export_has_score_lists_for_multi_label(client, auth, db, add_adapter, make_label_set, zh_rows):
    _, job = tagged_job(client, auth, db, add_adapter, make_label_set, zh_rows[:1], multi_label=True)
    [record] = exported(client, auth, job, "argilla", label_field="topics").get_json()
    labels = [zh_rows[0]["label"], LABELS[(LABELS.index(zh_rows[0]["label"]) + 1) % 5]]
    assert record["id"] == "新-0" and record["fields"] == {"text": zh_rows[0]["text"]}
    assert record["suggestions"] == {"topics": {"value": labels, "score": [0.9, 0.9], "agent": "reftag-v3"}}
    assert record["responses"] == {}


def test_csv_exports_keep_formulas_inert_and_read_back_unchanged(client, auth, db, add_adapter, make_label_set):
    """A text that a spreadsheet would run as a formula is written behind a `'` in CSV exports
    (shown as text by Excel and LibreOffice); uploading the file again gives the text back."""
    rows = [{"text": '=HYPERLINK("http://evil.example","click")', "label": LABELS[0]},
            {"text": "+1 great phone", "label": LABELS[1]}, {"text": "-lrb- fine -rrb-", "label": LABELS[2]},
            {"text": "@everyone read this", "label": LABELS[3]}, {"text": "plain text", "label": LABELS[4]}]
    _, job = tagged_job(client, auth, db, add_adapter, make_label_set, rows)
    for fmt, params in (("csv", {}), ("label_studio_csv", {"label_field": "topic"})):
        body = exported(client, auth, job, fmt, **params).get_data(as_text=True)
        cells = [cell for row in csv.reader(io.StringIO(body)) for cell in row]
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in cells), (fmt, cells)
        assert "'=HYPERLINK(\"http://evil.example\",\"click\")" in cells and "plain text" in cells
        again = make_label_set(name=f"again-{fmt}", labels=tuple(LABELS))
        response = client.post(f"/v1/label-sets/{again['id']}/examples?format={fmt}", headers=auth,
                               data=body.encode())
        assert response.status_code == 201, response.get_json()
        assert stored(db, again["id"]) == {r["text"]: [r["label"]] for r in rows}, fmt
