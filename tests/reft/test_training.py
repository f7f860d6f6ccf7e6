"""Training: determinism, progress, caching, held-out metrics, multi-label thresholds."""
import dataclasses
import random

import numpy as np
import pytest
import torch

from reft_core import ReftConfigError, Tagger, TrainConfig, train
from reft_core.attach import Edits, run_full
from reft_core.config import BEFORE_OPTION
from reft_core.training import (
    HiddenCache,
    _last_hidden,
    label_weights,
    length_batches,
    shuffled_batches,
    split_held_out,
)

from .conftest import make_base, randomize

POS = ["a wonderful , moving film", "great fun", "brilliant acting and a sharp script", "i loved it",
       "a joy to watch", "funny and warm", "superb", "the best film of the year", "charming", "delightful"]
NEG = ["a dull , lifeless mess", "boring", "the worst script i have seen", "i hated it", "a chore to sit through",
       "flat and tedious", "awful", "the plot makes no sense", "lazy", "painfully slow"]
TEXTS = POS + NEG
LABELS = ["pos"] * len(POS) + ["neg"] * len(NEG)
FAST = {"epochs": 3, "batch_size": 4, "eval_fraction": 0.2, "layers": [1, 3]}


def test_training_is_deterministic_for_a_seed(tokenizer):
    base = make_base("bert", tokenizer)
    a = train(base, TEXTS, LABELS, ["neg", "pos"], config=FAST)
    b = train(base, TEXTS, LABELS, ["neg", "pos"], config=FAST)
    c = train(base, TEXTS, LABELS, ["neg", "pos"], config={**FAST, "seed": 1})
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_progress_reports_step_epoch_loss_and_eta(tokenizer):
    base = make_base("llama", tokenizer)
    seen = []
    train(base, TEXTS, LABELS, ["neg", "pos"], config=FAST, progress=seen.append)
    assert [e["step"] for e in seen] == list(range(1, len(seen) + 1))
    assert {"step", "total_steps", "epoch", "epochs", "fit", "fits", "loss", "eta_seconds"} <= set(seen[0])
    assert all(1 <= e["epoch"] <= e["epochs"] and 1 <= e["fit"] <= e["fits"] for e in seen)
    assert seen[-1]["fit"] == seen[-1]["fits"] == 6  # five folds, then the refit on every example
    assert all(e["loss"] >= 0 and e["eta_seconds"] >= 0 for e in seen)


def test_training_from_the_cache_equals_a_full_forward(tokenizer):
    base = make_base("qwen2", tokenizer)
    from reft_core import Adapter
    adapter = randomize(Adapter.new(base, intervention="loreft", layers=[1, 2], positions="f1+l1", rank=4,
                                    dropout=0.0, label_names=["neg", "pos"], multi_label=False, pooling="last")).eval()
    ids = base.tokenize(TEXTS, 32)
    cache = HiddenCache(base, ids, upto=1)
    rows = [0, 3, 11, 19]
    with torch.no_grad():
        cached = adapter.head(*_last_hidden(adapter, cache, 1, rows))
        input_ids, mask = base.pad([ids[i] for i in rows])
        full = adapter.head(run_full(base, input_ids, mask, Edits([(adapter, None)], mask)), mask)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)


def test_cache_spills_to_disk_past_its_memory_budget(tokenizer):
    base = make_base("bert", tokenizer)
    ids = base.tokenize(TEXTS, 32)
    in_memory = HiddenCache(base, ids, upto=2)
    on_disk = HiddenCache(base, ids, upto=2, budget_bytes=0)
    assert isinstance(on_disk.store, np.memmap) and not isinstance(in_memory.store, np.memmap)
    for a, b in zip(in_memory.batch([1, 5, 7]), on_disk.batch([1, 5, 7])):
        assert torch.equal(a, b)


def test_held_out_split_is_stratified():
    targets = torch.tensor([0] * 20 + [1] * 10 + [2] * 2)
    train_rows, held = split_held_out(targets, 0.2, seed=0)
    assert sorted(train_rows + held) == list(range(32))
    held_labels = targets[held].tolist()
    assert held_labels.count(0) == 4 and held_labels.count(1) == 2 and held_labels.count(2) == 1


