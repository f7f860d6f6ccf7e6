"""Chinese (and the rest of Unicode) at the edge: what must be accepted is stored and returned
exactly as sent — full-width punctuation, traditional characters, mixed scripts, emoji with
skin tones, ZWJ sequences, flags and tag sequences, combining marks, ideographic spaces — and
what is not text (blank in any script, lone surrogates, NUL, too long, not UTF-8) is refused
with a 4xx that points at the field, storing nothing. The English versions of the refusals are
in test_hostile_table.py, test_error_format.py and beside each endpoint's tests."""
from __future__ import annotations

import csv
import io
import json
import unicodedata

import pytest

from store import jobs, results
from store.models import Example, Job, JobItem, Label, LabelSet

JSON = "application/json"

SCOTLAND = "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"  # a flag of tag characters
# Texts a Chinese-speaking team really sends, each stored and returned exactly.
ACCEPTED = {
    "full-width punctuation": "退款怎么还没到？！「急」，谢谢。（订单：１２３）",
    "traditional characters": "繁體中文：請問我的包裹何時送達？臺灣、香港用戶",
    "mixed scripts": "订单 order #123 の配送状況は？배송 조회 부탁드립니다 — merci",
    "emoji": "太棒了👍🏽 家人👨\u200d👩\u200d👧\u200d👦 国旗🇨🇳🇹🇼🇯🇵 苏格兰" + SCOTLAND,
    "combining marks": "cafe\u0301 与 café 不同；한국어(NFD): " + unicodedata.normalize("NFD", "한국어"),
    "ideographic spaces": "\u3000\u3000首行缩进两格\u3000，末尾也有\u3000",
    "astral CJK and variation selectors": "𠮷野家 葛\U000e0100城 ㊗️",
    "invisible characters inside text": "零\u200b宽\u200d字符\ufeff在中间",
}
TEXTS = list(ACCEPTED.values())
LABELS = ["退款", "物流", "其他 other", "繁體標籤", "表情😀"]

# Texts with nothing to read in them: blank for the model, so refused like "   ".
BLANK = {
    "ideographic spaces": "\u3000\u3000\u3000",
    "ideographic and ASCII spaces, tab, newline, NBSP": "\u3000 \t\n\u00a0\u3000",
    "zero-width space, joiner, non-joiner, BOM": "\u200b\u200d\u200c\ufeff",
    "word joiner and ideographic spaces": "\u2060\u3000\u2060",
    "a variation selector and a Hangul filler": "\ufe0f\u3164",
}


def raw(template: str, **strings: str) -> bytes:
    """A JSON body as bytes, with `strings` spliced in as written (JSON escapes kept as escapes:
    a lone surrogate cannot be made by json.dumps of a Python str)."""
    return template.format(**strings).encode("utf-8")


@pytest.fixture
def label_set(make_label_set, add_adapter):
    ls = make_label_set("客服工单", labels=tuple(LABELS))
    add_adapter(ls["id"])
    return ls


def stored_rows(count_rows) -> tuple[int, ...]:
    return count_rows(LabelSet), count_rows(Label), count_rows(Example), count_rows(Job), count_rows(JobItem)


def refused(response, status: int = 422) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    error = response.get_json()["error"]
    assert error["code"] and error["message"], error
    return error


def pointers(error: dict) -> list[str]:
    return [d.get("pointer") for d in error["details"]]


# --- accepted: stored and returned exactly --------------------------------------------------------


def test_chinese_traditional_and_emoji_label_names_round_trip_exactly(client, auth, db):
    body = {"name": "工单分类（繁體／简体）", "labels": [
        {"name": name, "description": f"{name}：说明「{i}」"} for i, name in enumerate(LABELS)]}
    created = client.post("/v1/label-sets", headers=auth, json=body)
    assert created.status_code == 201, created.get_json()
    fetched = client.get(f"/v1/label-sets/{created.get_json()['id']}", headers=auth).get_json()
    for answer in (created.get_json(), fetched):
        assert answer["name"] == body["name"]
        assert answer["labels"] == body["labels"]


def test_label_names_in_two_unicode_forms_are_kept_as_sent(client, auth):
    # Not normalised: the names come back in the form they were given (NFC and NFD Hangul).
    names = [unicodedata.normalize("NFC", "한국어"), unicodedata.normalize("NFD", "한국어") + " NFD", "漢字"]
    created = client.post("/v1/label-sets", headers=auth,
                          json={"name": "forms", "labels": [{"name": n} for n in names]}).get_json()
    assert [label["name"] for label in created["labels"]] == names


