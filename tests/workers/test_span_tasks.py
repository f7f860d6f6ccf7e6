"""A spans label set through the workers, on a real database with the bundled MiniLM: the train
task trains a spans adapter (early-stopped on the set's evaluation examples), a tag chunk writes
each text's spans, the predict task answers spans, and a second version is promoted only when it
does at least as well as the active one on the same evaluation examples."""
from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select, update

from store import adapters, jobs, label_sets
from store.db import session_scope
from store.label_sets import NewExample
from store.models import Adapter, Example, Job, Label, LabelSet, Result, Tenant
from tests.workers.conftest import run_as_worker
from tests.workers.test_promotion import train_job
from workers import tasks

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ner_en"
TYPES = json.loads((FIXTURE / "labels.json").read_text())
TRAIN = [json.loads(line) for line in (FIXTURE / "train.jsonl").read_text().splitlines() if line.strip()]
TEST = [json.loads(line) for line in (FIXTURE / "test.jsonl").read_text().splitlines() if line.strip()]
FAST = {"min_steps": 60}


def spans_set(config: dict, evaluation: int = 8) -> str:
    """A spans label set of the fixture's training sentences; the last `evaluation` of them are
    its evaluation examples (fixed here: the store's draw hashes the set's random id)."""
    with session_scope() as s:
        tenant = Tenant(name="spans")
        s.add(tenant)
        s.flush()
        ls = LabelSet(tenant_id=tenant.id, name="entities", kind="spans", config=config)
        ls.labels = [Label(name=name, position=i) for i, name in enumerate(TYPES)]
        s.add(ls)
        s.flush()
        label_sets.add_examples(s, tenant.id, ls.id, [NewExample(r["text"], [], r["spans"]) for r in TRAIN])
        s.execute(update(Example).where(Example.label_set_id == ls.id)
                  .values(evaluation=Example.text.in_([r["text"] for r in TRAIN[-evaluation:]])))
        return ls.id


def tag(label_set_id: str, texts: list[str]) -> str:
    with session_scope() as s:
        ls = s.get(LabelSet, label_set_id)
        job, _ = jobs.create_tag_job(s, ls.tenant_id, ls.id, [(f"t{i}", t, None) for i, t in enumerate(texts)],
                                     chunk_size=64)
        return job.id


def test_a_spans_set_trains_tags_and_answers_spans(work_db, clean_redis):
    label_set_id = spans_set(FAST)
    with session_scope() as s:
        stored = s.scalars(select(Example).where(Example.label_set_id == label_set_id).order_by(Example.id)).all()
        assert [e.spans for e in stored] == [sorted(r["spans"], key=lambda x: x["start"]) for r in TRAIN]
        assert stored[0].labels == [t for t in TYPES if t in {x["label"] for x in TRAIN[0]["spans"]}]
    train_id = train_job(label_set_id, {})
    assert run_as_worker(tasks.train_adapter, train_id)["version"] == 1
    with session_scope() as s:
        job = s.get(Job, train_id)
        assert job.status == "succeeded", job.error
        active = adapters.active_adapter(s, label_set_id)
        # early-stopped and scored on the set's own evaluation examples
        assert (active.metrics["evaluation"], active.metrics["split"], active.metrics["n_eval"]) == ("held_out",
                                                                                                    "given", 8)
        assert 0.0 <= active.metrics["micro_f1"] <= 1.0 and set(active.metrics["per_label"]) == set(TYPES)
        assert job.metrics["promotion"]["rule"] == "first"

    texts = [r["text"] for r in TEST]
    tag_id = tag(label_set_id, texts)
    assert run_as_worker(tasks.tag_chunk) == len(texts)
    assert run_as_worker(tasks.tag_chunk) is None  # nothing left: every item was written once
    with session_scope() as s:
        results = s.scalars(select(Result).where(Result.job_id == tag_id).order_by(Result.position)).all()
        job = s.get(Job, tag_id)
        assert (job.status, job.done, job.config) == ("succeeded", len(texts), {"span_review_threshold": 0.5})
    found = 0
    for result, text in zip(results, texts):
        assert isinstance(result.spans, list) and result.error is None and result.adapter_version == 1
        for span in result.spans:
            assert text[span["start"]:span["end"]] == span["text"] and span["label"] in TYPES
            assert 0.0 < span["score"] <= 1.0
        assert result.labels == [t for t in TYPES if t in {x["label"] for x in result.spans}]
        assert result.needs_review == (result.confidence < 0.5)
        found += len(result.spans)
    gold = sum(len(r["spans"]) for r in TEST)
    # a model that learned something finds about as many spans as there are (not none, not everything)
    assert gold // 3 <= found <= 3 * gold, (found, gold)

    answered = tasks.predict.run(_tenant(label_set_id), label_set_id, None, texts[:3])
    assert [a["spans"] for a in answered] == [r.spans for r in results[:3]]
    assert all(a["adapter_version"] == 1 and "needs_review" in a for a in answered)


def test_a_worse_spans_version_is_not_promoted_over_the_active_one(work_db, clean_redis):
    label_set_id = spans_set(FAST)
    run_as_worker(tasks.train_adapter, train_job(label_set_id, {}))
    worse_id = train_job(label_set_id, {"min_steps": 1, "epochs": 1, "lr": 1e-5, "layers": [4], "rank": 1})
    made = run_as_worker(tasks.train_adapter, worse_id)
    with session_scope() as s:
        promotion = s.get(Job, worse_id).metrics["promotion"]
        first = s.scalar(select(Adapter).where(Adapter.label_set_id == label_set_id, Adapter.version == 1))
    assert made["version"] == 2 and made["active"] is False, promotion
    assert (promotion["rule"], promotion["metric"], promotion["n_eval"]) == ("held_out", "micro_f1", 8)
    # the active version was scored as it is on the same 8 evaluation examples it never trained on
    assert promotion["active_score"] == round(first.metrics["micro_f1"], 4)
    assert promotion["new_score"] < promotion["active_score"]


def _tenant(label_set_id: str) -> str:
    with session_scope() as s:
        return s.get(LabelSet, label_set_id).tenant_id
