"""reftag's Celery tasks. Each reads its work from the database by id, does it, and writes the
result in one transaction (`store.work`). None waits on another task. Any of them may run twice
for the same work — a redelivered message, a reconciler's re-enqueue — and the second run
finds the work claimed or done and changes nothing.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import worker_ready

from service import logs
from store import work
from service.settings import get_settings

from . import model_cache
from .celery_app import PREDICT, RECONCILE, TAG_CHUNK, TRAIN_ADAPTER, celery_app, enqueue_chunk, enqueue_train

log = logging.getLogger(__name__)

RETRY_DELAY_SECONDS = 5.0


@worker_ready.connect
def _load_base_model(**_: Any) -> None:
    # Load the base model before the first message, so the first predict answers in time.
    try:
        model_cache.base()
    except Exception:  # the task that needs it reports the error against its job
        log.exception("could not load the base model at start")


def _send_again(task, *args: Any, delay: float = RETRY_DELAY_SECONDS) -> None:
    """Retry released work soon, without waiting for the reconciler. The claim counts attempts,
    so a task that always fails stops after `max_attempts`; if the broker is unreachable the
    reconciler sends it later."""
    try:
        task.apply_async(args=list(args), countdown=delay)
    except Exception:
        log.exception("could not re-send %s%r; the reconciler will", task.name, args)


# ---------------------------------------------------------------------------------------------
# train


class _Heartbeat:
    """Extends a train job's lease from a thread while training runs, so that a long step
    (caching the frozen layers, evaluating) does not look like a dead worker. Training checks
    `lost` through the progress callback and stops when the lease is gone."""

    def __init__(self, job_id: str, attempt: int, every: float) -> None:
        self.job_id, self.attempt, self.every = job_id, attempt, every
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                work.renew_train_lease(self.job_id, self.attempt)
            except work.LeaseLost:
                self.lost = True
                return
            except Exception:  # a database hiccup: try again next beat
                log.exception("heartbeat for %s failed", self.job_id)

    def __enter__(self) -> "_Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()


@celery_app.task(name=TRAIN_ADAPTER)
def train_adapter(job_id: str) -> dict[str, Any] | None:
    job = work.lease_train_job(job_id)
    if job is None:
        return None
    logs.bind(label_set_id=job.label_set_id, tenant=job.tenant_id)
    from reft_core import AdapterMismatchError, ReftConfigError, train

    settings = get_settings()
    progress = work.TrainProgress(job_id, job.attempt)
    with _Heartbeat(job_id, job.attempt, every=max(1.0, settings.train_lease_seconds / 4)) as heartbeat:

        def report(p: dict[str, Any]) -> None:
            if heartbeat.lost:
                raise work.LeaseLost(job_id)
            try:
                progress(p)
            except work.LeaseLost:
                raise
            except Exception:  # a progress write is not worth a training run; the heartbeat keeps the lease
                log.exception("could not record progress of %s", job_id)

        try:
            trained = train(
                model_cache.base(), job.texts, job.labels, job.label_names,
                multi_label=job.multi_label, config=job.config, progress=report,
            )
            weights, config_json = trained.to_bytes()
        except work.LeaseLost:
            log.info("train job %s was cancelled or taken over; stopping", job_id)
            return None
        except (ReftConfigError, AdapterMismatchError, ValueError) as exc:
            # Retrying cannot fix bad config or data: fail now, with the reason.
            work.fail_train_job(job_id, "invalid_training_input", str(exc))
            return None
        except Exception as exc:
            work.release_train_job(job_id, job.attempt, f"{type(exc).__name__}: {exc}")
            _send_again(train_adapter, job_id)
            raise
    stored = work.store_adapter(
        job_id, weights, config_json, trained.metrics, int(trained.param_count["total"]), detail=progress.detail()
    )
    if stored is None:
        return None
    return {"version": stored.version, "active": stored.is_active, "note": stored.note}


# ---------------------------------------------------------------------------------------------
# tag


@celery_app.task(name=TAG_CHUNK)
def tag_chunk(job_id: str, chunk_index: int) -> int | None:
    chunk = work.claim_chunk(job_id, chunk_index)
    if chunk is None:
        return None
    logs.bind(label_set_id=chunk.label_set_id, tenant=chunk.tenant_id)
    try:
        ref = work.adapter_ref(chunk.label_set_id, chunk.adapter_version, tenant_id=chunk.tenant_id)
        adapter = model_cache.adapter(ref)
    except (work.AdapterNotFound, model_cache.AdapterIntegrityError) as exc:
        # Another try reads the same rows: fail the chunk's items now, with the reason.
        work.fail_chunk(job_id, chunk_index, str(exc))
        return 0
    except Exception as exc:
        work.release_chunk(job_id, chunk_index, f"{type(exc).__name__}: {exc}")
        _send_again(tag_chunk, job_id, chunk_index)
        raise
    try:
        predictions = model_cache.tagger().predict(adapter, chunk.texts)
    except Exception as exc:
        work.release_chunk(job_id, chunk_index, f"{type(exc).__name__}: {exc}")
        _send_again(tag_chunk, job_id, chunk_index)
        raise
    rows = [
        work.ResultRow(position, item_id, list(p.labels), dict(p.scores), bool(p.needs_review), ref.version)
        for position, item_id, p in zip(chunk.positions, chunk.item_ids, predictions, strict=True)
    ]
    return work.write_chunk_results(job_id, chunk_index, rows)


# ---------------------------------------------------------------------------------------------
# predict


@celery_app.task(name=PREDICT, ignore_result=False)
def predict(tenant_id: str, label_set_id: str, adapter_version: int | None, texts: list[str]) -> list[dict[str, Any]]:
    ref = work.adapter_ref(label_set_id, adapter_version, tenant_id=tenant_id)
    predictions = model_cache.tagger().predict(model_cache.adapter(ref), texts)
    return [
        {"labels": list(p.labels), "scores": dict(p.scores), "needs_review": bool(p.needs_review),
         "adapter_version": ref.version}
        for p in predictions
    ]


# ---------------------------------------------------------------------------------------------
# reconcile


@celery_app.task(name=RECONCILE)
def reconcile() -> dict[str, int]:
    found = work.reconcile()
    for job_id, index in found.chunks:
        enqueue_chunk(job_id, index)
    for job_id in found.train_jobs:
        enqueue_train(job_id)
    if found.chunks or found.train_jobs:
        log.info("re-enqueued %d chunks and %d train jobs", len(found.chunks), len(found.train_jobs))
    return {"chunks": len(found.chunks), "train_jobs": len(found.train_jobs)}
