"""Calibration, its error, and the auto-accept threshold (reft_core.calibration), on synthetic
predictions whose true calibration is known, and through `train` on a tiny model."""
from __future__ import annotations

import math

import pytest
import torch

from reft_core import Adapter, Tagger, train
from reft_core import calibration as cal
from reft_core.calibration import Calibration

from .conftest import make_base


def overconfident(n: int, classes: int, temperature: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores sharpened by 1/`temperature` from a model whose softmax is calibrated: labels are
    drawn from the calibrated distribution, so the right temperature is `temperature`."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=g, dtype=torch.float64) * 1.5
    truth = torch.multinomial(torch.softmax(logits, -1), 1, generator=g).squeeze(1)
    return torch.softmax(logits * temperature, -1), truth


def test_temperature_recovers_the_sharpening_and_lowers_ece():
    probs, truth = overconfident(4000, 4, temperature=2.5)
    fitted = cal.fit(probs, truth, multi_label=False)
    assert fitted.method == "temperature"
    assert fitted.temperature == pytest.approx(2.5, rel=0.1)
    after = cal.calibrated(fitted, probs, multi_label=False)
    assert cal.ece(probs, truth, False) > 0.1
    assert cal.ece(after, truth, False) < 0.03
    assert torch.equal(after.argmax(-1), probs.argmax(-1))  # a temperature never changes the top label


def test_platt_per_label_fixes_each_label_on_its_own():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3000, 3, generator=g, dtype=torch.float64) * 2
    truth = torch.bernoulli(torch.sigmoid(z), generator=g)
    # label 0 overconfident, label 1 underconfident, label 2 shifted
    seen = torch.sigmoid(torch.stack([3 * z[:, 0], 0.4 * z[:, 1], z[:, 2] + 1.5], 1))
    fitted = cal.fit(seen, truth, multi_label=True)
    assert fitted.method == "platt" and len(fitted.a) == 3
    assert fitted.a[0] == pytest.approx(1 / 3, rel=0.15) and fitted.a[1] == pytest.approx(2.5, rel=0.15)
    assert fitted.b[2] == pytest.approx(-1.5, abs=0.2)
    assert cal.ece(seen, truth, True) > 0.05
    assert cal.ece(cal.calibrated(fitted, seen, True), truth, True) < 0.02


