"""The CLI's own file handling and settings, in-process: texts to tag in every input format,
the config file, and which setting wins. (tests/e2e/test_cli.py runs the CLI on a stack.)"""
from __future__ import annotations

import json
import stat

import pytest

from client import config, files


@pytest.mark.parametrize("name, content, expected", [
    ("a.jsonl", '{"id": "t1", "text": "第一条", "label": "x", "meta": {"k": 1}}\n\n"第二条"\n',
     [{"id": "t1", "text": "第一条", "meta": {"k": 1}}, {"text": "第二条"}]),
    ("a.json", json.dumps({"items": [{"text": "one", "id": 7}, "two"]}),
     [{"text": "one", "id": 7}, {"text": "two"}]),
    ("a.json", json.dumps([{"text": "one"}]), [{"text": "one"}]),
    ("a.csv", "\ufeffid,text,other\nr1,\"hello, world\",x\n,second,y\n",
     [{"id": "r1", "text": "hello, world"}, {"text": "second"}]),
    ("a.txt", "line one\n\nline three\n", [{"id": "1", "text": "line one"}, {"id": "3", "text": "line three"}]),
])
def test_texts_to_tag_are_read_from_each_format(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert files.read_items(str(path)) == expected


def test_other_field_names_can_be_chosen(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("key,body\nk1,text one\n", encoding="utf-8")
    assert files.read_items(str(path), text_field="body", id_field="key") == [{"id": "k1", "text": "text one"}]


@pytest.mark.parametrize("name, content, message", [
    ("a.jsonl", '{"text": "ok"}\n{"txt": "typo"}\n', "a.jsonl line 2: expected an object with a 'text' string"),
    ("a.jsonl", '{"text": "ok"}\nnot json\n', "a.jsonl line 2 is not JSON"),
    ("a.csv", "body\nx\n", "the CSV header has no 'text' column"),
    ("a.txt", "\n\n", "holds no texts"),
])
def test_an_unusable_input_names_the_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(files.InputError, match=message):
        files.read_items(str(path))


def test_an_examples_file_needs_a_known_suffix_or_a_format(tmp_path):
    path = tmp_path / "export.xml"
    path.write_bytes(b"<x/>")
    with pytest.raises(files.InputError, match="--format"):
        files.example_upload(str(path), None)
    assert files.example_upload(str(path), "label_studio") == (b"<x/>", "application/octet-stream")
    (tmp_path / "e.jsonl").write_bytes(b'{"text": "a", "label": "b"}\n')
    assert files.example_upload(str(tmp_path / "e.jsonl"), None)[1] == "application/x-ndjson"


def test_the_config_file_keeps_its_fields_and_only_its_owner_reads_it(tmp_path, monkeypatch):
    path = tmp_path / "reftag" / "config.toml"
    monkeypatch.setenv("REFTAG_CONFIG", str(path))
    config.write_file({"url": "http://example:8000", "key": 'rt_"quoted"\\key'})
    config.write_file({"label_set": "新闻分类"})
    assert config.read_file() == {"url": "http://example:8000", "key": 'rt_"quoted"\\key', "label_set": "新闻分类"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_flag_beats_the_environment_which_beats_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("REFTAG_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv("REFTAG_URL", raising=False)
    assert config.resolve("url", None, "--url") == config.Setting(config.DEFAULT_URL, "default")
    config.write_file({"url": "http://from-file"})
    assert config.resolve("url", None, "--url") == config.Setting("http://from-file", str(tmp_path / "config.toml"))
    monkeypatch.setenv("REFTAG_URL", "http://from-env")
    assert config.resolve("url", None, "--url").value == "http://from-env"
    assert config.resolve("url", "http://from-flag", "--url") == config.Setting("http://from-flag", "--url")


def test_a_broken_config_file_is_named(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    path.write_text("url = \n", encoding="utf-8")
    monkeypatch.setenv("REFTAG_CONFIG", str(path))
    with pytest.raises(config.ConfigError, match="config.toml is not valid TOML"):
        config.read_file()


def test_result_summary_counts_labels_review_and_failures(tmp_path):
    path = tmp_path / "r.jsonl"
    rows = [{"labels": ["体育"], "needs_review": False, "error": None},
            {"labels": ["体育"], "needs_review": True, "error": None},
            {"labels": [], "needs_review": True, "error": "worker lost"}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    summary = files.summarize_results(path, "jsonl")
    assert (summary.items, dict(summary.labels), summary.needs_review, summary.failed) == (3, {"体育": 2}, 1, 1)


def test_a_csv_result_file_is_summarised_too(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("item_id,text,labels,needs_review,adapter_version,error,score:a|b,score:c\n"
                    '1,x,"[""a|b""]",false,1,,0.9,0.1\n2,y,c,true,1,,0.2,0.8\n3,z,,true,1,lost,,\n', encoding="utf-8")
    summary = files.summarize_results(path, "csv")
    assert (summary.items, dict(summary.labels), summary.needs_review, summary.failed) == (3, {"a|b": 1, "c": 1}, 1, 1)