@pytest.mark.parametrize("ensure_ascii", [True, False], ids=["escaped", "raw UTF-8"])
def test_examples_in_every_script_are_stored_exactly(client, auth, label_set, db, ensure_ascii):
    examples = [{"text": text, "label": LABELS[i % len(LABELS)]} for i, text in enumerate(TEXTS)]
    response = client.post(f"/v1/label-sets/{label_set['id']}/examples", headers={**auth, "Content-Type": JSON},
                           data=json.dumps({"examples": examples}, ensure_ascii=ensure_ascii).encode("utf-8"))
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["added"] == len(TEXTS)
    with db() as session:
        stored = {e.text: e.labels for e in session.query(Example).filter_by(label_set_id=label_set["id"])}
    assert stored == {e["text"]: [e["label"]] for e in examples}


def test_jsonl_and_csv_examples_keep_full_width_commas_and_quotes(client, auth, label_set, db):
    url = f"/v1/label-sets/{label_set['id']}/examples"
    jsonl = "".join(json.dumps({"text": text, "label": "退款"}, ensure_ascii=False) + "\n" for text in TEXTS[:4])
    assert client.post(url + "?format=jsonl", headers=auth, data=jsonl.encode()).status_code == 201
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["text", "label"])
    writer.writerows([[text, "物流"] for text in TEXTS[4:]])
    response = client.post(url, headers={**auth, "Content-Type": "text/csv"}, data=buffer.getvalue().encode())
    assert response.status_code == 201, response.get_json()
    with db() as session:
        stored = {e.text: e.labels for e in session.query(Example).filter_by(label_set_id=label_set["id"])}
    assert stored == {**{t: ["退款"] for t in TEXTS[:4]}, **{t: ["物流"] for t in TEXTS[4:]}}


def test_tag_job_items_are_stored_and_exported_exactly(client, auth, label_set, db, clean_redis):
    items = [{"id": f"条目-{i}", "text": text, "meta": {"来源": "微信", "原文": text}} for i, text in enumerate(TEXTS)]
    job = client.post("/v1/jobs", headers=auth, json={"label_set_id": label_set["id"], "items": items})
    assert job.status_code == 202, job.get_json()
    job_id = job.get_json()["id"]
    with db() as session:
        rows = session.query(JobItem).filter_by(job_id=job_id).order_by(JobItem.position).all()
        assert [(r.item_id, r.text, r.meta) for r in rows] == [(i["id"], i["text"], i["meta"]) for i in items]
        chunk_indexes = jobs.chunk_indexes(session, job_id)
    for chunk_index in chunk_indexes:
        chunk = jobs.claim_chunk(job_id, chunk_index)
        assert chunk is not None
        jobs.write_chunk_results(job_id, chunk_index, [
            results.ResultRow(p, item_id, ["退款"], {name: 1.0 / len(LABELS) for name in LABELS}, False, 1)
            for p, item_id in zip(chunk.positions, chunk.item_ids)])
    exported = client.get(f"/v1/jobs/{job_id}/results?format=jsonl", headers=auth).get_data(as_text=True)
    lines = [json.loads(line) for line in exported.split("\n") if line]
    assert [(r["item_id"], r["text"], r["labels"]) for r in lines] == [(i["id"], i["text"], ["退款"]) for i in items]
    exported_csv = client.get(f"/v1/jobs/{job_id}/results?format=csv", headers=auth).get_data(as_text=True)
    assert [row["text"] for row in csv.DictReader(io.StringIO(exported_csv.lstrip("\ufeff")))] == TEXTS


def test_predict_sends_the_texts_exactly(make_app, auth, label_set, clean_redis):
    client = make_app(predict_timeout=0.2).test_client()
    response = client.post("/v1/predict", headers=auth,
                           json={"label_set_id": label_set["id"], "items": [{"text": t} for t in TEXTS]})
    assert response.status_code == 504  # no worker here: what matters is what was sent
    assert clean_redis.queued_tasks("predict")[0]["args"][3] == TEXTS


def test_the_text_limit_counts_a_chinese_character_as_one(make_app, auth, label_set, count_rows, clean_redis):
    """50 Chinese characters are 150 bytes of UTF-8 and 300 of escaped JSON: still 50."""
    client = make_app(max_text_chars=50).test_client()
    ok = client.post("/v1/jobs", headers=auth, json={"label_set_id": label_set["id"], "items": [{"text": "中" * 50}]})
    assert ok.status_code == 202, ok.get_json()
    error = refused(client.post("/v1/jobs", headers=auth, json={"label_set_id": label_set["id"],
                                                                "items": [{"text": "好"}, {"text": "中" * 51}]}))
    assert pointers(error) == ["/items/1/text"]
    message = error["details"][0]["message"]
    assert "51 characters" in message and "limit is 50" in message
    assert "first max_length tokens, 128 by default" in message  # the rest would be cut, not read
    assert count_rows(JobItem) == 1


