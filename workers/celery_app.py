"""The Celery app and the signatures of reftag's tasks.

This module imports neither torch nor the task bodies, so the web tier can enqueue work by
task name without loading any model code. Workers import `workers.tasks` (see `include`).
"""
from __future__ import annotations

import sys

from celery import Celery
from celery.signals import setup_logging, task_postrun, task_prerun

from service import logs
from service.settings import get_settings

TRAIN_ADAPTER = "reftag.train_adapter"
TAG_CHUNK = "reftag.tag_chunk"
PREDICT = "reftag.predict"
RECONCILE = "reftag.reconcile"
# The labeling loop's jobs (store.loop): one worker each, on the train queue (an audit trains).
SUGGEST = "reftag.suggest"
AUDIT = "reftag.audit"
LOOP_TASKS = {"suggest": SUGGEST, "audit": AUDIT}  # by job type
# The queues (Procfile: one worker pool per queue) and the tasks that go to each. The reconciler
# has its own queue and worker: behind no other work (not behind a deep `tag` queue, not behind
# a tenant's predictions), and running while every model worker is down or busy.
QUEUES = ("train", "tag", "predict", "reconcile")
ROUTES = {TRAIN_ADAPTER: "train", TAG_CHUNK: "tag", PREDICT: "predict", RECONCILE: "reconcile", SUGGEST: "train",
          AUDIT: "train"}
# The queues whose tasks run a model: a worker on none of them loads no base model.
MODEL_QUEUES = frozenset({"train", "tag", "predict"})


def make_celery() -> Celery:
    settings = get_settings()
    app = Celery("reftag", broker=settings.redis_url, backend=settings.redis_url, include=["workers.tasks"])
    app.conf.update(
        # A message is acknowledged only after its task ran, and given back if the worker dies.
        # The cap on redeliveries is the database's `attempts` counter (settings.max_attempts):
        # a claim past it fails the work with its last error instead of running it again.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Above the longest task (a train job); the DB lease, not Redis, detects lost work sooner.
        broker_transport_options={"visibility_timeout": 4 * 3600},
        result_backend_transport_options={"visibility_timeout": 4 * 3600},
        result_expires=3600,
        # Work and its outcome live in the database; only `predict` hands a result back (see tasks).
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_default_queue=ROUTES[TAG_CHUNK],
        task_routes={task: {"queue": queue} for task, queue in ROUTES.items()},
        # Fail fast when Redis is down so the API can answer 503 instead of hanging.
        broker_connection_timeout=2,
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        worker_hijack_root_logger=False,
        beat_schedule={
            # A reconcile message that waited longer than a few intervals is stale: drop it.
            "reconcile": {
                "task": RECONCILE,
                "schedule": settings.reconcile_interval,
                "options": {"expires": 3 * settings.reconcile_interval},
            },
        },
    )
    return app


celery_app = make_celery()

# Which log fields a task's arguments give, so that every line a task writes (Celery's own
# "succeeded" line included) names its job.
# (A tag_chunk message is a token that names no chunk: the task binds the chunk it claimed.)
TASK_LOG_FIELDS = {TRAIN_ADAPTER: ("job_id",), SUGGEST: ("job_id",), AUDIT: ("job_id",),
                   PREDICT: ("tenant", "label_set_id")}


@setup_logging.connect
def _configure_logging(loglevel: int | str | None = None, **_: object) -> None:
    # Connected, this replaces Celery's own logging set-up in workers and beat (LOG_FORMAT).
    logs.configure("beat" if "beat" in sys.argv else "worker", level=loglevel, force=True)


@task_prerun.connect
def _bind_task_log_fields(task: object = None, args: tuple | None = None, **_: object) -> None:
    logs.reset(**dict(zip(TASK_LOG_FIELDS.get(getattr(task, "name", ""), ()), args or ())))


@task_postrun.connect
def _unbind_task_log_fields(**_: object) -> None:
    logs.reset()


def enqueue_train(job_id: str) -> None:
    celery_app.send_task(TRAIN_ADAPTER, args=[job_id])


def enqueue_loop_job(job_id: str, job_type: str) -> None:
    """Send a suggest or audit job (`job_type`) to its task."""
    celery_app.send_task(LOOP_TASKS[job_type], args=[job_id])


def enqueue_chunks(count: int) -> None:
    """`count` tokens "tag the next chunk" (store.jobs, "tag jobs' chunks"): one per chunk
    submitted or found lost. Which chunk each tags is decided when it runs, in the fair order."""
    for _ in range(count):
        celery_app.send_task(TAG_CHUNK)
