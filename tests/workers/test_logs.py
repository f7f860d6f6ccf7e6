"""service/logs.py: the line formats, and the ids a line about a job carries — from a task run
through Celery's tracer (the signals a worker sends), from a web request, and from the text of
Celery's own lines. tests/e2e/test_operations.py reads a real worker's log file."""
from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime

import pytest

from service import logs
from store.db import session_scope
from store.models import Job, JobStatus
from workers import tasks


@pytest.fixture
def captured():
    """The root logger writing through reftag's handler into a buffer; `lines(format)`."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()

    def start(log_format: str = "json") -> io.StringIO:
        logs.configure("worker", level=logging.INFO, force=True, stream=stream, log_format=log_format)
        return stream

    yield start
    root.handlers[:], root.level = saved
    logs.reset()


def json_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]  # every line is one JSON object


def test_a_task_run_by_celery_logs_its_job_label_set_and_tenant(rows, clean_redis, captured):
    stream = captured("json")
    label_set_id = rows.label_set()
    job_id = rows.tag_job(label_set_id, n_items=3, chunk_size=4, adapter_version=7)  # no such adapter
    with session_scope() as s:
        tenant_id = s.get(Job, job_id).tenant_id

    result = tasks.tag_chunk.apply(args=[job_id, 0])  # through the tracer: prerun, body, postrun
    assert result.get() == 0
    logging.getLogger("workers.tasks").info("after the task")

    lines = json_lines(stream)
    [done] = [line for line in lines if "succeeded" in line["message"]]
    assert done["logger"] == "celery.app.trace" and done["level"] == "info" and done["service"] == "worker"
    assert (done["job_id"], done["chunk"], done["label_set_id"], done["tenant"]) == (job_id, 0, label_set_id, tenant_id)
    assert done["time"].endswith("Z") and isinstance(done["pid"], int)
    [after] = [line for line in lines if line["message"] == "after the task"]
    assert "job_id" not in after and "tenant" not in after  # the task's ids do not leak into later lines


def test_ids_named_in_a_line_become_fields(captured):
    stream = captured("json")
    logging.getLogger("celery.worker.strategy").info(
        "Task %(name)s[%(id)s] received", {"name": "reftag.tag_chunk", "id": "abc"},
        extra={"data": {"name": "reftag.tag_chunk", "id": "abc", "args": "['job_0123456789abcdef', 2]"}})
    logging.getLogger("reftag.api").warning("withdrawing job %s of ls_fedcba9876543210", "job_1111111111111111")
    received, withdrawn = json_lines(stream)
    assert received["job_id"] == "job_0123456789abcdef" and "data" not in received
    assert (withdrawn["job_id"], withdrawn["label_set_id"]) == ("job_1111111111111111", "ls_fedcba9876543210")


def test_a_web_request_logs_the_ids_in_its_path_and_its_tenant(app, captured):
    from flask import g

    stream = captured("json")
    with app.test_request_context("/v1/jobs/job_0123456789abcdef/results"):  # the route matches its path
        g.tenant_id = "tn_0000000000000001"  # what auth.require_tenant sets
        logging.getLogger("reftag.api").error("could not stream", exc_info=ValueError("boom"))
    [line] = json_lines(stream)
    assert (line["job_id"], line["tenant"], line["level"]) == ("job_0123456789abcdef", "tn_0000000000000001", "error")
    assert "ValueError: boom" in line["exception"]


def test_extra_fields_and_unicode_are_written_as_they_are(captured):
    stream = captured("json")
    logging.getLogger("reftag").info("标签集 %s 训练完成", "新闻",
                                     extra={"job_id": "job_2222222222222222", "epochs": 3})
    raw = stream.getvalue()
    assert "标签集 新闻 训练完成" in raw  # UTF-8 text, not \\u escapes
    [line] = json_lines(stream)
    assert (line["job_id"], line["epochs"]) == ("job_2222222222222222", 3)


def test_text_format_is_one_line_with_the_ids_at_the_end(captured):
    stream = captured("text")
    logs.bind(job_id="job_3333333333333333", label_set_id="ls_4444444444444444")
    logging.getLogger("workers.tasks").warning("chunk released")
    [line] = stream.getvalue().splitlines()
    assert " WARNING worker workers.tasks: chunk released [job_id=job_3333333333333333 " in line
    assert line.endswith("label_set_id=ls_4444444444444444]")


def test_an_unknown_log_format_is_refused_by_name():
    with pytest.raises(ValueError, match="LOG_FORMAT must be one of json, text; got 'xml'"):
        logs.configure("web", force=True, stream=io.StringIO(), log_format="xml")


def test_values_json_has_no_type_for_are_written_as_readable_text(captured):
    stream = captured("json")
    started = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
    logging.getLogger("reftag").info("job state", extra={"status": JobStatus.RUNNING, "started": started},
                                     stack_info=True)
    [line] = json_lines(stream)
    assert (line["status"], line["started"]) == ("running", "2024-05-01T08:30:00+00:00")  # ISO 8601, as "time"
    assert line["stack"].startswith("Stack (most recent call last)")


def test_a_gunicorn_access_line_carries_its_request_as_fields(captured):
    stream = captured("json")
    atoms = {"h": "127.0.0.1", "r": "GET /v1/jobs/job_0123456789abcdef HTTP/1.1", "s": "200", "m": "GET",
             "U": "/v1/jobs/job_0123456789abcdef", "D": "1500"}  # gunicorn's access-log atoms; D in µs
    logging.getLogger("gunicorn.access").info('%(h)s "%(r)s" %(s)s', atoms)
    [line] = json_lines(stream)
    assert (line["method"], line["path"], line["status"], line["duration_ms"]) == (
        "GET", "/v1/jobs/job_0123456789abcdef", 200, 1.5)
    assert line["job_id"] == "job_0123456789abcdef" and "args" not in line
