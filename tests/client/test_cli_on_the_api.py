"""The `reftag` console script, run as a user runs it (a subprocess, URL and key from the
environment, its own config file), against the app served over HTTP from this process: a label
set's base model shown, changed and listed, and train requests that coalesce. No worker runs
here (tests/e2e/test_cli.py runs a whole session on the real stack)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from store import jobs
from tests.cli_checks import ok, one_line_error
from workers import metrics as worker_metrics

REFTAG = Path(sys.executable).parent / "reftag"


@pytest.fixture
def run(app, tenant, tmp_path):
    """run("label-sets", "show", ...) → the finished process (text out/err, UTF-8)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFTAG_")}
    env.update(REFTAG_URL=f"http://127.0.0.1:{server.server_port}", REFTAG_KEY=tenant.key,
               REFTAG_CONFIG=str(tmp_path / "config.toml"), COLUMNS="200")

    def invoke(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(REFTAG), *args], cwd=tmp_path, env=env, capture_output=True, timeout=60,
                              encoding="utf-8")

    yield invoke
    server.shutdown()
    thread.join()


def add_examples(client, headers, label_set_id: str, examples: list[tuple[str, str]]) -> None:
    response = client.post(f"/v1/label-sets/{label_set_id}/examples", headers=headers,
                           json={"examples": [{"text": text, "label": label} for text, label in examples]})
    assert response.status_code == 201, response.get_json()


def job_id_in(output: str) -> str:
    return re.search(r"job_[0-9a-f]{16}", output).group(0)


CHINESE = [(f"比赛第{i}场结束", "体育") for i in range(4)] + [(f"股市第{i}天上涨", "财经") for i in range(4)]


def test_a_label_sets_base_model_is_shown_before_and_after_its_first_training(run, client, tenant, clean_redis):
    created = ok(run("label-sets", "create", "新闻", "--labels", "体育,财经"))
    assert "base model auto (chosen at the next training)" in created
    assert "auto (chosen at the next training)" in ok(run("label-sets"))
    assert "base model: auto (chosen at the next training)" in ok(run("label-sets", "show"))

    label_set_id = re.search(r"ls_[0-9a-f]{16}", created).group(0)
    add_examples(client, tenant.headers, label_set_id, CHINESE)
    first = ok(run("train"))
    assert "queued for 新闻" in first
    # Mostly Chinese letters: "auto" resolved to the multilingual base at the train request.
    assert "base model: multilingual-e5-small (auto)" in ok(run("label-sets", "show", "新闻"))
    listed = [line for line in ok(run("label-sets")).splitlines() if "新闻" in line]
    assert len(listed) == 1 and "multilingual-e5-small (auto)" in listed[0]

    again = ok(run("train"))
    assert job_id_in(again) == job_id_in(first) and "was already queued for 新闻; this request joined it" in again
    assert len(clean_redis.queued_tasks("train")) == 1


def test_set_base_changes_the_base_the_next_adapter_trains_on(run, client, tenant, make_label_set, add_adapter,
                                                              clean_redis):
    label_set = make_label_set("tickets", labels=("billing", "other"))
    add_examples(client, tenant.headers, label_set["id"], [("refund me", "billing"), ("hi", "other")])
    add_adapter(label_set["id"], metrics={"accuracy": 0.9, "macro_f1": 0.88})
    assert client.post(f"/v1/label-sets/{label_set['id']}/train", headers=tenant.headers, json={}).status_code == 202
    assert "base model: all-MiniLM-L6-v2 (auto)" in ok(run("label-sets", "show", "tickets"))

    changed = ok(run("label-sets", "set-base", "multilingual-e5-small", "-l", "tickets"))
    assert "tickets: base model multilingual-e5-small" in changed
    assert "the next `reftag train` trains a new adapter on it from scratch; v1 keeps serving" in changed
    shown = ok(run("label-sets", "show", "tickets"))
    assert "base model: multilingual-e5-small" in shown and "(auto)" not in shown
    assert client.get(f"/v1/label-sets/{label_set['id']}", headers=tenant.headers).get_json()["base_model"] == \
        "multilingual-e5-small"

    assert "(unchanged)" in ok(run("label-sets", "set-base", "multilingual-e5-small", "-l", "tickets"))
    back = ok(run("label-sets", "set-base", "auto", "-l", "tickets"))
    assert "tickets: base model auto (chosen at the next training)" in back

    unknown = one_line_error(run("label-sets", "set-base", "bert-base-chinese", "-l", "tickets"))
    assert "unknown base model 'bert-base-chinese'" in unknown and "multilingual-e5-small" in unknown
    assert "422" in unknown


