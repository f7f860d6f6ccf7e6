"""The suggest and audit tasks on a real database with the bundled MiniLM (store.loop,
reft_core.selection, reft_core.audit): what they pick and flag, written once however often they
run, and reconciled like train jobs."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from store import label_sets, loop
from store.db import session_scope
from store.models import Example, Job, JobItem, JobOutput, LabelSet, Result, utcnow
from tests.workers.conftest import run_as_worker
from tests.workers.test_promotion import NEG, POS, TRAPS, sentiment_set, train_job
from workers import tasks

FAST = {"min_steps": 40}
UNLABELLED = ["a warm , witty and wise film", "dreary and far too long", "not bad , not great", "it is a movie",
              "the ending is a letdown but the rest is fine", "superb", "i fell asleep twice", "a mixed bag",
              "some good jokes , many flat ones", "the music is lovely", "too loud", "wonderful", "meh",
              "the critics will hate it but i had fun", "charming", "an utter waste of time"]


def tag_job_of(label_set_id: str, texts: list[str]) -> str:
    """A finished tag job of these texts (its results do not matter to suggest, only its items)."""
    with session_scope() as s:
        ls = s.get(LabelSet, label_set_id)
        job = Job(tenant_id=ls.tenant_id, type="tag", label_set_id=ls.id, total=len(texts), adapter_version=1,
                  status="succeeded")
        s.add(job)
        s.flush()
        for i, text in enumerate(texts):
            s.add(JobItem(job_id=job.id, position=i, item_id=f"u{i}", text=text))
        return job.id


def trained_set() -> str:
    label_set_id = sentiment_set(FAST)
    run_as_worker(tasks.train_adapter, train_job(label_set_id, {}))
    return label_set_id


def test_suggest_picks_n_unreviewed_items_that_are_not_examples_best_first_and_writes_them_once(work_db, clean_redis):
    label_set_id = trained_set()
    texts = UNLABELLED + [POS[0]]  # the last is already an example
    tag_id = tag_job_of(label_set_id, texts)
    with session_scope() as s:  # u0 was reviewed: a person labelled it already
        s.add(Result(job_id=tag_id, position=0, item_id="u0", labels=["pos"], reviewed_labels=["pos"],
                     reviewed_at=utcnow()))
        ls = s.get(LabelSet, label_set_id)
        job = loop.create_suggest_job(s, ls.tenant_id, ls.id, tag_id, 6)
        job_id = job.id
    assert run_as_worker(tasks.suggest, job_id) == 6
    with session_scope() as s:
        job = s.get(Job, job_id)
        picks = [row.body for row in loop.all_outputs(s, job)]
        assert (job.status, job.metrics["candidates"], job.metrics["picked"]) == ("succeeded", len(UNLABELLED) - 1, 6)
    ids = [p["item_id"] for p in picks]
    assert len(set(ids)) == 6 and "u0" not in ids and f"u{len(UNLABELLED)}" not in ids
    assert all(p["text"] == UNLABELLED[int(p["item_id"][1:])] for p in picks)
    assert all(p["reason"].startswith("between ") and p["labels"] in (["pos"], ["neg"]) for p in picks)
    scores = [p["score"] for p in picks]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    # an unambiguous text is not what a person should label next
    assert not {"superb", "wonderful", "charming"} >= set(p["text"] for p in picks[:3])

    assert run_as_worker(tasks.suggest, job_id) is None  # a redelivered message: the job is finished
    with session_scope() as s:
        assert len(s.scalars(select(JobOutput).where(JobOutput.job_id == job_id)).all()) == 6


def test_audit_flags_the_mislabelled_examples_with_the_right_suggestion(work_db, clean_redis):
    label_set_id = sentiment_set({"min_steps": 40, "epochs": 3})
    with session_scope() as s:
        ls = s.get(LabelSet, label_set_id)
        job_id = loop.create_audit_job(s, ls.tenant_id, ls.id).id
        ids = {e.text: e.id for e in s.scalars(select(Example).where(Example.label_set_id == ls.id))}
    flagged = run_as_worker(tasks.audit, job_id)
    with session_scope() as s:
        job = s.get(Job, job_id)
        findings = [row.body for row in loop.all_outputs(s, job)]
        assert job.status == "succeeded", job.error
        assert job.metrics["folds"] == 5 and len(job.metrics["fold_scores"]) == 5
        assert job.metrics["examples"] == len(POS) + len(NEG) + len(TRAPS) and job.metrics["flagged"] == flagged
        assert job.detail.get("total_steps")  # the folds' training progress, as a train job reports it
    by_text = {f["text"]: f for f in findings}
    caught = [text for text, _ in TRAPS if text in by_text]
    assert len(caught) >= 3, findings
    for text, given in TRAPS:
        if text in by_text:
            f = by_text[text]
            assert (f["example_id"], f["given"], f["suggested"]) == (ids[text], given,
                                                                     "pos" if given == "neg" else "neg")
            assert f["confidence"] > 0.5 > f["given_score"]
    # the planted errors first; beyond them a few honest doubts at most, not half the set
    top = {f["text"] for f in findings[:len(TRAPS) + 1]}
    assert len(top & {text for text, _ in TRAPS}) >= 3, findings
    assert len(findings) <= (len(POS) + len(NEG) + len(TRAPS)) // 4
    assert [f["given_score"] for f in findings] == sorted(f["given_score"] for f in findings)  # most suspicious first


def test_an_audit_of_too_few_examples_fails_with_the_reason(work_db, clean_redis):
    """The API refuses these; a set that lost examples after the audit was queued fails here."""
    label_set_id = sentiment_set(FAST)
    with session_scope() as s:
        ls = s.get(LabelSet, label_set_id)
        job_id = loop.create_audit_job(s, ls.tenant_id, ls.id).id
        for example in s.scalars(select(Example).where(Example.label_set_id == ls.id, Example.labels == ["pos"])):
            s.delete(example)
        label_sets.add_examples(s, ls.tenant_id, ls.id, [("only one positive", ["pos"])])
    assert run_as_worker(tasks.audit, job_id) is None
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job.status == "failed" and job.error["code"] == "invalid_audit_input"
        assert "at least 5 examples of every label" in job.error["message"]


def test_reconcile_sends_a_lost_suggest_or_audit_job_to_its_task(work_db, clean_redis):
    label_set_id = sentiment_set(FAST)
    with session_scope() as s:
        ls = s.get(LabelSet, label_set_id)
        audit_id = loop.create_audit_job(s, ls.tenant_id, ls.id).id
        job = s.get(Job, audit_id)
        job.created_at = utcnow() - timedelta(hours=1)  # queued long ago, and its message is gone
    assert tasks.reconcile() == {"chunks": 0, "train_jobs": 0, "loop_jobs": 1}
    assert clean_redis.queued_tasks("train") == [{"task": "reftag.audit", "args": [audit_id]}]