def test_metrics_cover_accuracy_macro_f1_per_label_and_confusion(tokenizer):
    base = make_base("roberta", tokenizer)
    adapter = train(base, TEXTS, LABELS, ["neg", "pos"], config=FAST)
    m = adapter.metrics
    assert {"accuracy", "macro_f1", "per_label", "confusion", "loss_curve", "n_train", "n_eval", "params"} <= set(m)
    assert set(m["per_label"]) == {"neg", "pos"} and sum(map(sum, m["confusion"])) == m["n_eval"]
    # two layers of R and W (rank × 32) and b (rank), at the rank of the objective that trained it
    rank = TrainConfig().pairs_rank if m["objective"] == "pairs" else TrainConfig().rank
    assert m["params"]["intervention"] == 2 * (2 * rank * 32 + rank) and m["params"]["head"] == 2 * 32 + 2


def test_multi_label_tunes_a_threshold_per_label_and_uses_it(tokenizer):
    base = make_base("bert", tokenizer)
    labels = [["pos", "fun"] if i % 3 == 0 else ["pos"] for i in range(10)] + [["neg"]] * 10
    adapter = train(base, TEXTS, labels, ["neg", "pos", "fun"], multi_label=True, config=FAST)
    assert len(adapter.thresholds) == 3 and "micro_f1" in adapter.metrics
    adapter.with_config(thresholds=(0.0, 1.01, 0.0))
    (pred,) = Tagger(base).predict(adapter, ["great fun"])
    assert pred.labels == ["neg", "fun"] and len(pred.scores) == 3


def test_minilm_adapter_learns_sentiment(minilm):
    adapter = train(minilm, TEXTS * 3, LABELS * 3, ["neg", "pos"], config={"epochs": 4, "batch_size": 8})
    preds = Tagger(minilm).predict(adapter, ["an absolutely wonderful film", "a boring , awful mess"])
    assert [p.labels for p in preds] == [["pos"], ["neg"]]


@pytest.mark.parametrize("overrides, field", [
    ({"rnak": 4}, "rnak"), ({"rank": 0}, "rank"), ({"positions": "first1"}, "positions"),
    ({"intervention": "lora"}, "intervention"), ({"layers": [1, 1]}, "layers"), ({"lr": -1}, "lr"),
])
def test_bad_config_is_rejected_naming_the_option(overrides, field):
    with pytest.raises(ReftConfigError) as err:
        TrainConfig.from_dict(overrides)
    assert err.value.field == field and field in str(err.value)


def test_layer_beyond_the_model_is_rejected(tokenizer):
    base = make_base("bert", tokenizer)
    with pytest.raises(ReftConfigError, match="layers"):
        train(base, TEXTS, LABELS, ["neg", "pos"], config={"layers": [9]})


def test_unknown_training_label_is_named(tokenizer):
    base = make_base("bert", tokenizer)
    with pytest.raises(ValueError, match="meh"):
        train(base, TEXTS, LABELS[:-1] + ["meh"], ["neg", "pos"], config=FAST)


def test_cached_and_uncached_training_reach_the_same_adapter(tokenizer):
    base = make_base("bert", tokenizer)
    config = {**FAST, "epochs": 2, "dropout": 0.0}
    cached = train(base, TEXTS, LABELS, ["neg", "pos"], config=config).state_dict()
    uncached = train(base, TEXTS, LABELS, ["neg", "pos"], config=config, cache_prefix=False).state_dict()
    for key in cached:
        torch.testing.assert_close(cached[key], uncached[key], atol=1e-4, rtol=1e-4)


def test_auto_layers_are_the_upper_half_but_the_top_block():
    # The top block's output, edited at every position and pooled, is a linear probe again.
    assert TrainConfig().resolve_layers(6) == [3, 4]
    assert TrainConfig().resolve_layers(12) == [6, 7, 8, 9, 10]
    assert TrainConfig().resolve_layers(2) == [1] and TrainConfig().resolve_layers(1) == [0]


