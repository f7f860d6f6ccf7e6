"""`GET /metrics`: reftag in the Prometheus text format, for whichever process is scraped.

Nothing is counted in the web process itself (gunicorn runs several, and the work happens in
workers): every scrape reads the numbers where they are kept —

- the database: jobs by type and status, items tagged, train durations;
- Redis: queue depths (list lengths) and what workers recorded there (workers/metrics.py):
  adapter cache hits and misses, tagging latency.

Public unless `REFTAG_METRICS_TOKEN` is set: it carries aggregate numbers only (no tenant,
label set or text), and a scraper on the private network is the usual reader. With the
setting, a scraper sends `Authorization: Bearer <token>`.
"""
from __future__ import annotations

import hmac
import logging
import math
from collections.abc import Iterator
from typing import Any

import redis
from flask import Blueprint, Response, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.models import Job, JobStatus, JobType
from workers import metrics as worker_metrics
from workers.celery_app import QUEUES

from ..db import read_transaction
from ..errors import ApiError
from ..openapi import operation
from ..requests import settings

log = logging.getLogger("reftag.api")

bp = Blueprint("metrics", __name__)

TRAIN_SECONDS_BUCKETS = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 4 * 3600.0)


def redis_client() -> redis.Redis:
    if "reftag_metrics_redis" not in current_app.extensions:
        current_app.extensions["reftag_metrics_redis"] = redis.Redis.from_url(
            settings().redis_url, socket_timeout=1, socket_connect_timeout=1)
    return current_app.extensions["reftag_metrics_redis"]


def database_metrics(session: Session) -> Iterator[Metric]:
    jobs = GaugeMetricFamily("reftag_jobs", "Jobs by type and status", labels=["type", "status"])
    counts = {(t, s): n for t, s, n in session.execute(select(Job.type, Job.status, func.count())
                                                       .group_by(Job.type, Job.status))}
    for job_type in JobType:
        for status in JobStatus:
            jobs.add_metric([job_type, status], counts.get((job_type, status), 0))
    yield jobs

    done, failed = session.execute(
        select(func.coalesce(func.sum(Job.done), 0), func.coalesce(func.sum(Job.failed), 0))
        .where(Job.type == JobType.TAG)
    ).one()
    items = CounterMetricFamily("reftag_items_tagged", "Items of tag jobs answered, by outcome", labels=["outcome"])
    items.add_metric(["ok"], done)
    items.add_metric(["failed"], failed)
    yield items

    durations = [
        (finished - started).total_seconds()
        for started, finished in session.execute(
            select(Job.started_at, Job.finished_at).where(Job.type == JobType.TRAIN, Job.status == JobStatus.SUCCEEDED))
        if started is not None and finished is not None
    ]
    train = HistogramMetricFamily("reftag_train_duration_seconds",
                                  "Succeeded train jobs: seconds from the first start to the adapter stored")
    train.add_metric([], buckets=[(floatToGoString(bound), sum(d <= bound for d in durations))
                                  for bound in (*TRAIN_SECONDS_BUCKETS, math.inf)], sum_value=sum(durations))
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
