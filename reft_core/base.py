"""The frozen base model: loading, locating its blocks, fingerprinting its weights."""
from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .bases import BUNDLED, DEFAULT, MINILM

BUNDLED_NAME = MINILM
# Bidirectional encoders: pooled by mean (or CLS). Every other family is treated as a
# causal decoder: pooled at the last real token, positions passed explicitly.
ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "deberta", "deberta-v2",
                 "camembert", "mpnet", "albert", "modernbert"}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def find_blocks(model: PreTrainedModel) -> nn.ModuleList:
    """The model's stack of transformer blocks: the longest ModuleList whose length is the
    configured layer count (encoder.layer for BERT-likes, layers for Llama-likes, h for GPT-2)."""
    num_layers = model.config.num_hidden_layers
    candidates = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == num_layers]
    if not candidates:
        raise ValueError(f"cannot find the {num_layers} transformer blocks of {type(model).__name__}")
    return candidates[0]


def fingerprint(model: PreTrainedModel) -> str:
    """SHA-256 over the architecture and every weight tensor's name, shape, sum and first values."""
    digest = hashlib.sha256()
    config = model.config
    digest.update(json.dumps([config.model_type, config.hidden_size, config.num_hidden_layers,
                              getattr(config, "vocab_size", None)]).encode())
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            flat = tensor.detach().reshape(-1).float()
            digest.update(name.encode())
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(f"{flat.double().sum().item():.6e}".encode())
            digest.update(flat[:16].cpu().numpy().tobytes())
    return digest.hexdigest()


@dataclass
class Base:
    """A frozen transformer and its tokenizer, shared by every adapter in a process."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    device: torch.device
    fingerprint: str = ""
    family: str = "encoder"  # encoder | decoder
    text_prefix: str = ""  # before every text it tokenizes (e5: "query: "); bundled bases set it
    blocks: nn.ModuleList = field(init=False)
    # Running with edits swaps blocks and adds hooks on the shared model for one call, so
    # calls on one Base from several threads take turns.
    lock: threading.RLock = field(init=False, default_factory=threading.RLock)
    # Whether a block returns (hidden, ...) rather than hidden; seen on the first forward.
    block_returns_tuple: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.model.eval().requires_grad_(False)
        self.blocks = find_blocks(self.model)
        self.family = "encoder" if self.model.config.model_type in ENCODER_TYPES else "decoder"
        if not self.fingerprint:
            self.fingerprint = fingerprint(self.model)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token

    @classmethod
    def from_model(cls, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str,
                   device: str | torch.device = "auto") -> Base:
        device = resolve_device(device)
        nn.Module.to(model, device)  # in place (transformers' own `to` is typed for dtypes only)
        return cls(model=model, tokenizer=tokenizer, name=name, device=device)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def autocast(self) -> torch.autocast:
        """bf16 autocast on CUDA (weights, R and optimizer state stay fp32); a no-op on CPU."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def tokenize(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        """Token ids of each text, `text_prefix` first (what the model was trained to see)."""
        prefixed = [self.text_prefix + text for text in texts]
        ids: list[list[int]] = self.tokenizer(prefixed, truncation=True, max_length=max_length,
                                              add_special_tokens=True)["input_ids"]
        return ids

    def pad(self, ids: list[list[int]], side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
        """Token id lists → (input_ids, attention_mask) on the device, padded to the longest."""
        width = max(len(row) for row in ids)
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):
            cells = slice(width - len(row), width) if side == "left" else slice(0, len(row))
            input_ids[i, cells] = torch.tensor(row, dtype=torch.long)
            mask[i, cells] = 1
        return input_ids.to(self.device), mask.to(self.device)


def bundled_model_path() -> Path:
    """The bundled MiniLM's folder."""
    return BUNDLED[MINILM].locate()


def load_base(path: str | Path | None = None, device: str | torch.device = "auto") -> Base:
    """Load a bundled base by name (`BUNDLED`; None: all-MiniLM-L6-v2) or a local HF model directory.
    Never downloads: a name that is neither fails."""
    prefix = ""
    if path is None or (isinstance(path, str) and path in BUNDLED):
        name = DEFAULT if path is None else path
        path, prefix = BUNDLED[name].locate(), BUNDLED[name].text_prefix
    else:
        path = Path(path)
        name = path.name
        if not path.is_dir():
            raise FileNotFoundError(f"base model {path} is neither a bundled base ({', '.join(BUNDLED)}) nor a "
                                    "local directory (reftag never downloads weights)")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    base = Base.from_model(model, tokenizer, name, device)
    base.text_prefix = prefix
    return base