def test_create_can_name_the_base_model(run):
    created = ok(run("label-sets", "create", "reviews", "--labels", "good,bad",
                     "--base-model", "multilingual-e5-small"))
    assert "base model multilingual-e5-small" in created
    refused = one_line_error(run("label-sets", "create", "other", "--labels", "a,b", "--base-model", "nope"))
    assert "unknown base model 'nope'" in refused


def test_a_spans_set_is_created_shown_and_its_span_examples_added_from_a_conll_file(run, tmp_path):
    created = ok(run("label-sets", "create", "实体", "--labels", "PER,LOC", "--kind", "spans"))
    assert "created label set 实体" in created and "with 2 labels" in created
    (tmp_path / "ner.conll").write_text("张 B-PER\n伟 I-PER\n在 O\n北 B-LOC\n京 I-LOC\n\nBob B-PER\nflew O\n",
                                        encoding="utf-8")
    added = ok(run("examples", "add", "ner.conll", "--format", "conll"))
    assert "added 2 examples to 实体 (0 duplicates skipped)" in added
    shown = ok(run("label-sets", "show"))
    assert "spans, 2 examples" in shown
    refused = one_line_error(run("label-sets", "create", "x", "--labels", "PER", "--kind", "spans", "--multi-label"))
    assert "multi_label" in refused


def test_base_models_lists_each_base_with_what_workers_report(run, clean_redis):
    # What a worker records once it has loaded MiniLM (workers/metrics.py: record_base).
    redis = clean_redis.client()
    redis.hset(worker_metrics.BASES_KEY, "all-MiniLM-L6-v2",
               json.dumps({"fingerprint": "5f3c9a0d1e2b4c6f8a", "layers": 6, "hidden_size": 384}))
    redis.hset(worker_metrics.base_loaded_key("all-MiniLM-L6-v2"), "host:1", 0)
    listed = ok(run("base-models"))
    rows = {line.split("│")[1].strip(): line for line in listed.splitlines() if line.count("│") > 2}
    assert set(rows) == {"all-MiniLM-L6-v2", "multilingual-e5-small"}, listed
    minilm, e5 = rows["all-MiniLM-L6-v2"], rows["multilingual-e5-small"]
    assert "English" in minilm and "*" in minilm and "yes" in minilm and "5f3c9a0d1e2b" in minilm
    assert "Chinese" in e5 and " 12 " in e5 and "*" not in e5 and "yes" not in e5
    assert "auto (a label set's default) picks the multilingual base" in listed


def test_a_train_request_while_one_runs_says_what_it_waits_for(run, client, tenant, make_label_set, clean_redis):
    label_set = make_label_set("news", labels=("体育", "财经"))
    add_examples(client, tenant.headers, label_set["id"], CHINESE)
    running = job_id_in(ok(run("train", "-l", "news")))
    assert jobs.lease_train_job(running) is not None  # a worker has started it
    waiting = ok(run("train", "-l", "news"))
    waiting_id = job_id_in(waiting)
    assert waiting_id != running and "queued for news" in waiting
    assert f"it starts when train job {running} (running) has finished" in waiting
    joined = ok(run("train", "-l", "news"))
    assert job_id_in(joined) == waiting_id and "this request joined it" in joined
    assert f"waits for train job {running} to finish" in ok(run("jobs", "show", waiting_id))
