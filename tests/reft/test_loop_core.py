"""reft_core's side of the labeling loop: choosing texts to label (selection) on hand-made
scores and representations, representations from the tagger, and the audit's paths (single- and
multi-label) on a tiny random model (what it finds on real text: tests/workers/test_loop_tasks.py
and bench/loop.py)."""
from __future__ import annotations

import pytest
import torch

from reft_core import Tagger, train
from reft_core.audit import audit, too_few
from reft_core.config import ReftConfigError
from reft_core.selection import STRATEGIES, pick, uncertainty
from tests.reft.conftest import make_base

NAMES = ["a", "b"]


def two_class(margins: list[float]) -> torch.Tensor:
    top = [(1 + m) / 2 for m in margins]
    return torch.tensor([[t, 1 - t] for t in top])


def test_uncertainty_is_one_minus_the_margin_or_the_distance_to_a_threshold():
    assert uncertainty(two_class([0.0, 0.5, 1.0]), False).tolist() == pytest.approx([1.0, 0.5, 0.0])
    multi = torch.tensor([[0.5, 0.9], [0.95, 0.05], [0.3, 0.7]])
    assert uncertainty(multi, True, [0.5, 0.5]).tolist() == pytest.approx([1.0, 0.1, 0.6])
    assert uncertainty(multi, True, [0.3, 0.9]).tolist()[2] == pytest.approx(1.0)


def test_margin_picks_the_texts_nearest_the_boundary_first():
    scores = two_class([0.9, 0.06, 0.5, 0.2, 0.02])
    picks = pick(scores, torch.randn(5, 4), 3, NAMES, strategy="margin")
    assert [p.index for p in picks] == [4, 1, 3]
    assert picks[0].reason.startswith("between 'a' (0.51) and 'b' (0.49), margin 0.02")


def test_margin_times_kcenter_does_not_pick_two_copies_of_one_confusion():
    # rows 0 and 1: equally uncertain and the same point; row 2 a little less uncertain, elsewhere
    scores = two_class([0.02, 0.02, 0.1, 0.9])
    pooled = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    chosen = [p.index for p in pick(scores, pooled, 2, NAMES, strategy="margin_kcenter")]
    assert chosen[0] in (0, 1) and chosen[1] == 2
    assert [p.index for p in pick(scores, pooled, 2, NAMES, strategy="margin")] == [0, 1]
    # far from the labelled examples counts: a point beside an example loses to one far from all
    near_example = pick(scores[:3], pooled[:3], 1, NAMES, labelled=torch.tensor([[1.0, 0.05]]),
                        strategy="margin_kcenter")
    assert near_example[0].index == 2 and "cosine distance" in near_example[0].reason
    for strategy in ("margin", "margin_kcenter"):
        scores_out = [p.score for p in pick(scores, pooled, 4, NAMES, strategy=strategy)]
        assert scores_out == sorted(scores_out, reverse=True)


def test_kcenter_covers_the_space_and_random_is_seeded():
    pooled = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    scores = two_class([0.5] * 4)
    assert {p.index for p in pick(scores, pooled, 2, NAMES, strategy="kcenter",
                                  labelled=torch.tensor([[1.0, 0.0]]))} == {2, 3}
    first = [p.index for p in pick(scores, pooled, 3, NAMES, strategy="random", seed=3)]
    assert first == [p.index for p in pick(scores, pooled, 3, NAMES, strategy="random", seed=3)]
    assert len(set(first)) == 3
    assert set(STRATEGIES) == {"margin_kcenter", "margin", "kcenter", "random"}
    with pytest.raises(ValueError, match="unknown strategy"):
        pick(scores, pooled, 1, NAMES, strategy="entropy")
    assert pick(scores, pooled, 0, NAMES) == [] and len(pick(scores, pooled, 10, NAMES)) == 4
    assert [p.index for p in pick(scores, pooled, 4, NAMES)] == [0, 1, 2, 3]  # the default: margin (ties: row order)


TEXTS = [f"{word} {i}" for i in range(6) for word in ("good", "bad", "fine", "poor")]


@pytest.fixture(scope="module")
def tiny(tokenizer):
    return make_base("bert", tokenizer)


