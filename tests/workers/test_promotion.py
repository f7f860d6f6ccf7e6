"""A new version replaces the active one only if it is at least as good on the same rows (the
train task on a real database with the bundled MiniLM; workers/promotion.py)."""
from __future__ import annotations

from sqlalchemy import select, update

from reft_core import train
from store import adapters, jobs, label_sets
from store.db import session_scope
from store.models import Example, Job, Label, LabelSet, Tenant
from tests.workers.conftest import run_as_worker
from workers import model_cache, tasks, train_lease

POS = ["a wonderful , moving film", "great fun from start to finish", "brilliant acting and a sharp script",
       "i loved every minute", "a joy to watch", "funny and warm", "superb in every way", "the best film of the year",
       "charming and clever", "delightful", "a triumph", "beautifully shot and deeply felt", "an instant classic",
       "smart , tender and funny", "i would watch it again tomorrow", "the cast is terrific",
       "a gorgeous , generous movie", "pure pleasure", "it made me laugh and cry", "a masterpiece of suspense"]
NEG = ["a dull , lifeless mess", "boring from start to finish", "the worst script i have seen", "i hated every minute",
       "a chore to sit through", "flat and tedious", "awful in every way", "the plot makes no sense",
       "lazy and cynical", "painfully slow", "a disaster", "ugly and empty", "instantly forgettable",
       "stupid , cruel and unfunny", "i walked out after an hour", "the cast looks bored", "a cheap , joyless movie",
       "pure tedium", "it made me angry", "a mess of clichés"]
# Four mislabelled examples: a held-out split that happens to hold two of them scores low.
TRAPS = [("a wonderful , joyful film", "neg"), ("the best fun i have had", "neg"),
         ("a dreadful , boring mess", "pos"), ("awful and dull", "pos")]
TEXTS = POS + NEG + [t for t, _ in TRAPS]
LABELS = ["pos"] * len(POS) + ["neg"] * len(NEG) + [label for _, label in TRAPS]
GOOD = {"min_steps": 40}
WORSE = {"rank": 1, "layers": [4], "min_steps": 10, "epochs": 1, "lr": 0.002}  # too little to learn much


# The evaluation rows of the held-out test, fixed (the store's draw hashes the set's random id):
# clean examples, eight of each label.
EVALUATION = POS[-8:] + NEG[-8:]


def sentiment_set(config: dict, evaluation: list[str] | None = None) -> str:
    """A label set of TEXTS, each example marked for evaluation as the store marks them, or, when
    `evaluation` is given, exactly those."""
    with session_scope() as s:
        tenant = Tenant(name="promotion")
        s.add(tenant)
        s.flush()
        ls = LabelSet(tenant_id=tenant.id, name="reviews", config=config)
        ls.labels = [Label(name="neg", position=0), Label(name="pos", position=1)]
        s.add(ls)
        s.flush()
        label_sets.add_examples(s, tenant.id, ls.id, [(t, [label]) for t, label in zip(TEXTS, LABELS)])
        if evaluation is not None:
            s.execute(update(Example).where(Example.label_set_id == ls.id)
                      .values(evaluation=Example.text.in_(evaluation)))
        return ls.id


def train_job(label_set_id: str, config: dict) -> str:
    """A train job as the API makes it (the set's config under the request's)."""
    with session_scope() as s:
        ls = s.get(LabelSet, label_set_id)
        return jobs.create_train_job(s, ls.tenant_id, ls.id, config, min_examples_per_label=1)[0].id


def promotion_of(job_id: str) -> dict:
    with session_scope() as s:
        return s.get(Job, job_id).metrics["promotion"]


def test_a_worse_version_that_the_old_comparison_promoted_is_not_promoted(work_db, clean_redis):
    label_set_id = sentiment_set({"kfold_below": 10}, EVALUATION)  # held-out evaluation at this size
    base = model_cache.base()
    # Version 1 as the old code trained it: scored on its own random split, which (seed 5) holds
    # two of the mislabelled examples.
    active = train(base, TEXTS, LABELS, ["neg", "pos"], config={**GOOD, "seed": 5, "kfold_below": 10})
    first = train_job(label_set_id, GOOD)
    jobs.lease_train_job(first)
    weights, config_json = active.to_bytes()
    jobs.complete_train_job(first, weights, config_json, active.metrics, 1, adapters.first_version("macro_f1", None))
    # The old comparison: the new version's score on its own split against the active one's
    # stored score. A weaker recipe on a clean split of its own (seed 1) beats it there.
    weaker_alone = train(base, TEXTS, LABELS, ["neg", "pos"], config={**WORSE, "seed": 1, "kfold_below": 10})
    assert weaker_alone.metrics["macro_f1"] > active.metrics["macro_f1"]

    second = train_job(label_set_id, {**WORSE, "seed": 1})
    run_as_worker(tasks.train_adapter, second)
    decided = promotion_of(second)
    with session_scope() as s:
        marked = s.scalars(select(Example.text).where(Example.evaluation.is_(True))).all()
    assert sorted(marked) == sorted(EVALUATION)
    assert decided["rule"] == "held_out" and decided["promoted"] is False
    assert decided["active_version"] == 1 and decided["active_score"] > decided["new_score"]
    assert "retrained" in decided["active_scored"] and decided["n_eval"] == len(EVALUATION)
    assert adapters.adapter_ref(label_set_id).version == 1  # version 1 still serves


def test_on_a_small_set_both_recipes_are_cross_validated_on_the_same_folds(work_db, clean_redis, monkeypatch):
    # Retraining the active recipe per fold reports its steps to the train task's heartbeat, so
    # that a long retraining is not taken for a stuck worker (REFTAG_TRAIN_STALL_SECONDS).
    beats = []
    alive = train_lease.Heartbeat.alive
    monkeypatch.setattr(train_lease.Heartbeat, "alive", lambda self, report=None: (beats.append(report),
                                                                                  alive(self, report))[1])
    label_set_id = sentiment_set({})  # 44 examples: k-fold
    first = train_job(label_set_id, GOOD)
    run_as_worker(tasks.train_adapter, first)
    assert promotion_of(first)["rule"] == "first"
    second = train_job(label_set_id, WORSE)
    run_as_worker(tasks.train_adapter, second)
    decided = promotion_of(second)
    assert decided["rule"] == "k-fold" and decided["folds"] == 5
    assert len(decided["new_fold_scores"]) == len(decided["active_fold_scores"]) == 5
    assert decided["promoted"] is (decided["new_score"] >= decided["active_score"])
    assert "over 5 folds" in decided["reason"]
    # Each version's own training (5 fold fits and the refit: 6), then the active recipe's 5 folds.
    fits = [report["fits"] for report in beats]
    assert fits[0] == 6 and fits[-1] == 5 and fits.count(5) >= 5