def test_batches_with_and_without_length_buckets_cover_every_row_once():
    lengths = [random.Random(i).randint(3, 60) for i in range(100)]
    rows = list(range(3, 100))
    bucketed = length_batches(lengths, rows, 8, random.Random(0))
    shuffled = shuffled_batches(rows, 8, random.Random(0))
    for batches in (bucketed, shuffled):
        assert sorted(i for b in batches for i in b) == rows and max(map(len, batches)) == 8
    # Buckets pad far less than shuffled batches padded to their longest (the way pyreft trains).
    pads = lambda batches: sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)  # noqa: E731
    assert pads(bucketed) * 4 < pads(shuffled)


def test_training_with_no_held_out_rows_and_a_loss_above_one_ends_with_an_adapter(minilm):
    # One text per label: nothing can be held out, so epochs are scored by minus the training
    # loss — about -1.1 for three labels at lr 1e-6, which a start at -1.0 never beat.
    adapter = train(minilm, ["great film", "awful film", "a film"], ["pos", "neg", "meh"], ["pos", "neg", "meh"],
                    config={"lr": 1e-6, "epochs": 2})
    assert adapter.metrics["n_eval"] == 0 and adapter.metrics["loss_curve"][0] > 1.0
    assert len(Tagger(minilm).predict(adapter, ["fine"])) == 1


def test_a_small_set_is_scored_out_of_fold_then_refit_on_every_example(tokenizer):
    base = make_base("bert", tokenizer)
    adapter = train(base, TEXTS, LABELS, ["neg", "pos"], config=FAST)  # 20 examples: below kfold_below
    m = adapter.metrics
    assert (m["evaluation"], m["folds"], m["n_eval"], m["n_train"]) == ("k-fold", 5, 20, 20)
    assert len(m["fold_scores"]) == 5 and sum(map(sum, m["confusion"])) == 20  # each example scored once
    assert 0 < m["steps_chosen"] and m["steps_run"] == m["steps_chosen"]  # the refit stops where the folds were best


def test_the_refit_schedule_ends_at_the_step_the_folds_chose(tokenizer, monkeypatch):
    # Stopping the folds' 100-step schedule at the chosen step kept a model from near-peak
    # learning rate (issue 12: 0.739 against 0.833 on AG News, K = 16). Whatever step the folds
    # choose — 20 here, of 100 — the refit warms up and decays to zero there.
    from reft_core import training

    chosen = 20
    real = training.cross_validate
    monkeypatch.setattr(training, "cross_validate",
                        lambda *a, **kw: dataclasses.replace(real(*a, **kw), steps=chosen))
    rates: list[float] = []

    class Recorded(torch.optim.AdamW):
        def step(self, closure=None):
            rates.append(self.param_groups[0]["lr"])
            return super().step(closure)

    monkeypatch.setattr(training.torch.optim, "AdamW", Recorded)
    config = {**FAST, "min_steps": 100, "objective": "labels"}  # (pairs: one check a fold, at the end)
    adapter = train(make_base("bert", tokenizer), TEXTS, LABELS, ["neg", "pos"], config=config)
    assert adapter.metrics["steps_chosen"] == adapter.metrics["steps_run"] == chosen
    refit, lr = rates[-chosen:], TrainConfig.from_dict(config).lr
    assert len(rates) == 5 * 100 + chosen  # five folds of the whole schedule, then the refit
    assert refit[0] < refit[1] == refit[2] == pytest.approx(lr)  # warm-up: two steps of twenty
    assert all(a > b for a, b in zip(refit[2:], refit[3:])) and refit[-1] == pytest.approx(lr / (chosen - 2))


def test_a_soup_is_the_mean_of_the_refit_and_the_fold_models_weights(tokenizer, monkeypatch):
    from reft_core import training

    base = make_base("bert", tokenizer)
    kept: list[training.CrossValidation] = []
    real = training.cross_validate
    monkeypatch.setattr(training, "cross_validate", lambda *a, **kw: kept.append(real(*a, **kw)) or kept[-1])
    refit = train(base, TEXTS, LABELS, ["neg", "pos"], config=FAST)
    soup = train(base, TEXTS, LABELS, ["neg", "pos"], config={**FAST, "soup": "folds"})
    assert soup.metrics["soup"] == 6 and "soup" not in refit.metrics
    assert soup.metrics["steps_chosen"] == refit.metrics["steps_chosen"]
    members = [refit.state_dict()] + [a.state_dict() for a in kept[-1].adapters]
    assert len(members) == 6
    for name, weight in soup.state_dict().items():
        assert torch.allclose(weight, torch.stack([m[name] for m in members]).mean(0), atol=1e-6), name
    assert any(not torch.equal(weight, members[0][name]) for name, weight in soup.state_dict().items())
    for intervention in soup.interventions.values():  # the average is again a LoReFT: R's rows orthonormal
        R = intervention.rotation.weight
        assert torch.allclose(R @ R.T, torch.eye(R.shape[0]), atol=1e-5)