def test_the_tagger_gives_each_texts_scores_and_the_representation_its_head_reads(tiny):
    labels = ["a" if t.startswith(("good", "fine")) else "b" for t in TEXTS]
    adapter = train(tiny, TEXTS, labels, NAMES, config={"min_steps": 5, "epochs": 1, "evaluation": "held_out"})
    assert not adapter.training  # handed back ready to tag: no dropout
    scores, pooled = Tagger(tiny, batch_size=5).represent(adapter, TEXTS[:7])
    assert scores.shape == (7, 2) and pooled.shape == (7, tiny.hidden_size)
    assert torch.allclose(scores.sum(-1), torch.ones(7), atol=1e-5)
    predicted = Tagger(tiny).predict(adapter, TEXTS[:7])
    assert torch.allclose(scores, torch.tensor([[p.scores[n] for n in NAMES] for p in predicted]), atol=1e-4)
    # batching does not change a text's representation
    assert torch.allclose(pooled[3], Tagger(tiny, batch_size=1).represent(adapter, [TEXTS[3]])[1][0], atol=1e-4)


def test_an_audit_needs_enough_examples_of_every_label(tiny):
    assert too_few(["a"] * 6 + ["b"] * 4, NAMES, False) == {"b": 4}
    assert too_few([["a", "b"]] * 5, NAMES, True) == {}
    with pytest.raises(ReftConfigError, match="at least 20 examples"):
        audit(tiny, TEXTS[:10], ["a", "b"] * 5, NAMES)
    with pytest.raises(ReftConfigError, match="'b' has 4"):
        audit(tiny, TEXTS, ["a"] * 20 + ["b"] * 4, NAMES)


@pytest.mark.parametrize("multi_label", [False, True])
def test_an_audits_findings_name_the_given_and_a_different_suggested_label(tiny, multi_label):
    names = ["a", "b", "c"]
    if multi_label:
        labels = [[names[i % 3]] + ([names[(i + 1) % 3]] if i % 4 == 0 else []) for i in range(len(TEXTS))]
    else:
        labels = [names[i % 3] for i in range(len(TEXTS))]
    found = audit(tiny, TEXTS, labels, names, multi_label=multi_label, config={"min_steps": 5}, epochs=1)
    assert found.probs.shape == (len(TEXTS), 3) and found.cross_validation.folds == 5
    for f in found.findings:
        assert f.given == labels[f.index] and f.suggested != f.given
        assert 0 <= f.given_score <= 1 and 0 <= f.confidence <= 1
    assert len({f.index for f in found.findings}) == len(found.findings)


@pytest.mark.parametrize("multi_label", [False, True])
def test_an_audit_forks_no_processes(tiny, multi_label, monkeypatch):
    """cleanlab's default forks a multiprocessing.Pool, which hung an audit job for good inside a
    Celery worker with other threads (CI, PostgreSQL e2e); the audit must not ask for one."""
    import multiprocessing

    def no_pool(*_args, **_kwargs):
        raise AssertionError("the audit forked a multiprocessing.Pool")

    monkeypatch.setattr(multiprocessing, "Pool", no_pool)
    monkeypatch.setattr(multiprocessing.context.BaseContext, "Pool", no_pool)
    names = ["a", "b", "c"]
    labels = ([[names[i % 3]] for i in range(len(TEXTS))] if multi_label else [names[i % 3] for i in range(len(TEXTS))])
    found = audit(tiny, TEXTS, labels, names, multi_label=multi_label, config={"min_steps": 5}, epochs=1)
    assert found.probs.shape == (len(TEXTS), 3)


def test_k_fold_checks_fall_on_the_same_steps_whatever_the_fold_sizes(tiny):
    """201 rows in 5 folds: training shares of 160 and 161 rows are 5 and 6 batches of 32, so each
    fold used to check on its own schedule and the folds' checks were averaged by position (an
    IndexError for this size)."""
    texts = [f"text {i} {'good' if i % 2 else 'bad'}" for i in range(201)]
    labels = ["a" if i % 2 else "b" for i in range(201)]
    from reft_core import recipe_cross_validation

    cv = recipe_cross_validation(tiny, texts, labels, NAMES, False, {"epochs": 3, "min_steps": 100}, folds=5)
    assert cv.folds == 5 and len(cv.fold_scores) == 5 and cv.steps > 0
