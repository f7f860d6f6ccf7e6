"""The pairs objective (SetFit's pairs through the adapter, then a logistic head folded into it)
and `objective: "auto"`, which trains it where it was measured to help."""
import statistics

import numpy as np
import pytest
import torch

from reft_core import Adapter, ReftConfigError, Tagger, TrainConfig, recipe_cross_validation, train
from reft_core.config import BEFORE_OPTION
from reft_core.heads import Head
from reft_core.probe import ABSENT_LOGIT, fold_into, logistic_probe
from reft_core.training import PAIRS_ENUMERATED, HiddenCache, pooled, setfit_pairs

from .conftest import make_base
from .test_training import FAST, LABELS, TEXTS


def test_the_pairs_are_setfits_every_same_and_other_label_pair_balanced():
    # SetFit 1.2's default sampling: every same-label pair (with itself) and every other-label
    # pair, the smaller side repeated to as many as the larger; a seed's order is the same each run
    labels = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    pairs = setfit_pairs(labels, seed=3)
    same = [p for p in pairs if p[2] == 1.0]
    other = [p for p in pairs if p[2] == 0.0]
    assert len(same) == len(other) == max(3 * 4 // 2 + 2 * 3 // 2 + 4 * 5 // 2, 9 * 8 // 2 - (3 + 1 + 6))
    assert all((labels[a] == labels[b]) == (kind == 1.0) and a <= b for a, b, kind in pairs)
    assert {(a, b) for a, b, kind in other} == {(a, b) for a in range(9) for b in range(a + 1, 9)
                                                 if labels[a] != labels[b]}
    assert {(a, b) for a, b, kind in same} == {(a, b) for a in range(9) for b in range(a, 9)
                                                if labels[a] == labels[b]}
    assert pairs == setfit_pairs(labels, seed=3) != setfit_pairs(labels, seed=4)


def test_past_the_listing_limit_the_pairs_are_drawn_half_of_each_kind():
    # thousands of examples would make millions of pairs: as many as the steps need are drawn instead
    n = 700
    assert n * (n + 1) // 2 > PAIRS_ENUMERATED
    labels = [i % 7 for i in range(n)]
    pairs = setfit_pairs(labels, seed=0, needed=1600)
    assert len(pairs) == 1600
    assert sum(kind for _, _, kind in pairs) == 800
    assert all((labels[a] == labels[b]) == (kind == 1.0) for a, b, kind in pairs)
    assert len({a for a, _, _ in pairs}) > 500  # drawn across the whole set


@pytest.mark.parametrize("labels", [[0, 1], [0, 1, 2], [0, 2]])
def test_the_fitted_regression_folded_into_the_head_scores_as_the_regression(labels):
    # W·((x − μ)/σ) + b written as (W/σ)·x + (b − W·μ/σ): the head's softmax is the pipeline's
    # predict_proba; a label no row carries (2 of [0, 2] among three) is never chosen
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)) * rng.uniform(0.5, 5, size=8) + rng.normal(size=8) * 3
    y = np.array([labels[i % len(labels)] for i in range(60)])
    x[np.arange(60), y] += 2.0  # something to learn
    head = Head(8, 3, "mean")
    c = fold_into(head, x, y, seed=0)
    pipeline, c_again = logistic_probe(x, y, False, seed=0)
    assert c == c_again
    with torch.no_grad():
        logits = torch.nn.Linear.forward(head, torch.tensor(x, dtype=torch.float32))
    probs = torch.softmax(logits.double(), -1).numpy()
    expected = np.zeros((60, 3))
    expected[:, pipeline.classes_] = pipeline.predict_proba(x)
    np.testing.assert_allclose(probs, expected, atol=1e-4)
    for absent in set(range(3)) - set(labels):
        assert torch.all(head.bias[absent] == ABSENT_LOGIT) and probs[:, absent].max() < 1e-6


def test_the_pairs_objective_trains_every_block_at_its_rank_and_its_head_is_the_regression(tokenizer):
    base = make_base("bert", tokenizer)
    config = {k: v for k, v in FAST.items() if k != "layers"} | {"objective": "pairs"}
    adapter = train(base, TEXTS, LABELS, ["neg", "pos"], config=config)
    m = adapter.metrics
    assert (m["objective"], m["evaluation"], m["folds"], m["steps_run"]) == ("pairs", "k-fold", 5, 100)
    assert "objective_scores" not in m and len(m["fold_scores"]) == 5
    assert adapter.layers == list(range(base.num_layers))  # layers auto: every block
    assert adapter.config.rank == TrainConfig().pairs_rank == 8
    assert adapter.config.train_config.objective == "pairs"
    assert m["loss_curve"][-1] < m["loss_curve"][0]  # the pairs' loss fell
    # the head is the logistic regression fitted on the trained representation of the examples
    targets = np.array([["neg", "pos"].index(label) for label in LABELS])
    cache = HiddenCache(base, base.tokenize(TEXTS, 128), upto=0)
    features = pooled(adapter, cache, 0, list(range(len(TEXTS))), "mean").numpy()
    regression, _ = logistic_probe(features, targets, False, seed=0)
    answers = Tagger(base).predict(adapter, TEXTS)
    assert [a.labels for a in answers] == [[["neg", "pos"][i]] for i in regression.predict(features)]
    # it saves and loads as any adapter
    again = Adapter.from_bytes(*adapter.to_bytes(), base)
    assert [a.labels for a in Tagger(base).predict(again, TEXTS)] == [a.labels for a in answers]


