"""The web tier's side of the broker: enqueue a job's work or withdraw the job, and run a
synchronous prediction. Redis being unreachable is a 503 with Retry-After, never a 500, and
never leaves a job behind that nobody will run."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import celery.exceptions

from store import jobs, results
from store.errors import Conflict
from store.models import JobStatus
from workers import celery_app

from .db import read_transaction, transaction
from .errors import BROKER_ERRORS, ApiError, broker_unavailable
from .requests import settings

log = logging.getLogger("reftag.api")


def submit_train(job_id: str) -> None:
    submit(job_id, lambda: celery_app.enqueue_train(job_id))


def start_waiting_train(finished_job_id: str) -> None:
    """Send the train job that waited for this one (now finished), if there is one. Redis being
    down loses nothing: the reconciler sends it after its pick-up deadline."""
    waiting = jobs.start_waiting_train_job(finished_job_id)
    if waiting is not None:
        try:
            celery_app.enqueue_train(waiting)
        except BROKER_ERRORS as e:
            log.warning("broker unreachable, train job %s is left to the reconciler: %s", waiting, e)


def retrain_if_due(tenant_id: str, label_set_id: str) -> str | None:
    """After a request changed a label set's examples: queue its train job if `retrain_after`
    changes have piled up (store.jobs.retrain_if_due), and send it. The id of the job made, if
    one was. Never fails the request that changed the examples: with Redis down the job stays
    queued and the reconciler sends it after its pick-up deadline."""
    try:
        with transaction() as session:
            job = jobs.retrain_if_due(session, tenant_id, label_set_id, settings().min_examples_per_label)
            made = None if job is None else (job.id, job.queued_after)
    except Exception:
        log.exception("could not check whether label set %s is due for retraining", label_set_id)
        return None
    if made is None:
        return None
    job_id, waits_for = made
    log.info("label set %s is due for retraining: train job %s queued", label_set_id, job_id)
    if waits_for is None:
        try:
            celery_app.enqueue_train(job_id)
        except BROKER_ERRORS as e:
            log.warning("broker unreachable, train job %s is left to the reconciler: %s", job_id, e)
    return job_id


def submit_loop_job(job_id: str, job_type: str) -> None:
    """Send a suggest or audit job to the train queue's workers."""
    submit(job_id, lambda: celery_app.enqueue_loop_job(job_id, job_type))


def submit_tag(job_id: str, chunk_indexes: list[int]) -> None:
    # One token per chunk: which chunk a token tags is decided when it runs (store.jobs).
    submit(job_id, lambda: celery_app.enqueue_chunks(len(chunk_indexes)))


def submit(job_id: str, send: Callable[[], None]) -> None:
    """Call `send` (which enqueues the committed job's messages). If the broker cannot be
    reached, delete the job again in a new transaction and answer 503."""
    try:
        send()
    except BROKER_ERRORS as e:
        log.warning("broker unreachable, withdrawing job %s: %s", job_id, e)
        with transaction() as session:
            jobs.delete_job(session, job_id)
        raise broker_unavailable() from None


def predict(tenant_id: str, label_set_id: str, adapter_version: int | None, texts: list[str],
            timeout: float) -> list[dict[str, Any]]:
    """Synchronous scoring through the `predict` queue; one {labels, scores, …} per text."""
    with predict_errors(timeout):
        return predict_batches(tenant_id, label_set_id, adapter_version, [texts], timeout=timeout)[0]


def predict_many(tenant_id: str, label_set_id: str, adapter_version: int, texts: list[str], batch_size: int,
                 timeout: float) -> list[dict[str, Any]]:
    """Predict any number of texts: grouped by length into batches of `batch_size` (so a batch
    carries few pads), all sent to the predict queue at once, answers in the texts' order. Pin
    `adapter_version`: batches answered after a promotion still use the same adapter."""
    chunks = jobs.chunk_of_items(texts, batch_size)
    batches: list[list[int]] = [[] for _ in range(max(chunks, default=-1) + 1)]
    for i, chunk in enumerate(chunks):
        batches[chunk].append(i)
    with predict_errors(timeout):
        answers = predict_batches(tenant_id, label_set_id, adapter_version,
                                  [[texts[i] for i in batch] for batch in batches], timeout=timeout)
    predictions: list[dict[str, Any]] = [{}] * len(texts)
    for batch, answer in zip(batches, answers, strict=True):
        for i, prediction in zip(batch, answer, strict=True):
            predictions[i] = prediction
    return predictions