# --- refused: a 4xx naming the field, nothing stored ----------------------------------------------


@pytest.mark.parametrize("text", list(BLANK.values()), ids=list(BLANK))
def test_blank_text_in_any_script_is_refused_everywhere(make_app, auth, label_set, count_rows, text):
    client = make_app(predict_timeout=0.05).test_client()
    before = stored_rows(count_rows)
    ls = label_set["id"]
    cases = [
        (f"/v1/label-sets/{ls}/examples", {"examples": [{"text": "有内容", "label": "退款"},
                                                        {"text": text, "label": "退款"}]}, "/examples/1/text"),
        ("/v1/jobs", {"label_set_id": ls, "items": [{"text": "有内容"}, {"text": text}]}, "/items/1/text"),
        ("/v1/predict", {"label_set_id": ls, "items": [{"text": text}]}, "/items/0/text"),
        ("/v1/label-sets", {"name": text, "labels": [{"name": "甲"}, {"name": "乙"}]}, "/name"),
        ("/v1/label-sets", {"name": "空白标签", "labels": [{"name": "甲"}, {"name": text}]}, "/labels/1/name"),
    ]
    for url, body, pointer in cases:
        error = refused(client.post(url, headers=auth, json=body))
        assert pointers(error) == [pointer], (url, error)
        assert "empty" in error["details"][0]["message"], error
    assert stored_rows(count_rows) == before


# (case, path ({ls}: the label set), body template with {ls}, pointer)
REFUSED_JSON = [
    ("a lone high surrogate: an emoji cut in half", "/v1/jobs",
     '{{"label_set_id": "{ls}", "items": [{{"text": "好"}}, {{"text": "太棒了\\ud83d"}}]}}', "/items/1/text"),
    ("a lone low surrogate in Chinese", "/v1/jobs",
     '{{"label_set_id": "{ls}", "items": [{{"text": "中\\udc00文"}}]}}', "/items/0/text"),
    ("a lone surrogate in an item id", "/v1/jobs",
     '{{"label_set_id": "{ls}", "items": [{{"id": "条目\\ud800", "text": "中文"}}]}}', "/items/0/id"),
    ("a lone surrogate in a meta key", "/v1/jobs",
     '{{"label_set_id": "{ls}", "items": [{{"text": "中文", "meta": {{"来源\\udfff": 1}}}}]}}', "/items/0/meta"),
    ("a NUL between Chinese characters", "/v1/jobs",
     '{{"label_set_id": "{ls}", "items": [{{"text": "中\\u0000文"}}]}}', "/items/0/text"),
    ("a lone surrogate to predict", "/v1/predict",
     '{{"label_set_id": "{ls}", "items": [{{"text": "\\ud800"}}]}}', "/items/0/text"),
    ("a lone surrogate in an example", "/v1/label-sets/{ls}/examples",
     '{{"examples": [{{"text": "退款\\udbff", "label": "退款"}}]}}', "/examples/0/text"),
    ("a lone surrogate in an example's label", "/v1/label-sets/{ls}/examples",
     '{{"examples": [{{"text": "退款", "label": "退款\\ud800"}}]}}', "/examples/0/label"),
    ("a NUL in a Chinese example", "/v1/label-sets/{ls}/examples",
     '{{"examples": [{{"text": "物流\\u0000", "label": "物流"}}]}}', "/examples/0/text"),
    ("a lone surrogate in a label name", "/v1/label-sets",
     '{{"name": "表情", "labels": [{{"name": "😀"}}, {{"name": "\\ude00"}}]}}', "/labels/1/name"),
    ("a lone surrogate in a label set name", "/v1/label-sets",
     '{{"name": "工单\\ud83d", "labels": [{{"name": "甲"}}, {{"name": "乙"}}]}}', "/name"),
    ("a NUL in a traditional label name", "/v1/label-sets",
     '{{"name": "繁體", "labels": [{{"name": "標籤\\u0000"}}, {{"name": "乙"}}]}}', "/labels/0/name"),
]


@pytest.mark.parametrize("case, path, template, pointer", REFUSED_JSON, ids=[row[0] for row in REFUSED_JSON])
def test_text_that_cannot_be_stored_is_refused_with_its_pointer(make_app, auth, label_set, count_rows,
                                                                case, path, template, pointer):
    client = make_app(predict_timeout=0.05).test_client()
    before = stored_rows(count_rows)
    response = client.post(path.format(ls=label_set["id"]), headers={**auth, "Content-Type": JSON},
                           data=raw(template, ls=label_set["id"]))
    error = refused(response)
    assert pointers(error) == [pointer], error
    assert stored_rows(count_rows) == before


