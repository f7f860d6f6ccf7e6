"""reftag's Celery tasks. Each reads its work from the database by id, does it, and writes the
result in one transaction (`store.jobs`). None waits on another task. Any of them may run twice
for the same work — a redelivered message, a reconciler's re-enqueue — and the second run
finds the work claimed or done and changes nothing.

Work that fails with an error a retry may not repeat is given back in the database (released)
and retried soon with Celery's `Task.retry`; the database's `attempts` counter, not Celery's
retry count, caps how often (`max_retries=None` here). If the retry cannot be sent, the
reconciler sends it later.
"""
from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.signals import worker_ready, worker_shutdown

from reft_core.spans import DEFAULT_REVIEW_THRESHOLD
from service import logs
from service.settings import get_settings
from store import adapters, jobs, loop, reviews
from store.results import ResultRow

from . import metrics, model_cache, promotion
from .celery_app import (
    AUDIT,
    MODEL_QUEUES,
    PREDICT,
    RECONCILE,
    SUGGEST,
    TAG_CHUNK,
    TRAIN_ADAPTER,
    celery_app,
    enqueue_chunks,
    enqueue_loop_job,
    enqueue_train,
)
from .train_lease import Heartbeat, LeasedReport, TrainProgress

log = logging.getLogger(__name__)

RETRY_DELAY_SECONDS = 5.0


@worker_ready.connect
def _load_base_model(sender: Any = None, **_: Any) -> None:
    # Load the default base before the first message, so the first predict answers in time;
    # other bases load when a task first needs them. The reconciler's worker runs no model.
    if sender is not None and not set(sender.app.amqp.queues.consume_from) & MODEL_QUEUES:
        return
    try:
        model_cache.base()
    except Exception:  # the task that needs it reports the error against its job
        log.exception("could not load the base model at start")


@worker_shutdown.connect
def _forget_bases(**_: Any) -> None:
    metrics.forget_bases(model_cache.loaded_bases())


def retry_soon(task: Task, exc: Exception) -> Exception:
    """Celery's retry, `RETRY_DELAY_SECONDS` from now, however many times before (the database
    counts attempts). Returns the exception to raise."""
    return task.retry(exc=exc, countdown=RETRY_DELAY_SECONDS, max_retries=None, throw=False)


# ---------------------------------------------------------------------------------------------
# train


@celery_app.task(name=TRAIN_ADAPTER, bind=True)
def train_adapter(self: Task, job_id: str) -> dict[str, Any] | None:
    try:
        return train_version(self, job_id)
    finally:
        start_waiting(job_id)


def start_waiting(job_id: str) -> None:
    """A train job queued after this one starts once this one has finished, however it ended
    (if the message cannot be sent, the reconciler sends it after the pick-up deadline)."""
    try:
        waiting = jobs.start_waiting_train_job(job_id)
        if waiting is not None:
            enqueue_train(waiting)
    except Exception:
        log.exception("could not start the train job waiting for %s; the reconciler will", job_id)


def train_version(self: Task, job_id: str) -> dict[str, Any] | None:
    job = jobs.lease_train_job(job_id)
    if job is None:
        return None
    logs.bind(label_set_id=job.label_set_id, tenant=job.tenant_id)
    from reft_core import AdapterMismatchError, ReftConfigError, train, train_spans

    settings = get_settings()
    progress = TrainProgress(job_id, job.attempt)
    with Heartbeat.train(job_id, job.attempt, every=max(1.0, settings.train_lease_seconds / 4),
                         stall_after=settings.train_stall_seconds) as heartbeat:
        try:
            report = LeasedReport(heartbeat, progress)
            if job.kind == "spans":
                # Early-stopped and scored on the set's evaluation examples once there are any.
                trained = train_spans(model_cache.base(job.base_model), job.texts, job.labels, job.label_names,
                                      config=job.config, progress=report,
                                      eval_mask=job.evaluation if any(job.evaluation) else None)
            else:
                trained = train(
                    model_cache.base(job.base_model), job.texts, job.labels, job.label_names,
                    multi_label=job.multi_label, config=job.config, progress=report, eval_mask=job.evaluation,
                )
            weights, config_json = trained.to_bytes()
            heartbeat.pause()  # until the comparison's first step: it may cache every example first
            decided = promotion.decide(job, trained, progress=heartbeat.alive)
        except jobs.LeaseLost:
            log.info("train job %s was cancelled or taken over; stopping", job_id)
            return None
        except (ReftConfigError, AdapterMismatchError, ValueError) as exc:
            # Retrying cannot fix bad config or data: fail now, with the reason.
            jobs.fail_train_job(job_id, "invalid_training_input", str(exc))
            return None
        except Exception as exc:
            jobs.release_train_job(job_id, job.attempt, f"{type(exc).__name__}: {exc}")
            raise retry_soon(self, exc) from exc
    stored = jobs.complete_train_job(job_id, weights, config_json, trained.metrics, int(trained.param_count["total"]),
                                     decided, detail=progress.detail())
    if stored is None:
        return None
    return {"version": stored.version, "active": stored.is_active, "note": stored.note}


