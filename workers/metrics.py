"""Counters that only a worker process sees — adapter cache hits and misses, how long tagging
takes — kept in Redis, so that the web tier's `GET /metrics` serves the sum over every worker
whichever process did the work (see api/metrics.py). Jobs, items and train durations are not
here: the database already knows them.

Recording never fails a task: if Redis cannot be reached the observation is dropped. Redis
without persistence loses these counters on a restart; Prometheus treats that as a counter
reset, as it does a process restart.
"""
from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import redis
from celery.signals import task_postrun, task_prerun

from service.settings import get_settings

from .celery_app import PREDICT, TAG_CHUNK

log = logging.getLogger(__name__)

KEY_PREFIX = "reftag:metrics:"
ADAPTER_CACHE_KEY = KEY_PREFIX + "adapter_cache"
# Upper bounds (seconds) of the tagging-latency buckets: a predict call (a few texts) to a
# chunk of 256 texts on a CPU.
TAG_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# Task name → the `task` label of the tagging-latency histogram.
TIMED_TASKS = {TAG_CHUNK: "tag_chunk", PREDICT: "predict"}


def _bucket_name(bound: float) -> str:
    return "+Inf" if bound == math.inf else f"{bound:g}"


def tag_seconds_key(task: str) -> str:
    return f"{KEY_PREFIX}tag_seconds:{task}"


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def _send(build: Callable[[Any], None]) -> None:
    """Run the commands `build` puts on a pipeline; an unreachable Redis drops them."""
    try:
        pipe = _client(get_settings().redis_url).pipeline(transaction=False)
        build(pipe)
        pipe.execute()
    except redis.RedisError as e:
        log.debug("metric not recorded: %s", e)


def _record(*commands: tuple[str, str, str, float]) -> None:
    def build(pipe: Any) -> None:
        for command, key, name, amount in commands:
            getattr(pipe, command)(key, name, amount)

    _send(build)


BASES_KEY = KEY_PREFIX + "bases"  # name → JSON {fingerprint, layers, hidden_size}


def base_loaded_key(name: str) -> str:
    return f"{KEY_PREFIX}base_loaded:{name}"  # worker → when it loaded the base


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def record_base(base: Any) -> None:
    """A worker loaded `base`: what it is (the API lists it) and that this worker holds it."""
    about = json.dumps({"fingerprint": base.fingerprint, "layers": base.num_layers, "hidden_size": base.hidden_size})

    def build(pipe: Any) -> None:
        pipe.hset(BASES_KEY, base.name, about)
        pipe.hset(base_loaded_key(base.name), worker_id(), time.time())

    _send(build)


def forget_bases(names: list[str]) -> None:
    """This worker stops: it no longer holds these bases."""
    def build(pipe: Any) -> None:
        for name in names:
            pipe.hdel(base_loaded_key(name), worker_id())

    _send(build)


def read_bases(client: redis.Redis) -> dict[str, dict[str, Any]]:
    """name → {fingerprint, layers, hidden_size, workers}: every base a worker has loaded."""
    found: dict[str, dict[str, Any]] = {}
    for name, raw in client.hgetall(BASES_KEY).items():
        key = name.decode() if isinstance(name, bytes) else name
        found[key] = {**json.loads(raw), "workers": client.hlen(base_loaded_key(key))}
    return found


def count_adapter_cache(hit: bool) -> None:
    _record(("hincrby", ADAPTER_CACHE_KEY, "hit" if hit else "miss", 1))


def observe_tag_seconds(task: str, seconds: float, items: int) -> None:
    """One tagging call (`task`: tag_chunk or predict) that took `seconds` for `items` texts.
    Bucket counts are stored per bucket and summed into cumulative ones when read."""
    bucket = _bucket_name(next((bound for bound in TAG_SECONDS_BUCKETS if seconds <= bound), math.inf))
    key = tag_seconds_key(task)
    _record(("hincrby", key, bucket, 1), ("hincrby", key, "count", 1),
            ("hincrbyfloat", key, "sum", seconds), ("hincrby", key, "items", items))


# --- timing tasks: from Celery's prerun/postrun signals, so the task bodies stay as they are ---

_started: dict[str, float] = {}


@task_prerun.connect
def _task_started(task_id: str = "", task: Any = None, **_: Any) -> None:
    if getattr(task, "name", None) in TIMED_TASKS:
        _started[task_id] = time.perf_counter()


@task_postrun.connect
def _task_finished(task_id: str = "", task: Any = None, retval: Any = None, state: str = "", **_: Any) -> None:
    """Observe a tagging task that tagged something: tag_chunk returns how many results it
    wrote (None when the chunk was done or taken already), predict its list of results."""
    started = _started.pop(task_id, None)
    if started is None or state != "SUCCESS":
        return
    items = len(retval) if isinstance(retval, list) else retval
    if isinstance(items, int) and not isinstance(items, bool) and items > 0:
        observe_tag_seconds(TIMED_TASKS[task.name], time.perf_counter() - started, items)


# --- reading, for the web tier ------------------------------------------------------------------


@dataclass
class Histogram:
    buckets: list[tuple[float, float]]  # (upper bound, cumulative count), ending with infinity
    count: float
    sum: float
    items: float


@dataclass
class WorkerMetrics:
    adapter_cache: dict[str, int] = field(default_factory=dict)  # hit, miss
    tag_seconds: dict[str, Histogram] = field(default_factory=dict)  # by task


def _number(raw: bytes | None) -> float:
    return float(raw) if raw is not None else 0.0


def read(client: redis.Redis) -> WorkerMetrics:
    """Everything workers recorded so far (raises redis.RedisError when Redis is down)."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(ADAPTER_CACHE_KEY)
    for task in TIMED_TASKS.values():
        pipe.hgetall(tag_seconds_key(task))
    cache, *timings = pipe.execute()
    found = WorkerMetrics(adapter_cache={kind: int(_number(cache.get(kind.encode()))) for kind in ("hit", "miss")})
    for task, raw in zip(TIMED_TASKS.values(), timings):
        cumulative, buckets = 0.0, []
        for bound in [*TAG_SECONDS_BUCKETS, math.inf]:
            cumulative += _number(raw.get(_bucket_name(bound).encode()))
            buckets.append((bound, cumulative))
        found.tag_seconds[task] = Histogram(buckets, _number(raw.get(b"count")), _number(raw.get(b"sum")),
                                            _number(raw.get(b"items")))
    return found
