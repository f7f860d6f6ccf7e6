"""Attaching interventions to every supported family of tiny random models."""
from dataclasses import replace

import torch

from reft_core import Adapter, Tagger
from reft_core.attach import Edits, encode_prefix, run_from, run_full
from reft_core.heads import default_pooling

from .conftest import TEXTS, randomize


def _adapter(base, layers, positions="f1+l1", kind="loreft", labels=("neg", "pos", "meh"), seed=7):
    adapter = Adapter.new(base, intervention=kind, layers=layers, positions=positions, rank=4, dropout=0.0,
                          label_names=list(labels), multi_label=False, pooling=default_pooling(base.family))
    return randomize(adapter, seed).eval()


def _batch(base, side="right"):
    return base.pad(base.tokenize(TEXTS, 64), side=side)


@torch.no_grad()
def test_identity_adapter_leaves_the_whole_output_unchanged(tiny_base):
    input_ids, mask = _batch(tiny_base)
    plain = run_full(tiny_base, input_ids, mask)
    fresh = Adapter.new(tiny_base, intervention="loreft", layers=[0, 2, 3], positions="f2+l2", rank=4,
                        dropout=0.0, label_names=["a", "b"], multi_label=False, pooling="mean").eval()
    assert torch.equal(run_full(tiny_base, input_ids, mask, Edits([(fresh, None)], mask)), plain)


@torch.no_grad()
def test_untouched_positions_are_bit_identical_to_the_base_model(tiny_base):
    input_ids, mask = _batch(tiny_base)
    layer = 1
    seen = {}
    tiny_base.blocks[layer + 1].register_forward_pre_hook(lambda m, args: seen.__setitem__(len(seen), args[0].clone()))
    run_full(tiny_base, input_ids, mask)
    adapter = _adapter(tiny_base, [layer], positions="f1+l2")
    edits = Edits([(adapter, None)], mask)
    run_full(tiny_base, input_ids, mask, edits)
    before, after = seen[0], seen[1]
    touched = torch.zeros_like(mask, dtype=torch.bool)
    rows, cols = edits.by_layer[layer][0][1:]
    touched[rows, cols] = True
    assert torch.equal(before[~touched], after[~touched])
    assert not torch.allclose(before[touched], after[touched])


@torch.no_grad()
def test_continuing_from_the_cached_prefix_equals_a_full_pass(tiny_base):
    input_ids, mask = _batch(tiny_base)
    adapter = _adapter(tiny_base, [1, 3])
    edits = Edits([(adapter, None)], mask)
    full = run_full(tiny_base, input_ids, mask, edits)
    prefix = encode_prefix(tiny_base, input_ids, mask, upto=1)
    continued = run_from(tiny_base, prefix, 1, input_ids, mask, edits)
    real = mask.bool()
    torch.testing.assert_close(continued[real], full[real], atol=1e-5, rtol=1e-5)
    # The swapped-in blocks are put back.
    assert all(type(b).__name__ != "_HandOn" for b in tiny_base.blocks)


@torch.no_grad()
def test_decoder_gives_the_same_states_under_left_and_right_padding(tiny_decoder):
    adapter = _adapter(tiny_decoder, [1, 2], positions="f1+l1")
    states = {}
    for side in ("left", "right"):
        input_ids, mask = _batch(tiny_decoder, side)
        last = run_full(tiny_decoder, input_ids, mask, Edits([(adapter, None)], mask))
        states[side] = [last[i][mask[i].bool()] for i in range(len(TEXTS))]
    for left, right in zip(states["left"], states["right"]):
        torch.testing.assert_close(left, right, atol=1e-5, rtol=1e-5)


def test_other_hooks_on_the_model_survive(tiny_base):
    calls = []
    tiny_base.blocks[2].register_forward_hook(lambda *a: calls.append("block"))
    tiny_base.model.register_forward_pre_hook(lambda *a: calls.append("model"))
    adapter = _adapter(tiny_base, [2, 3])
    Tagger(tiny_base).predict(adapter, TEXTS)
    Tagger(tiny_base).predict(adapter, TEXTS)
    assert calls.count("block") >= 2 and calls.count("model") >= 2
    assert len(tiny_base.blocks[2]._forward_hooks) == 1  # ours were removed, theirs kept


def test_mixed_adapter_batch_equals_each_adapter_alone(tiny_base):
    adapters = [
        _adapter(tiny_base, [1, 3], "f1+l1", "loreft", seed=1),
        _adapter(tiny_base, [2], "f2+l2", "direft", labels=("x", "y"), seed=2),
        _adapter(tiny_base, [0, 3], "f1+l1", "red", seed=3),
        _adapter(tiny_base, [1, 2], "all", "loreft", seed=4),
    ]
    tagger = Tagger(tiny_base, batch_size=5)
    pairs = [(adapters[i % 4], TEXTS[(i * 5) % len(TEXTS)]) for i in range(40)]
    mixed = tagger.predict_mixed(pairs)
    for adapter in adapters:
        mine = [(i, t) for i, (a, t) in enumerate(pairs) if a is adapter]
        alone = tagger.predict(adapter, [t for _, t in mine])
        for (i, _), single in zip(mine, alone):
            assert mixed[i].labels == single.labels
            for name, score in single.scores.items():
                assert abs(mixed[i].scores[name] - score) < 1e-5


def test_mixed_adapters_on_minilm_match_alone(minilm):
    adapters = [_adapter(minilm, layers, seed=s) for s, layers in enumerate([[3, 4, 5], [1, 5], [4]])]
    tagger = Tagger(minilm, batch_size=8)
    pairs = [(a, t) for t in TEXTS for a in adapters]
    mixed = tagger.predict_mixed(pairs)
    for adapter in adapters:
        alone = tagger.predict(adapter, TEXTS)
        got = [p for p, (a, _) in zip(mixed, pairs) if a is adapter]
        for m, s in zip(got, alone):
            assert max(abs(m.scores[k] - v) for k, v in s.scores.items()) < 1e-5


def test_tagging_cuts_texts_at_the_length_the_adapter_was_trained_with(tiny_base):
    short = _adapter(tiny_base, [1, 3])
    short.with_config(train_config=replace(short.config.train_config, max_length=6))
    long = Adapter.from_bytes(*short.to_bytes(), tiny_base)
    long.with_config(train_config=replace(long.config.train_config, max_length=64))
    text = TEXTS[2]  # more than 6 tokens
    tagger = Tagger(tiny_base)
    mixed = tagger.predict_mixed([(short, text), (long, text)])
    alone = tagger.predict(short, [text])[0].scores
    assert max(abs(mixed[0].scores[k] - v) for k, v in alone.items()) < 1e-5
    assert max(abs(mixed[0].scores[k] - v) for k, v in mixed[1].scores.items()) > 1e-4