def predict_batches(tenant_id: str, label_set_id: str, adapter_version: int | None, batches: list[list[str]],
                    timeout: float) -> list[list[dict[str, Any]]]:
    """Every batch sent to the `predict` queue at once, then the answers collected in order:
    idle predict workers share the batches and no batch waits for the one before it to be
    sent. Each answer may take `timeout` seconds after the one before it."""
    pending = [celery_app.celery_app.send_task(celery_app.PREDICT,
                                               args=[tenant_id, label_set_id, adapter_version, texts])
               for texts in batches]
    try:
        return [async_result.get(timeout=timeout) for async_result in pending]
    finally:
        for async_result in pending:
            async_result.forget()


# How often a caller waiting for a tag job reads its progress (one row).
TAG_JOB_POLL_SECONDS = 0.1


def predict_by_tag_job(tenant_id: str, label_set_id: str, adapter_version: int,
                       items: Sequence[tuple[str, str, dict[str, Any] | None]], chunk_size: int, timeout: float,
                       detail: dict[str, Any]) -> list[dict[str, Any]]:
    """Predict many texts as a tag job — chunks on the `tag` queue, results in the database — and
    wait for it here: a long list does not fill the `predict` queue that other callers' short
    predictions share. The job is an ordinary tag job (listed, readable, cancellable); `detail`
    says who made it. Each chunk may take `timeout` seconds after the one before it; past that
    the job is cancelled and the answer is 504. One {labels, scores, …} per item, in order."""
    with transaction() as session:
        job, _ = jobs.create_tag_job(session, tenant_id, label_set_id, items, chunk_size,
                                     adapter_version=adapter_version, detail=detail)
        job_id, chunks = job.id, jobs.chunk_indexes(session, job.id)
    submit_tag(job_id, chunks)
    status, error = wait_for_tag_job(tenant_id, job_id, timeout)
    answers = list(results.iter_results(read_transaction, tenant_id, job_id))
    failed = next((r.error for r in answers if r.error is not None), None) or error
    if status != JobStatus.SUCCEEDED or failed is not None:
        raise ApiError(502, "predict_failed", f"tag job {job_id} (made for this request) {status}: "
                                              f"{failed or 'see the job'}")
    return [{"labels": r.labels, "scores": r.scores, "needs_review": r.needs_review,
             "adapter_version": r.adapter_version} for r in answers]


def wait_for_tag_job(tenant_id: str, job_id: str, timeout: float) -> tuple[JobStatus, str | None]:
    """Until the job has finished: its status and error message. Cancels it and raises 504 when
    `timeout` seconds pass without a result written (no tag worker, or a queue ahead of it)."""
    answered, deadline = -1, 0.0
    while True:
        with read_transaction() as session:
            job = jobs.get_job(session, tenant_id, job_id)
            status, progress, error = JobStatus(job.status), job.done + job.failed, (job.error or {}).get("message")
        if status in JobStatus.finished():
            return status, error
        now = time.monotonic()
        if progress > answered:
            answered, deadline = progress, now + timeout
        elif now > deadline:
            try:
                with transaction() as session:
                    jobs.cancel_job(session, tenant_id, job_id)
            except Conflict:  # it finished just now
                continue
            raise ApiError(504, "predict_timeout",
                           f"no tag worker wrote a result of job {job_id} (made for this request) within "
                           f"{timeout:g} s; it was cancelled. Is a worker running on the `tag` queue?",
                           headers={"Retry-After": "5"})
        time.sleep(TAG_JOB_POLL_SECONDS)


@contextmanager
def predict_errors(timeout: float) -> Iterator[None]:
    """What a prediction can go through, as API errors: no broker (503), no worker in time
    (504), the task failed on the worker (502)."""
    try:
        yield
    except BROKER_ERRORS:
        raise broker_unavailable() from None
    except celery.exceptions.TimeoutError:
        raise ApiError(504, "predict_timeout",
                       f"no predict worker answered within {timeout:g} s; is a worker running on the "
                       "`predict` queue? For large inputs submit a job to POST /v1/jobs instead",
                       headers={"Retry-After": "5"}) from None
    except Exception as e:  # the task itself failed on the worker
        log.exception("predict task failed")
        raise ApiError(502, "predict_failed", f"the predict worker failed: {type(e).__name__}: {e}") from None
