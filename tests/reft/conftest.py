"""Tiny random models of each family, built from configs (no downloads), sharing the
bundled MiniLM's tokenizer so that real text goes through them."""
from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoModel,
    AutoTokenizer,
    BertConfig,
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
    RobertaConfig,
    XLMRobertaConfig,
)

from reft_core import Base
from reft_core.base import bundled_model_path

VOCAB = 30522
_ENCODER = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                intermediate_size=64, max_position_embeddings=128, pad_token_id=0)
_DECODER = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                num_key_value_heads=2, intermediate_size=64, max_position_embeddings=128, pad_token_id=0)
CONFIGS = {
    "bert": lambda: BertConfig(**_ENCODER),
    "roberta": lambda: RobertaConfig(**_ENCODER),
    "xlm-roberta": lambda: XLMRobertaConfig(**_ENCODER),
    "llama": lambda: LlamaConfig(**_DECODER),
    "qwen2": lambda: Qwen2Config(**_DECODER),
    "mistral": lambda: MistralConfig(**_DECODER, sliding_window=None),
}
FAMILIES = list(CONFIGS)
DECODERS = ["llama", "qwen2", "mistral"]

TEXTS = ["a gripping, funny film", "dull", "the plot never comes together and the cast looks bored throughout",
         "great", "an uneven but often moving portrait of a family", "ok", "not good at all , sadly"]


@pytest.fixture(scope="session")
def tokenizer():
    return AutoTokenizer.from_pretrained(bundled_model_path(), local_files_only=True)


def make_base(family: str, tokenizer) -> Base:
    torch.manual_seed(1234)
    config = CONFIGS[family]()
    config._attn_implementation = "eager"
    model = AutoModel.from_config(config)
    return Base.from_model(model, tokenizer, f"tiny-{family}", device="cpu")


@pytest.fixture(params=FAMILIES)
def tiny_base(request, tokenizer) -> Base:
    return make_base(request.param, tokenizer)


@pytest.fixture(params=DECODERS)
def tiny_decoder(request, tokenizer) -> Base:
    return make_base(request.param, tokenizer)


@pytest.fixture(scope="session")
def minilm():
    from reft_core import load_base

    return load_base(device="cpu")


def randomize(adapter, seed: int = 7):
    """Move an adapter away from its identity start so that its edits are visible."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _name, p in adapter.named_parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.5)
    return adapter