# ---------------------------------------------------------------------------------------------
# tag


@celery_app.task(name=TAG_CHUNK, bind=True)
def tag_chunk(self: Task, *_: Any) -> int | None:
    """A token: tag the next chunk in the fair order (`jobs.claim_next_chunk`), of whichever job,
    keeping its lease alive with a heartbeat. Returns the results written; None when no chunk
    waited. (Arguments are ignored: messages sent before tokens named a job and a chunk.)"""
    chunk = jobs.claim_next_chunk()
    if chunk is None:
        return None
    job_id, index = chunk.job_id, chunk.index
    logs.bind(job_id=job_id, chunk=index, label_set_id=chunk.label_set_id, tenant=chunk.tenant_id)
    every = get_settings().chunk_lease_seconds / 4
    with Heartbeat.chunk(job_id, index, chunk.attempt, every=every):
        try:
            ref = adapters.adapter_ref(chunk.label_set_id, chunk.adapter_version, tenant_id=chunk.tenant_id)
            loaded = model_cache.adapter(ref)
            if loaded.kind == "spans":
                found = model_cache.tagger_for(loaded).predict_spans(
                    loaded, chunk.texts, review_threshold=chunk.span_review_threshold or DEFAULT_REVIEW_THRESHOLD)
                rows = span_rows(chunk, ref.version, found, loaded.label_names)
            else:
                threshold = review_threshold(loaded, chunk.review_precision)
                predictions = model_cache.tagger_for(loaded).predict(loaded, chunk.texts, review_threshold=threshold)
                rows = [
                    ResultRow(position, item_id, list(p.labels), dict(p.scores), bool(p.needs_review), ref.version,
                              confidence=round(p.confidence, 6), margin=round(p.margin, 6))
                    for position, item_id, p in zip(chunk.positions, chunk.item_ids, predictions, strict=True)
                ]
        except (adapters.AdapterNotFound, model_cache.AdapterIntegrityError, model_cache.UnknownBase) as exc:
            # Another try reads the same rows: fail the chunk's items now, with the reason.
            jobs.fail_chunk(job_id, index, str(exc))
            return 0
        except Exception as exc:
            jobs.release_chunk(job_id, index, f"{type(exc).__name__}: {exc}")
            raise retry_soon(self, exc) from exc
        # Written under the heartbeat too: a write that waits for the database keeps the lease.
        return jobs.write_chunk_results(job_id, index, rows)


def span_json(prediction: Any, labels: list[str]) -> dict[str, Any]:
    """A spans adapter's answer for one text, as results store it: the spans, their distinct
    labels (in the set's order), each label's best span score."""
    spans = [s.to_dict() for s in prediction.spans]
    found = {s["label"] for s in spans}
    return {"labels": [name for name in labels if name in found], "spans": spans,
            "scores": {name: max(s["score"] for s in spans if s["label"] == name) for name in labels if name in found},
            "needs_review": bool(prediction.needs_review), "confidence": round(prediction.confidence, 6)}


def span_rows(chunk: jobs.ChunkWork, version: int, predictions: list[Any], labels: list[str]) -> list[ResultRow]:
    rows = []
    for position, item_id, p in zip(chunk.positions, chunk.item_ids, predictions, strict=True):
        answer = span_json(p, labels)
        rows.append(ResultRow(position, item_id, answer["labels"], answer["scores"], answer["needs_review"], version,
                              confidence=answer["confidence"], spans=answer["spans"]))
    return rows


def review_threshold(adapter: Any, precision: float | None) -> float | None:
    """The confidence below which a result needs review: the adapter's threshold for the label
    set's review precision, or None (no precision asked, or an adapter from before calibration:
    the margin rule)."""
    from reft_core.calibration import threshold_for

    return None if precision is None else threshold_for(adapter.metrics.get("review"), precision)


# ---------------------------------------------------------------------------------------------
# predict


@celery_app.task(name=PREDICT, ignore_result=False)
def predict(tenant_id: str, label_set_id: str, adapter_version: int | None, texts: list[str]) -> list[dict[str, Any]]:
    ref = adapters.adapter_ref(label_set_id, adapter_version, tenant_id=tenant_id)
    loaded = model_cache.adapter(ref)
    if loaded.kind == "spans":
        found = model_cache.tagger_for(loaded).predict_spans(
            loaded, texts, review_threshold=reviews.label_set_span_review_threshold(label_set_id))
        return [{**span_json(p, loaded.label_names), "adapter_version": ref.version} for p in found]
    threshold = review_threshold(loaded, reviews.label_set_review_precision(label_set_id))
    predictions = model_cache.tagger_for(loaded).predict(loaded, texts, review_threshold=threshold)
    return [
        {"labels": list(p.labels), "scores": dict(p.scores), "needs_review": bool(p.needs_review),
         "confidence": round(p.confidence, 6), "adapter_version": ref.version}
        for p in predictions
    ]


# ---------------------------------------------------------------------------------------------
# the labeling loop: suggest and audit (store.loop)


