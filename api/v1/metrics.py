"""`GET /metrics`: reftag in the Prometheus text format, for whichever process is scraped.

Nothing is counted in the web process itself (gunicorn runs several, and the work happens in
workers): every scrape reads the numbers where they are kept —

- the database: jobs by type and status, items tagged, train durations — counters kept up to date
  by the transactions that move jobs on (`store.metric_counters`), so a scrape reads a few rows
  however many jobs there are;
- Redis: queue depths (list lengths) and what workers recorded there (workers/metrics.py):
  adapter cache hits and misses, tagging latency.

Public unless `REFTAG_METRICS_TOKEN` is set: it carries aggregate numbers only (no tenant,
label set or text), and a scraper on the private network is the usual reader. Set the token
whenever the service's port is reachable from outside that network (how busy it is, and how
many jobs every tenant together runs, is not for everyone); a scraper then sends
`Authorization: Bearer <token>`.
"""
from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from typing import Any

import redis
from flask import Blueprint, Response, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString
from sqlalchemy.orm import Session

from store import metric_counters
from workers import metrics as worker_metrics
from workers.celery_app import QUEUES

from ..db import read_transaction
from ..errors import ApiError
from ..openapi import operation
from ..requests import settings

log = logging.getLogger("reftag.api")

bp = Blueprint("metrics", __name__)


def redis_client() -> redis.Redis:
    if "reftag_metrics_redis" not in current_app.extensions:
        current_app.extensions["reftag_metrics_redis"] = redis.Redis.from_url(
            settings().redis_url, socket_timeout=1, socket_connect_timeout=1)
    return current_app.extensions["reftag_metrics_redis"]


def database_metrics(session: Session) -> Iterator[Metric]:
    counts = metric_counters.read(session)
    jobs = GaugeMetricFamily("reftag_jobs", "Jobs by type and status", labels=["type", "status"])
    for (job_type, status), n in counts.jobs.items():
        jobs.add_metric([job_type, status], n)
    yield jobs

    items = CounterMetricFamily("reftag_items_tagged", "Items of tag jobs answered, by outcome", labels=["outcome"])
    for outcome, n in counts.items.items():
        items.add_metric([outcome], n)
    yield items

    train = HistogramMetricFamily("reftag_train_duration_seconds",
                                  "Succeeded train jobs: seconds from the first start to the adapter stored")
    train.add_metric([], buckets=[(floatToGoString(bound), n) for bound, n in counts.train_buckets],
                     sum_value=counts.train_seconds)
    yield train


def redis_metrics(client: redis.Redis) -> Iterator[Metric]:
    up = GaugeMetricFamily("reftag_redis_up", "1 when Redis answered this scrape (else the Redis metrics are missing)")
    try:
        pipe = client.pipeline(transaction=False)
        for queue in QUEUES:
            pipe.llen(queue)
        depths = pipe.execute()
        recorded = worker_metrics.read(client)
    except redis.RedisError as e:
        log.warning("metrics: Redis cannot be reached: %s", e)
        up.add_metric([], 0)
        yield up
        return
    up.add_metric([], 1)
    yield up

    queue_depth = GaugeMetricFamily("reftag_queue_depth", "Messages waiting in each Celery queue", labels=["queue"])
    for queue, depth in zip(QUEUES, depths):
        queue_depth.add_metric([queue], depth)
    yield queue_depth

    cache = CounterMetricFamily("reftag_adapter_cache", "Adapter lookups in workers' caches", labels=["result"])
    for result in ("hit", "miss"):
        cache.add_metric([result], recorded.adapter_cache.get(result, 0))
    yield cache

    latency = HistogramMetricFamily("reftag_tag_latency_seconds",
                                    "Seconds a worker took to tag one chunk of a job, or one predict call",
                                    labels=["task"])
    tagged = CounterMetricFamily("reftag_worker_items_tagged", "Texts tagged by workers (jobs and predict calls)",
                                 labels=["task"])
    for task, histogram in recorded.tag_seconds.items():
        latency.add_metric([task], buckets=[(floatToGoString(bound), n) for bound, n in histogram.buckets],
                           sum_value=histogram.sum)
        tagged.add_metric([task], histogram.items)
    yield latency
    yield tagged


class Snapshot:
    """A prometheus_client collector over the numbers read for one scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def require_token() -> None:
    token = settings().metrics_token
    if token is None:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ApiError(401, "unauthorized", "GET /metrics needs `Authorization: Bearer <REFTAG_METRICS_TOKEN>`",
                       headers={"WWW-Authenticate": 'Bearer realm="reftag-metrics"'})


@bp.get("/metrics")
@operation("Metrics in the Prometheus text format", tag="meta", public=True,
           responses={200: "The Prometheus text exposition format"}, errors=(401,))
def metrics() -> Response:
    """Jobs by type and status, items tagged, train durations, queue depths, adapter cache
    hits and misses, tagging latency. Public unless REFTAG_METRICS_TOKEN is set."""
    require_token()
    with read_transaction() as session:
        families: list[Any] = list(database_metrics(session))
    families += redis_metrics(redis_client())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(families))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