def test_ece_is_the_weighted_gap_between_confidence_and_accuracy_per_bin():
    # 4 items at 0.9 (3 right), 2 at 0.6 (both right): (4·|0.75−0.9| + 2·|1−0.6|)/6
    probs = torch.tensor([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 2)
    truth = torch.tensor([0, 0, 0, 1, 0, 0])
    assert cal.ece(probs, truth, False) == pytest.approx((4 * 0.15 + 2 * 0.4) / 6, abs=1e-5)


def test_a_label_never_seen_gets_a_finite_gentle_fit():
    probs = torch.tensor([[0.9, 0.2], [0.8, 0.3], [0.1, 0.4], [0.2, 0.1]])
    truth = torch.tensor([[1, 0], [1, 0], [0, 0], [0, 0]])
    fitted = cal.fit(probs, truth, multi_label=True)
    assert all(math.isfinite(x) for x in (*fitted.a, *fitted.b))
    assert cal.calibrated(fitted, probs, True)[:, 1].max() < 0.5


def test_review_threshold_meets_the_precision_with_a_margin_for_chance():
    # confidence sorted high → low; the top 90 right, then every other one wrong
    confidence = torch.linspace(1.0, 0.0, 200)
    correct = torch.tensor([True] * 90 + [i % 2 == 0 for i in range(110)])
    t = cal.review_threshold(confidence, correct, 0.95)
    above = confidence >= t
    assert above.sum() >= 90
    assert correct[above].double().mean() >= 0.95
    # the point estimate alone would go lower: the bound keeps a margin
    point = cal.review_threshold(confidence, correct, 0.95, z=0.0)
    assert point is not None and t is not None and point <= t
    assert cal.review_threshold(confidence, torch.zeros(200, dtype=torch.bool), 0.9) is None


def test_threshold_for_takes_the_next_stricter_precision_kept_or_infinity():
    review = {"thresholds": {"0.9": 0.7, "0.95": 0.85, "0.99": None}}
    assert cal.threshold_for(review, 0.9) == 0.7
    assert cal.threshold_for(review, 0.93) == 0.85  # never looser than asked
    assert cal.threshold_for(review, 0.97) == math.inf  # 0.99 is out of reach: review everything
    assert cal.threshold_for(None, 0.9) is None  # an adapter from before calibration


def test_item_confidence_of_multi_label_is_the_chance_every_decision_is_right():
    probs = torch.tensor([[0.9, 0.2, 0.6]])
    assert cal.item_confidence(probs, True, [0.5, 0.5, 0.5]).item() == pytest.approx(0.9 * 0.8 * 0.6)
    assert bool(cal.item_correct(probs, torch.tensor([[1, 0, 1]]), True, [0.5, 0.5, 0.5])[0])


def test_calibration_round_trips_through_its_dict():
    c = Calibration("platt", a=(0.5, 2.0), b=(0.1, -0.2))
    assert Calibration.from_dict(c.to_dict()) == c
    assert Calibration.from_dict(None) == Calibration()


SENTIMENT = [("a joy from start to finish", "pos"), ("wonderful and warm", "pos"), ("I loved every minute", "pos"),
             ("a delight", "pos"), ("brilliant acting", "pos"), ("fun and moving", "pos"),
             ("boring and long", "neg"), ("a waste of time", "neg"), ("I hated it", "neg"),
             ("dull and clumsy", "neg"), ("awful script", "neg"), ("tedious", "neg")]


def test_training_stores_the_calibration_and_reports_ece_and_the_review_table(tokenizer, tmp_path):
    base = make_base("bert", tokenizer)
    texts, labels = zip(*SENTIMENT)
    adapter = train(base, list(texts), list(labels), ["neg", "pos"], config={"min_steps": 20})
    metrics = adapter.metrics
    assert metrics["evaluation"] == "k-fold"
    assert adapter.config.calibration["method"] == "temperature"
    assert {"ece_before", "ece_after", "n", "bins"} <= set(metrics["calibration"])
    assert metrics["calibration"]["n"] == len(texts)
    assert set(metrics["review"]["thresholds"]) == {f"{p:g}" for p in cal.PRECISION_GRID}
    # scores from the saved adapter are the calibrated ones
    loaded = Adapter.load(adapter.save(tmp_path / "a"), base)
    t = loaded.config.calibration["temperature"]
    logits = torch.tensor([[0.0, 1.0]])
    assert loaded.scores(logits)[0, 1].item() == pytest.approx(torch.softmax(logits / t, -1)[0, 1].item(), abs=1e-5)
    # with a review threshold, needs_review is exactly "confidence below it"
    preds = Tagger(base).predict(loaded, ["a joy", "dull"], review_threshold=0.75)
    for p in preds:
        assert p.needs_review == (p.confidence < 0.75)
        assert p.confidence == pytest.approx(max(p.scores.values()))


def test_a_multi_label_answer_always_has_its_top_label_when_the_examples_always_had_one():
    probs = torch.tensor([[0.2, 0.7, 0.1], [0.3, 0.4, 0.35], [0.9, 0.8, 0.0]])
    thresholds = [0.5, 0.5, 0.5]
    assert cal.decisions(probs, thresholds).tolist() == [[False, True, False], [False, False, False],
                                                         [True, True, False]]
    # min_labels 1: the second item, where no label reaches its threshold, gets its top one
    assert cal.decisions(probs, thresholds, min_labels=1).tolist() == [[False, True, False], [False, True, False],
                                                                       [True, True, False]]
    truth = torch.tensor([[0, 1, 0], [0, 1, 0], [1, 1, 0]])
    assert cal.item_correct(probs, truth, True, thresholds).tolist() == [True, False, True]
    assert cal.item_correct(probs, truth, True, thresholds, min_labels=1).tolist() == [True, True, True]
    # its confidence is the chance that its top label is right and the others wrong
    assert cal.item_confidence(probs, True, thresholds, min_labels=1)[1].item() == pytest.approx(0.7 * 0.4 * 0.65)


def test_labels_seen_a_few_times_share_one_threshold():
    # Two labels seen often, three seen 3 times each in 400 evaluated items (GoEmotions with a
    # few examples per label): tuned alone, each of the three would follow its 3 positives.
    g = torch.Generator().manual_seed(3)
    z = torch.randn(400, 5, generator=g, dtype=torch.float64) * 2
    truth = torch.bernoulli(torch.sigmoid(z), generator=g)
    rare = [2, 3, 4]
    truth[:, rare] = 0
    for c in rare:
        truth[torch.randperm(400, generator=g)[:3], c] = 1
    assert cal.own_threshold(truth).tolist() == [True, True, False, False, False]

    from reft_core.metrics import tune_thresholds
    probs = torch.sigmoid(z).float()
    thresholds = tune_thresholds(probs, truth)
    assert thresholds[2] == thresholds[3] == thresholds[4]
    # the frequent labels keep their own: each is the best cut for that label alone
    for c in (0, 1):
        assert tune_thresholds(probs[:, [c, c]], truth[:, [c, c]])[0] == thresholds[c]
    # a label never seen there keeps 0.5, so that it is not always predicted on no evidence
    truth[:, 4] = 0
    assert tune_thresholds(probs, truth)[4] == 0.5