@celery_app.task(name=SUGGEST, bind=True)
def suggest(self: Task, job_id: str) -> int | None:
    """Pick the items of a tag job most worth labelling (reft_core.selection) with the set's
    adapter: the candidates' scores (and, for a strategy that weighs diversity, their pooled
    representations and the examples')."""
    work = loop.lease_loop_job(job_id)
    if not isinstance(work, loop.SuggestWork):
        return None
    logs.bind(label_set_id=work.label_set_id, tenant=work.tenant_id)
    from reft_core.selection import DEFAULT_STRATEGY, pick

    every = max(1.0, get_settings().train_lease_seconds / 4)
    with Heartbeat.train(job_id, work.attempt, every=every):
        try:
            ref = adapters.adapter_ref(work.label_set_id, work.adapter_version, tenant_id=work.tenant_id)
            loaded = model_cache.adapter(ref)
            tagger = model_cache.tagger_for(loaded)
            scores, pooled = tagger.represent(loaded, work.texts)
            diverse = DEFAULT_STRATEGY in ("kcenter", "margin_kcenter")
            labelled = tagger.represent(loaded, work.labelled)[1] if work.labelled and diverse else None
            picks = pick(scores, pooled, work.n, loaded.label_names, loaded.multi_label, loaded.thresholds,
                         labelled=labelled)
        except (adapters.AdapterNotFound, model_cache.AdapterIntegrityError, model_cache.UnknownBase) as exc:
            jobs.fail_train_job(job_id, "adapter_unavailable", str(exc))
            return 0
        except Exception as exc:
            jobs.release_train_job(job_id, work.attempt, f"{type(exc).__name__}: {exc}")
            raise retry_soon(self, exc) from exc
    names = loaded.label_names
    rows = []
    for p in picks:
        row = scores[p.index]
        guess = [n for n, yes in zip(names, loaded.decisions(row[None])[0].tolist()) if yes] if loaded.multi_label \
            else [names[int(row.argmax())]]
        rows.append({"item_id": work.item_ids[p.index], "text": work.texts[p.index], "score": round(p.score, 6),
                     "reason": p.reason, "labels": guess})
    metrics = {"candidates": len(work.texts), "picked": len(rows), "strategy": DEFAULT_STRATEGY,
               "adapter_version": work.adapter_version}
    loop.complete_loop_job(job_id, work.attempt, rows, metrics)
    return len(rows)


@celery_app.task(name=AUDIT, bind=True)
def audit(self: Task, job_id: str) -> int | None:
    """Train the set's recipe per fold and flag the examples whose label the out-of-fold adapter
    confidently contradicts (reft_core.audit: cleanlab's find_label_issues)."""
    work = loop.lease_loop_job(job_id)
    if not isinstance(work, loop.AuditWork):
        return None
    logs.bind(label_set_id=work.label_set_id, tenant=work.tenant_id)
    from reft_core import ReftConfigError
    from reft_core.audit import audit as audit_examples

    settings = get_settings()
    progress = TrainProgress(job_id, work.attempt)
    with Heartbeat.train(job_id, work.attempt, every=max(1.0, settings.train_lease_seconds / 4),
                         stall_after=settings.train_stall_seconds) as heartbeat:
        try:
            found = audit_examples(model_cache.base(work.base_model), work.texts, work.labels, work.label_names,
                                   work.multi_label, config=work.config, progress=LeasedReport(heartbeat, progress))
        except jobs.LeaseLost:
            log.info("audit job %s was cancelled or taken over; stopping", job_id)
            return None
        except (ReftConfigError, ValueError) as exc:
            jobs.fail_train_job(job_id, "invalid_audit_input", str(exc))
            return None
        except Exception as exc:
            jobs.release_train_job(job_id, work.attempt, f"{type(exc).__name__}: {exc}")
            raise retry_soon(self, exc) from exc
    rows = [{"example_id": work.example_ids[f.index], "text": work.texts[f.index], "given": f.given,
             "suggested": f.suggested, "confidence": f.confidence, "given_score": f.given_score}
            for f in found.findings]
    cv = found.cross_validation
    metrics = {"examples": len(work.texts), "flagged": len(rows), "folds": cv.folds, "fold_scores": cv.fold_scores,
               "steps_chosen": cv.steps, "method": "cleanlab.filter.find_label_issues on out-of-fold probabilities"}
    loop.complete_loop_job(job_id, work.attempt, rows, metrics)
    return len(rows)


# ---------------------------------------------------------------------------------------------
# reconcile


@celery_app.task(name=RECONCILE)
def reconcile() -> dict[str, int]:
    found = jobs.reconcile()
    enqueue_chunks(len(found.chunks))
    for job_id in found.train_jobs:
        enqueue_train(job_id)
    for job_id, job_type in found.loop_jobs:
        enqueue_loop_job(job_id, job_type)
    if found.chunks or found.train_jobs or found.loop_jobs:
        log.info("re-enqueued %d chunks, %d train jobs and %d suggest/audit jobs", len(found.chunks),
                 len(found.train_jobs), len(found.loop_jobs))
    return {"chunks": len(found.chunks), "train_jobs": len(found.train_jobs), "loop_jobs": len(found.loop_jobs)}