def test_by_default_a_multi_label_set_keeps_the_soup_of_its_folds_and_a_single_label_set_its_refit(tokenizer):
    # soup "auto": under k-fold a multi-label adapter is the average of the refit's and the fold
    # models' weights (GoEmotions: every fresh seed but one up, bench/RESULTS.md), a single-label
    # one is the refit; adapters saved before the option keep the refit.
    base = make_base("bert", tokenizer)
    as_lists = [[label] for label in LABELS]
    auto = train(base, TEXTS, as_lists, ["neg", "pos"], multi_label=True, config=FAST)
    folds = train(base, TEXTS, as_lists, ["neg", "pos"], multi_label=True, config={**FAST, "soup": "folds"})
    refit = train(base, TEXTS, as_lists, ["neg", "pos"], multi_label=True, config={**FAST, "soup": "none"})
    assert (auto.metrics["evaluation"], auto.metrics["soup"]) == ("k-fold", 6) and "soup" not in refit.metrics
    assert all(torch.equal(weight, folds.state_dict()[name]) for name, weight in auto.state_dict().items())
    assert any(not torch.equal(weight, refit.state_dict()[name]) for name, weight in auto.state_dict().items())
    single = train(base, TEXTS, LABELS, ["neg", "pos"], config=FAST)
    assert single.metrics["evaluation"] == "k-fold" and "soup" not in single.metrics
    assert TrainConfig.from_dict(BEFORE_OPTION).soup == "none"


def test_ema_keeps_the_moving_average_of_every_steps_weights(tokenizer, monkeypatch):
    # `ema`: the adapter is the exponential moving average of the weights after each step, its first
    # steps averaged over fewer (d = min(decay, (1 + t) / (10 + t))) — computed here from the weights
    # the optimizer left after each step
    from reft_core import training

    seen: list[list[torch.Tensor]] = []

    class Recorded(torch.optim.AdamW):
        def __init__(self, params, **kw):
            params = list(params)
            super().__init__(params, **kw)
            seen.append([p.detach().clone() for p in params])

        def step(self, closure=None):
            out = super().step(closure)
            seen.append([p.detach().clone() for group in self.param_groups for p in group["params"]])
            return out

    monkeypatch.setattr(training.torch.optim, "AdamW", Recorded)
    base = make_base("bert", tokenizer)
    marks = [i % 5 == 0 for i in range(len(TEXTS))]
    config = {**FAST, "kfold_below": 10, "min_steps": 30, "ema": 0.9}  # 4 evaluation rows: the whole schedule
    adapter = train(base, TEXTS, LABELS, ["neg", "pos"], config=config, eval_mask=marks)
    assert adapter.metrics["steps_run"] == len(seen) - 1 == 30
    average = seen[0]
    for t, weights in enumerate(seen[1:], start=1):
        d = min(0.9, (1 + t) / (10 + t))
        average = [a + (1 - d) * (w - a) for a, w in zip(average, weights)]
    for kept, expected in zip(adapter.parameters(), average):
        assert torch.allclose(kept, expected, atol=1e-6)
    assert any(not torch.allclose(kept, last) for kept, last in zip(adapter.parameters(), seen[-1]))
    assert adapter.config.train_config.ema == 0.9


