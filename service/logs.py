"""How reftag's processes log: one JSON object per line (`LOG_FORMAT=json`, the default), or
plain text for a person at a terminal (`LOG_FORMAT=text`; `make run` uses it).

JSON is the default because a deployment ships logs to something that parses them, and there
a job's id must be a field to filter on, not a word inside a message. Every line about a job
carries `job_id`, and `label_set_id`, `tenant` (the tenant id) and `chunk` where they are known.
They come from three places, strongest first:

- `extra={...}` on the logging call;
- the context of the work being done: `bind()`/`reset()` (a worker binds its task's ids, see
  workers/celery_app.py) and context providers (the web tier adds the ids in a request's path);
- ids named in the line itself (the arguments of Celery's "Task … received" line, an
  access-log path).

One module for the web tier and the workers, so both write the same fields.
"""
from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

import pythonjsonlogger.core
import pythonjsonlogger.json

from .settings import get_settings

FORMATS = ("json", "text")
CONTEXT_FIELDS = ("job_id", "label_set_id", "tenant", "chunk")
# Ids as store.models.new_id makes them.
NAMED_IDS = {"job_id": re.compile(r"\bjob_[0-9a-f]{16}\b"), "label_set_id": re.compile(r"\bls_[0-9a-f]{16}\b")}
# Gunicorn's own loggers do not propagate to the root logger; their lines get our format too.
GUNICORN_LOGGERS = ("gunicorn.error", "gunicorn.access")

# The default is read-only: bind() and reset() always set a new dict, never change the one there.
_context: ContextVar[Mapping[str, Any]] = ContextVar("reftag_log_context", default=MappingProxyType({}))
_providers: list[Callable[[], dict[str, Any]]] = []


def bind(**fields: Any) -> None:
    """Add fields to every following line of this thread/task (None values are ignored)."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def reset(**fields: Any) -> None:
    """Replace the bound fields (a worker calls it when a task starts and ends)."""
    _context.set({k: v for k, v in fields.items() if v is not None})


def add_context_provider(provider: Callable[[], dict[str, Any]]) -> None:
    """`provider()` returns fields for the line being written (e.g. from the current request)."""
    if provider not in _providers:
        _providers.append(provider)


class ContextFilter(logging.Filter):
    """Puts the context fields on each record that reaches a reftag handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields: dict[str, Any] = {}
        for provider in _providers:
            try:
                fields.update(provider())
            except Exception:  # a broken provider must not lose the line
                pass
        fields.update(_context.get())
        missing = [name for name in NAMED_IDS if name not in fields and not hasattr(record, name)]
        if missing:
            message = record.getMessage()
            data = getattr(record, "data", None)  # Celery's lines carry their context here (task args too)
            if isinstance(data, dict):
                message += " " + " ".join(map(str, data.values()))
            for name in missing:
                found = NAMED_IDS[name].search(message)
                if found:
                    fields[name] = found.group(0)
        for name, value in fields.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(pythonjsonlogger.json.JsonFormatter):
    """One JSON object per line: time, level, pid, logger, message, service, the context
    fields, any `extra=` fields, and the traceback as one string. python-json-logger does the
    record-to-JSON work (which attributes are `extra=`, tracebacks, values JSON has no type
    for); this class names the fields."""

    def __init__(self, service: str) -> None:
        super().__init__(
            ["created", "levelname", "process", "name", "message"],
            rename_fields={"created": "time", "levelname": "level", "process": "pid", "name": "logger",
                           "exc_info": "exception", "stack_info": "stack"},
            static_fields={"service": service},
            # Celery puts a line's arguments in `data`; ContextFilter has read the ids out of it.
            reserved_attrs=[*pythonjsonlogger.core.RESERVED_ATTRS, "data", "taskName"],
            json_ensure_ascii=False,
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data["time"] = _timestamp(record)
        log_data["level"] = record.levelname.lower()
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            log_data.update(_access_fields(record.args))


def _access_fields(atoms: dict[str, Any]) -> dict[str, Any]:
    """A gunicorn access-log line's request as fields (its atoms: m method, U path, s status,
    D duration in microseconds)."""
    fields: dict[str, Any] = {"method": atoms.get("m"), "path": atoms.get("U")}
    try:
        fields["status"] = int(atoms["s"])
        fields["duration_ms"] = round(int(atoms["D"]) / 1000, 3)
    except (KeyError, TypeError, ValueError):
        pass
    return fields


class TextFormatter(logging.Formatter):
    """`time level logger: message [job_id=… label_set_id=…]`, for people."""

    def __init__(self, service: str) -> None:
        super().__init__("%(asctime)s %(levelname)-7s " + service + " %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS if hasattr(record, name))
        if not context:
            return line
        first, newline, rest = line.partition("\n")  # keep a traceback below the line
        return f"{first} [{context}]{newline}{rest}"


def formatter(service: str, log_format: str | None = None) -> logging.Formatter:
    log_format = (log_format or get_settings().log_format).lower()
    if log_format not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}; got {log_format!r}")
    return JsonFormatter(service) if log_format == "json" else TextFormatter(service)


def configure(service: str, level: int | str | None = None, force: bool = False,
              stream: TextIO | None = None, log_format: str | None = None) -> bool:
    """Send this process's log lines to stderr in the configured format. Like
    `logging.basicConfig`, does nothing when the root logger already has handlers (a test
    runner's, a host application's) unless `force`. Returns whether it configured."""
    root = logging.getLogger()
    if root.handlers and not force:
        return False
    chosen = formatter(service, log_format)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(chosen)
    handler.addFilter(ContextFilter())
    for old in list(root.handlers) if force else []:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level or logging.INFO)
    logging.captureWarnings(True)  # warnings.warn(...) as log lines in the same format
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # announces plugins at import
    for name in GUNICORN_LOGGERS:
        for gunicorn_handler in logging.getLogger(name).handlers:
            gunicorn_handler.setFormatter(chosen)
            gunicorn_handler.addFilter(ContextFilter())
    return True