def test_auto_trains_pairs_in_k_fold_of_a_single_label_set_and_labels_elsewhere(tokenizer):
    base = make_base("bert", tokenizer)
    auto = train(base, TEXTS, LABELS, ["neg", "pos"], config={**FAST, "objective": "auto"})
    pairs = train(base, TEXTS, LABELS, ["neg", "pos"], config={**FAST, "objective": "pairs"})
    assert (auto.metrics["objective"], auto.metrics["evaluation"]) == ("pairs", "k-fold")
    assert auto.metrics["fold_scores"] == pairs.metrics["fold_scores"]
    assert all(torch.equal(weight, pairs.state_dict()[name]) for name, weight in auto.state_dict().items())
    assert auto.config.train_config.objective == "auto"  # the recipe as asked: it settles again on retraining
    # the promotion's measure of a recipe settles the same way, on the same folds
    cv = recipe_cross_validation(base, TEXTS, LABELS, ["neg", "pos"], False, {**FAST, "objective": "auto"})
    assert cv.fold_scores == pairs.metrics["fold_scores"]
    # held out (200 examples or more; here 10) and multi-label sets train on the labels
    held_out = train(base, TEXTS, LABELS, ["neg", "pos"], config={**FAST, "kfold_below": 10})
    multi = train(base, TEXTS, [[label] for label in LABELS], ["neg", "pos"], multi_label=True, config=FAST)
    labels = train(base, TEXTS, [[label] for label in LABELS], ["neg", "pos"], multi_label=True,
                   config={**FAST, "objective": "labels"})
    assert (held_out.metrics["evaluation"], multi.metrics["evaluation"]) == ("held_out", "k-fold")
    assert held_out.metrics["objective"] == multi.metrics["objective"] == "labels"
    assert all(torch.equal(weight, labels.state_dict()[name]) for name, weight in multi.state_dict().items())
    # adapters saved before the option were trained on the labels
    assert TrainConfig.from_dict(BEFORE_OPTION).objective == "labels"


def test_pairs_is_refused_for_a_multi_label_or_spans_set(tokenizer):
    base = make_base("bert", tokenizer)
    with pytest.raises(ReftConfigError) as refused:
        train(base, TEXTS, [[label] for label in LABELS], ["neg", "pos"], multi_label=True,
              config={**FAST, "objective": "pairs"})
    assert refused.value.field == "objective" and "single-label" in refused.value.message
    problem = TrainConfig(objective="pairs").problem_for_set("spans", False)
    assert problem is not None and problem.field == "objective"
    assert TrainConfig(objective="pairs").problem_for_set("classification", False) is None


def test_recipes_are_compared_by_each_folds_score_at_the_step_the_other_folds_chose(tokenizer, monkeypatch):
    # The best check's mean favours a recipe with more checks to choose from (labels: about 20,
    # pairs: 1). The nested score scores fold f at the step the other folds' mean chose.
    from reft_core import training

    base = make_base("bert", tokenizer)
    fits = []
    real_fit = training.Run.fit
    monkeypatch.setattr(training.Run, "fit", lambda self, *a, **kw: fits.append(real_fit(self, *a, **kw)) or fits[-1])
    labels = recipe_cross_validation(base, TEXTS, LABELS, ["neg", "pos"], False, {**FAST, "objective": "labels"})
    checks = [[score for _, score in fit.checks] for fit in fits]
    assert len(checks) == 5 and len(checks[0]) > 1
    expected = []
    for f in range(5):
        others = [sum(checks[g][k] for g in range(5) if g != f) for k in range(len(checks[0]))]
        expected.append(checks[f][max(range(len(others)), key=lambda k: (others[k], k))])
    assert labels.nested_score == pytest.approx(sum(expected) / 5)
    assert labels.score == pytest.approx(max(sum(c[k] for c in checks) / 5 for k in range(len(checks[0]))))
    # one check a fold: nothing chosen, the two scores agree; train() records it for promotion
    pairs = train(base, TEXTS, LABELS, ["neg", "pos"], config={**FAST, "objective": "pairs"})
    assert pairs.metrics["fold_score_nested"] == pytest.approx(statistics.fmean(pairs.metrics["fold_scores"]),
                                                               abs=1e-4)