def test_a_multi_label_set_is_scored_out_of_fold_up_to_more_examples_than_a_single_label_one(tokenizer):
    # Each label's calibration and threshold is fitted on the evaluated rows: a held-out 15 % of a
    # few hundred multi-label examples holds one to five positives of a label (GoEmotions: k-fold
    # +7, +9 and +2 points micro-F1 at 204, 406 and 800 examples, −3.6 at 1,600), so multi-label
    # sets keep k-fold to 1,000.
    from reft_core.training import evaluation_plan

    default = TrainConfig()
    assert evaluation_plan(default, torch.zeros(300, dtype=torch.long), multi_label=False) == ("held_out", 0)
    assert evaluation_plan(default, torch.zeros(300, 28), multi_label=True) == ("k-fold", 5)
    assert evaluation_plan(default, torch.zeros(800, 28), multi_label=True) == ("k-fold", 5)
    assert evaluation_plan(default, torch.zeros(1000, 28), multi_label=True) == ("held_out", 0)
    before = TrainConfig.from_dict(BEFORE_OPTION)  # an adapter trained before the option followed kfold_below
    assert evaluation_plan(before, torch.zeros(300, 28), multi_label=True) == ("held_out", 0)
    # through train(): the same 20 examples, one label each or as lists
    base = make_base("bert", tokenizer)
    config = {**FAST, "kfold_below": 10, "kfold_below_multi_label": 30}
    single = train(base, TEXTS, LABELS, ["neg", "pos"], config=config)
    multi = train(base, TEXTS, [[label] for label in LABELS], ["neg", "pos"], multi_label=True, config=config)
    assert (single.metrics["evaluation"], multi.metrics["evaluation"]) == ("held_out", "k-fold")
    assert multi.metrics["n_eval"] == 20  # every example scored out of fold, and calibrated on


def test_a_large_set_holds_out_the_rows_it_is_given_and_never_trains_on_them(tokenizer):
    base = make_base("bert", tokenizer)
    marks = [i % 5 == 0 for i in range(len(TEXTS))]
    config = {**FAST, "kfold_below": 10}
    adapter = train(base, TEXTS, LABELS, ["neg", "pos"], config=config, eval_mask=marks)
    m = adapter.metrics
    assert (m["evaluation"], m["split"], m["n_eval"], m["n_train"]) == ("held_out", "given", 4, 16)
    # Training never sees the evaluation rows' labels: flip them, and every step's loss is the same
    # (they only choose which checkpoint is kept).
    flipped = [("pos" if label == "neg" else "neg") if mark else label for label, mark in zip(LABELS, marks)]
    other = train(base, TEXTS, flipped, ["neg", "pos"], config={**config, "patience": 100}, eval_mask=marks)
    again = train(base, TEXTS, LABELS, ["neg", "pos"], config={**config, "patience": 100}, eval_mask=marks)
    assert other.metrics["loss_curve"] == again.metrics["loss_curve"] and other.metrics["steps_run"] > 0


def test_a_few_evaluation_rows_do_not_stop_training_early_enough_rows_do(tokenizer):
    # 4 evaluation rows: a check's score is mostly chance, so even `patience` 1 (stop at the first
    # check without gain) trains the whole 40-step budget and keeps the last weights
    base = make_base("bert", tokenizer)
    marks = [i % 5 == 0 for i in range(len(TEXTS))]
    config = {**FAST, "kfold_below": 10, "min_steps": 40, "patience": 1}
    whole = train(base, TEXTS, LABELS, ["neg", "pos"], config=config, eval_mask=marks)
    assert whole.metrics["n_eval"] == 4 < TrainConfig().early_stop_min_eval
    assert whole.metrics["steps_run"] == 40
    # where that many rows are enough, the same run stops at its first check without gain
    stopped = train(base, TEXTS, LABELS, ["neg", "pos"], config={**config, "early_stop_min_eval": 4}, eval_mask=marks)
    assert stopped.metrics["steps_run"] < 40


def test_a_few_examples_still_get_min_steps_of_training(tokenizer):
    base = make_base("bert", tokenizer)
    adapter = train(base, TEXTS[:4], LABELS[:4], ["neg", "pos"],
                    config={"epochs": 1, "batch_size": 32, "min_steps": 25, "evaluation": "held_out"})
    assert adapter.metrics["steps_run"] >= 1 and len(adapter.metrics["loss_curve"]) >= 1
    folds = train(base, TEXTS, LABELS, ["neg", "pos"], config={"epochs": 1, "batch_size": 32, "min_steps": 25})
    assert folds.metrics["steps_chosen"] <= 25 and folds.metrics["steps_run"] == folds.metrics["steps_chosen"]


