"""An adapter: interventions at some layers + a head, with everything needed to load it.

On disk (or in a database row) it is two things: safetensors bytes of the weights, and a JSON
config naming the intervention, layers, positions, rank, labels, head, thresholds, metrics and
the base model (name + fingerprint) it was trained on.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from . import __version__
from .base import Base
from .config import parse_positions
from .heads import scores_from_logits
from .interventions import make_intervention

FORMAT_VERSION = 1
WEIGHTS_FILE, CONFIG_FILE = "adapter.safetensors", "adapter.json"
DEFAULT_MAX_LENGTH = 128


class AdapterMismatchError(ValueError):
    """The adapter was trained on another base model than the one it is loaded onto."""


@dataclass
class Prediction:
    labels: list[str]
    scores: dict[str, float]
    needs_review: bool


class Adapter(nn.Module):
    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.config = config
        dim = config["base_model"]["hidden_size"]
        self.layers: list[int] = list(config["layers"])
        self.positions = parse_positions(config["positions"])
        self.label_names: list[str] = list(config["label_names"])
        self.multi_label: bool = bool(config["multi_label"])
        self.pooling: str = config["pooling"]
        self.interventions = nn.ModuleDict({
            str(layer): make_intervention(config["intervention"], dim, config["rank"], config.get("dropout", 0.0))
            for layer in self.layers
        })
        self.head = nn.Linear(dim, len(self.label_names))

    @classmethod
    def new(cls, base: Base, *, intervention: str, layers: list[int], positions: str, rank: int, dropout: float,
            label_names: list[str], multi_label: bool, pooling: str) -> Adapter:
        return cls({
            "format_version": FORMAT_VERSION,
            "library": f"reft_core {__version__}",
            "intervention": intervention, "layers": layers, "positions": positions, "rank": rank,
            "dropout": dropout, "label_names": label_names, "multi_label": multi_label, "pooling": pooling,
            "thresholds": [0.5] * len(label_names), "review_margin": 0.1, "metrics": {},
            "train_config": {"max_length": DEFAULT_MAX_LENGTH},
            "base_model": {"name": base.name, "fingerprint": base.fingerprint, "hidden_size": base.hidden_size,
                           "num_layers": base.num_layers, "family": base.family},
        }).to(base.device)

    # -- what an adapter is ------------------------------------------------------------------
    @property
    def metrics(self) -> dict[str, Any]:
        return self.config.get("metrics", {})

    @property
    def max_length(self) -> int:
        """Tokens per text at training time; tagging cuts texts at the same length."""
        return int(self.config.get("train_config", {}).get("max_length", DEFAULT_MAX_LENGTH))

    @property
    def thresholds(self) -> list[float]:
        return self.config["thresholds"]

    @property
    def param_count(self) -> dict[str, int]:
        intervention = sum(p.numel() for p in self.interventions.parameters())
        head = sum(p.numel() for p in self.head.parameters())
        return {"intervention": intervention, "head": head, "total": intervention + head}

    # -- turning scores into labels ------------------------------------------------------------
    def predictions(self, logits: torch.Tensor) -> list[Prediction]:
        probs = scores_from_logits(logits.float(), self.multi_label).cpu()
        margin = self.config.get("review_margin", 0.1)
        out = []
        for row in probs.tolist():
            scores = dict(zip(self.label_names, row))
            if self.multi_label:
                picked = [n for n, p, t in zip(self.label_names, row, self.thresholds) if p >= t]
                unsure = any(abs(p - t) < margin for p, t in zip(row, self.thresholds))
            else:
                top = max(range(len(row)), key=row.__getitem__)
                picked = [self.label_names[top]]
                runner_up = max((p for i, p in enumerate(row) if i != top), default=0.0)
                unsure = row[top] - runner_up < 2 * margin
            out.append(Prediction(picked, scores, unsure))
        return out

    # -- files ----------------------------------------------------------------------------------
    def to_bytes(self) -> tuple[bytes, str]:
        tensors = {k: v.detach().float().cpu().contiguous() for k, v in self.state_dict().items()}
        return save_safetensors(tensors), json.dumps(self.config, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_bytes(cls, weights: bytes, config_json: str, base: Base) -> Adapter:
        config = json.loads(config_json)
        trained_on = config["base_model"]
        if trained_on["fingerprint"] != base.fingerprint:
            raise AdapterMismatchError(
                f"adapter was trained on base model {trained_on['name']!r} "
                f"(fingerprint {trained_on['fingerprint'][:12]}) but is being loaded onto "
                f"{base.name!r} (fingerprint {base.fingerprint[:12]})"
            )
        adapter = cls(config)
        adapter.load_state_dict(load_safetensors(weights))
        return adapter.to(base.device).eval()

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights, config_json = self.to_bytes()
        (directory / WEIGHTS_FILE).write_bytes(weights)
        (directory / CONFIG_FILE).write_text(config_json, encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path, base: Base) -> Adapter:
        directory = Path(directory)
        return cls.from_bytes((directory / WEIGHTS_FILE).read_bytes(),
                              (directory / CONFIG_FILE).read_text(encoding="utf-8"), base)

    def size_bytes(self) -> int:
        weights, config_json = self.to_bytes()
        return len(weights) + len(config_json.encode())