def test_a_valid_surrogate_pair_is_one_emoji_not_a_problem(client, auth, label_set, db, clean_redis):
    response = client.post("/v1/jobs", headers={**auth, "Content-Type": JSON}, data=raw(
        '{{"label_set_id": "{ls}", "items": [{{"text": "赞\\ud83d\\udc4d"}}]}}', ls=label_set["id"]))
    assert response.status_code == 202, response.get_json()
    with db() as session:
        assert session.query(JobItem.text).filter_by(job_id=response.get_json()["id"]).scalar() == "赞👍"


def test_over_long_chinese_texts_are_refused_with_each_pointer_and_the_limit(make_app, auth, label_set, count_rows):
    client = make_app(max_text_chars=100, predict_timeout=0.05).test_client()
    before = stored_rows(count_rows)
    long, fine, families = "長" * 101, "短" * 100, "👨\u200d👩\u200d👧" * 21
    ls = label_set["id"]
    for url, body, expected in [
        ("/v1/jobs", {"label_set_id": ls, "items": [{"text": long}, {"text": fine}, {"text": families}]},
         ["/items/0/text", "/items/2/text"]),  # a ZWJ family is 5 characters: 21 of them are 105
        ("/v1/predict", {"label_set_id": ls, "items": [{"text": fine}, {"text": long}]}, ["/items/1/text"]),
        (f"/v1/label-sets/{ls}/examples", {"examples": [{"text": long, "label": "退款"}]}, ["/examples/0/text"]),
    ]:
        error = refused(client.post(url, headers=auth, json=body))
        assert pointers(error) == expected, (url, error)
        assert all("limit is 100" in d["message"] for d in error["details"])
    assert stored_rows(count_rows) == before


def test_duplicate_and_unknown_chinese_labels_are_named(client, auth, label_set, count_rows):
    before = stored_rows(count_rows)
    error = refused(client.post("/v1/label-sets", headers=auth, json={
        "name": "重复", "labels": [{"name": "退款"}, {"name": "物流"}, {"name": "退款"}]}))
    assert error["code"] == "duplicate_labels" and "'退款'" in error["message"]
    assert pointers(error) == ["/labels/2/name"]
    # Simplified and traditional forms are different labels: 标签 is not 標籤.
    error = refused(client.post(f"/v1/label-sets/{label_set['id']}/examples", headers=auth, json={
        "examples": [{"text": "快递到哪了", "label": "物流"}, {"text": "簡體", "label": "繁体标签"}]}))
    assert error["code"] == "invalid_examples" and "'繁体标签'" in error["message"]
    assert pointers(error) == ["/examples/1/label"]
    assert stored_rows(count_rows) == before


def test_a_body_in_gbk_is_refused_as_not_utf8(client, auth, label_set, count_rows):
    """A client that sends its platform's legacy Chinese encoding gets a 400 saying so."""
    before = stored_rows(count_rows)
    body = json.dumps({"label_set_id": label_set["id"], "items": [{"text": "退款怎么还没到"}]}, ensure_ascii=False)
    error = refused(client.post("/v1/jobs", headers={**auth, "Content-Type": "application/json; charset=gbk"},
                                data=body.encode("gbk")), 400)
    assert error["code"] == "malformed_json" and "utf-8" in error["message"].lower()
    csv_body = "text,label\n退款怎么还没到,退款\n".encode("gb18030")
    error = refused(client.post(f"/v1/label-sets/{label_set['id']}/examples",
                                headers={**auth, "Content-Type": "text/csv"}, data=csv_body), 400)
    assert error["code"] == "malformed_body" and "UTF-8" in error["message"]
    cut = "中".encode()[:2]  # a character cut in the middle of its UTF-8 bytes
    body = b'{"label_set_id": "%s", "items": [{"text": "%s"}]}' % (label_set["id"].encode(), cut)
    error = refused(client.post("/v1/jobs", headers={**auth, "Content-Type": JSON}, data=body), 400)
    assert error["code"] == "malformed_json"
    assert stored_rows(count_rows) == before


def test_a_csv_separated_by_full_width_commas_is_refused_naming_its_header(client, auth, label_set, count_rows):
    before = stored_rows(count_rows)
    response = client.post(f"/v1/label-sets/{label_set['id']}/examples", headers={**auth, "Content-Type": "text/csv"},
                           data="text，label\n退款怎么还没到，退款\n".encode())
    error = refused(response)
    assert error["code"] == "invalid_csv" and "text，label" in error["message"]
    assert stored_rows(count_rows) == before
