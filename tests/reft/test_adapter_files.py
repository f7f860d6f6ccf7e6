"""Adapter files: safetensors + a JSON config that is enough to load them."""
import json

import pytest
import torch
from safetensors.torch import load as load_safetensors

from reft_core import Adapter, AdapterMismatchError, Tagger

from .conftest import TEXTS, make_base, randomize


def _adapter(base):
    return randomize(Adapter.new(base, intervention="loreft", layers=[1, 3], positions="f2+l1", rank=4, dropout=0.1,
                                 label_names=["不好", "好", "一般"], multi_label=False, pooling="mean")).eval()


def test_bytes_round_trip_predicts_identically(tokenizer):
    base = make_base("bert", tokenizer)
    adapter = _adapter(base)
    weights, config_json = adapter.to_bytes()
    loaded = Adapter.from_bytes(weights, config_json, base)
    tagger = Tagger(base)
    for a, b in zip(tagger.predict(adapter, TEXTS), tagger.predict(loaded, TEXTS)):
        assert a.scores == b.scores


def test_config_carries_everything_needed_to_load(tokenizer, tmp_path):
    base = make_base("llama", tokenizer)
    _adapter(base).save(tmp_path)
    config = json.loads((tmp_path / "adapter.json").read_text(encoding="utf-8"))
    for key in ("intervention", "layers", "positions", "rank", "label_names", "pooling", "thresholds", "metrics",
                "library", "format_version"):
        assert key in config
    assert config["label_names"] == ["不好", "好", "一般"]
    assert config["base_model"]["name"] == "tiny-llama" and len(config["base_model"]["fingerprint"]) == 64
    tensors = load_safetensors((tmp_path / "adapter.safetensors").read_bytes())
    assert all(t.dtype == torch.float32 for t in tensors.values())
    Adapter.load(tmp_path, base)


def test_loading_onto_another_base_model_names_both(tokenizer):
    adapter = _adapter(make_base("bert", tokenizer))
    other = make_base("roberta", tokenizer)
    with pytest.raises(AdapterMismatchError) as err:
        Adapter.from_bytes(*adapter.to_bytes(), other)
    assert "tiny-bert" in str(err.value) and "tiny-roberta" in str(err.value)


def test_size_and_parameter_count_are_reported(tokenizer):
    adapter = _adapter(make_base("bert", tokenizer))
    assert adapter.param_count == {"intervention": 2 * (2 * 4 * 32 + 4), "head": 3 * 32 + 3,
                                   "total": 2 * (2 * 4 * 32 + 4) + 3 * 32 + 3}
    assert 0 < adapter.size_bytes() < 20_000


def test_an_adapter_saved_before_an_option_existed_loads_as_it_was_trained(tokenizer):
    # label_weights came with the few-shot multi-label fix: an older adapter was trained without
    # them (its recipe, retrained for a promotion, must be the same), and it never forced a label.
    base = make_base("bert", tokenizer)
    weights, config_json = _adapter(base).to_bytes()
    raw = json.loads(config_json)
    assert raw["train_config"]["label_weights"] == "balanced" and raw["min_labels"] == 0
    del raw["train_config"]["label_weights"], raw["min_labels"]
    old = Adapter.from_bytes(weights, json.dumps(raw), base)
    assert old.config.train_config.label_weights == "none" and old.min_labels == 0