def test_two_recipes_are_cross_validated_on_the_same_folds(tokenizer):
    from reft_core import recipe_cross_validation

    base = make_base("bert", tokenizer)
    a = recipe_cross_validation(base, TEXTS, LABELS, ["neg", "pos"], False, {**FAST, "seed": 1})
    b = recipe_cross_validation(base, TEXTS, LABELS, ["neg", "pos"], False, {**FAST, "seed": 2})
    assert a.folds == b.folds == 5 and len(a.fold_scores) == 5
    assert a.probs.shape == b.probs.shape == (20, 2)


def test_the_contrastive_loss_pulls_same_labels_together():
    from reft_core.training import supervised_contrastive

    together = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    apart = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert supervised_contrastive(together, labels) < supervised_contrastive(apart, labels)
    assert supervised_contrastive(together, torch.tensor([0, 1, 2, 3])) == 0  # nobody has a partner


def test_multi_label_examples_that_all_carry_a_label_give_answers_that_all_do(tokenizer):
    base = make_base("bert", tokenizer)
    labels = [["pos", "fun"] if i % 3 == 0 else ["pos"] for i in range(10)] + [["neg"]] * 10
    adapter = train(base, TEXTS, labels, ["neg", "pos", "fun"], multi_label=True, config=FAST)
    assert adapter.min_labels == 1
    adapter.with_config(thresholds=(1.01, 1.01, 1.01))  # no label reaches its threshold: the top one is given
    for pred in Tagger(base).predict(adapter, ["great fun", "boring", "ok"]):
        assert pred.labels == [max(pred.scores, key=pred.scores.get)]

    labels[-1] = []  # an example with no label: "no label" is an answer
    adapter = train(base, TEXTS, labels, ["neg", "pos", "fun"], multi_label=True, config=FAST)
    assert adapter.min_labels == 0
    adapter.with_config(thresholds=(1.01, 1.01, 1.01))
    assert all(pred.labels == [] for pred in Tagger(base).predict(adapter, ["great fun", "boring"]))


def test_balanced_label_weights_weigh_each_labels_positives_by_its_negatives():
    targets = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=torch.float32)
    weights = label_weights(targets, TrainConfig())
    assert weights.tolist() == pytest.approx([1 / 3, 3.0, 1.0])  # 3 on 1 off; 1 on 3 off; never on: 1
    assert label_weights(targets, TrainConfig(label_weights="none")) is None


def test_many_labels_with_a_few_examples_each_are_learnt_not_drowned_by_their_negatives(minilm):
    # GoEmotions' first 200 training comments (tests/fixtures/goemotions_sample): 28 labels, 26
    # of them seen 1-21 times, "neutral" 76 times. Unweighted, each label's negatives outweigh
    # its positives and the model learns the base rates: its raw scores put "neutral" on top of
    # 85 of the 100 test comments (97 when early stopping on the 30 evaluation rows still cut the
    # run at step 30). Balanced, they put 17 different labels on top, none on more than 36
    # (measured, MiniLM, seed 0); calibration then weighs each label by how often it is right.
    # Held out, as measured: 200 multi-label examples are now scored by k-fold by default
    # (kfold_below_multi_label), whose refit ends at the folds' chosen step — unweighted, that
    # put "neutral" on top of 47 of the 100, a softer collapse that is not what this test is about.
    import json
    from collections import Counter
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "fixtures" / "goemotions_sample"
    names = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    train_rows, test_rows = ([json.loads(line) for line in (folder / f"{split}.jsonl").read_text("utf-8").splitlines()]
                             for split in ("train", "test"))
    texts = [r["text"] for r in test_rows]

    def raw_top_labels(weights: str) -> Counter:
        adapter = train(minilm, [r["text"] for r in train_rows], [r["labels"] for r in train_rows], names,
                        multi_label=True, config={"label_weights": weights, "evaluation": "held_out"})
        assert all(p.labels for p in Tagger(minilm).predict(adapter, texts))  # every example had a label
        adapter.with_config(calibration={})  # what the loss taught, before calibration
        return Counter(max(p.scores, key=p.scores.get) for p in Tagger(minilm).predict(adapter, texts))

    unweighted, balanced = raw_top_labels("none"), raw_top_labels("balanced")
    assert max(unweighted.values()) >= 80  # the base rates: one label on top of most comments
    assert len(balanced) >= 8 and max(balanced.values()) <= 60
