"""An adapter: interventions at some layers + a head, with everything needed to load it.

On disk (or in a database row) it is two things: safetensors bytes of the weights, and a JSON
config (`AdapterConfig`) naming the intervention, layers, positions, rank, labels, head,
thresholds, metrics and the base model (name + fingerprint) it was trained on.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from . import __version__
from .base import Base
from .calibration import Calibration, decisions, item_confidence
from .config import BEFORE_OPTION, TrainConfig, parse_positions
from .heads import Head, TokenHead
from .interventions import make_intervention
from .spans import bio_tags

FORMAT_VERSION = 1
WEIGHTS_FILE, CONFIG_FILE = "adapter.safetensors", "adapter.json"


class AdapterMismatchError(ValueError):
    """The adapter was trained on another base model than the one it is loaded onto."""


@dataclass
class Prediction:
    labels: list[str]
    scores: dict[str, float]
    needs_review: bool
    confidence: float = 1.0  # the calibrated probability that `labels` are exactly right
    margin: float = 1.0  # how near another answer: top − runner-up score, or the score nearest its threshold


@dataclass(frozen=True)
class BaseModelInfo:
    """The base model an adapter was trained on; loading onto another fingerprint is refused."""

    name: str
    fingerprint: str
    hidden_size: int
    num_layers: int
    family: str

    @classmethod
    def of(cls, base: Base) -> BaseModelInfo:
        return cls(base.name, base.fingerprint, base.hidden_size, base.num_layers, base.family)


@dataclass(frozen=True)
class AdapterConfig:
    """Everything that defines an adapter besides its weights, saved beside them as JSON. Built
    once; a trained adapter gets a new one with its thresholds and metrics (`replace`)."""

    intervention: str
    layers: tuple[int, ...]
    positions: str
    rank: int
    dropout: float
    label_names: tuple[str, ...]
    multi_label: bool
    pooling: str
    base_model: BaseModelInfo
    train_config: TrainConfig = field(default_factory=TrainConfig)
    thresholds: tuple[float, ...] = ()  # multi-label: one per label (tuned on held-out data)
    # multi-label: 1 when every training example carried a label — an answer then always has
    # one (the top-scoring label when none reaches its threshold); 0 allows "no label"
    min_labels: int = 0
    review_margin: float = 0.1
    calibration: dict[str, Any] = field(default_factory=dict)  # calibration.Calibration, as a dict
    metrics: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    library: str = f"reft_core {__version__}"
    # classification: `label_names` are the labels, the head reads the pooled representation;
    # spans: they are entity types, the head tags every token (`tag_names`), pooling is "token".
    kind: str = "classification"

    def __post_init__(self) -> None:
        if not self.thresholds:
            object.__setattr__(self, "thresholds", (0.5,) * len(self.label_names))

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AdapterConfig:
        raw = json.loads(text)
        known = {name: raw[name] for name in cls.__dataclass_fields__ if name in raw}
        known["layers"] = tuple(raw["layers"])
        known["label_names"] = tuple(raw["label_names"])
        known["thresholds"] = tuple(raw.get("thresholds") or ())
        known["base_model"] = BaseModelInfo(**raw["base_model"])
        # Adapters saved before a training option existed load with what it was in effect then
        # (BEFORE_OPTION), else with its default.
        options = TrainConfig.options()
        saved = raw.get("train_config") or {}
        known["train_config"] = TrainConfig(**{**{k: v for k, v in BEFORE_OPTION.items() if k not in saved},
                                               **{k: v for k, v in saved.items() if k in options}})
        return cls(**known)


class Adapter(nn.Module):
    def __init__(self, config: AdapterConfig):
        super().__init__()
        self.config = config
        dim = config.base_model.hidden_size
        self.layers: list[int] = list(config.layers)
        self.positions = parse_positions(config.positions)
        self.interventions = nn.ModuleDict({
            str(layer): make_intervention(config.intervention, dim, config.rank, config.dropout)
            for layer in self.layers
        })
        self.head: Head | TokenHead = TokenHead(dim, len(self.tag_names)) if config.kind == "spans" \
            else Head(dim, len(config.label_names), config.pooling)

    @classmethod
    def new(cls, base: Base, *, intervention: str, layers: list[int], positions: str, rank: int, dropout: float,
            label_names: list[str], multi_label: bool, pooling: str,
            train_config: TrainConfig | None = None, kind: str = "classification") -> Adapter:
        return cls(AdapterConfig(
            intervention=intervention, layers=tuple(layers), positions=positions, rank=rank, dropout=dropout,
            label_names=tuple(label_names), multi_label=multi_label, pooling=pooling,
            base_model=BaseModelInfo.of(base), train_config=train_config or TrainConfig(), kind=kind,
        )).to(base.device)

    # -- what an adapter is ------------------------------------------------------------------
    @property
    def label_names(self) -> list[str]:
        return list(self.config.label_names)

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def tag_names(self) -> list[str]:
        """Spans: the BIO tags the token head scores (O, B-x, I-x per label x)."""
        return bio_tags(self.config.label_names)

    @property
    def multi_label(self) -> bool:
        return self.config.multi_label

    @property
    def metrics(self) -> dict[str, Any]:
        return self.config.metrics

    @property
    def max_length(self) -> int:
        """Tokens per text at training time; tagging cuts texts at the same length."""
        return self.config.train_config.max_length

    @property
    def thresholds(self) -> list[float]:
        return list(self.config.thresholds)

    @property
    def min_labels(self) -> int:
        return self.config.min_labels

    def decisions(self, probs: torch.Tensor) -> torch.Tensor:
        """Multi-label: (N, C) bool, the labels these calibrated scores give (`calibration.decisions`)."""
        return decisions(probs, self.thresholds, self.min_labels)

    @property
    def param_count(self) -> dict[str, int]:
        intervention = sum(p.numel() for p in self.interventions.parameters())
        head = sum(p.numel() for p in self.head.parameters())
        return {"intervention": intervention, "head": head, "total": intervention + head}

    def with_config(self, **changes: Any) -> Adapter:
        """This adapter with a new config (same weights): what training does once it knows the
        thresholds and metrics."""
        self.config = replace(self.config, **changes)
        return self

    # -- turning scores into labels ------------------------------------------------------------
    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated scores: softmax (single-label) or a sigmoid per label, after the calibration
        fitted at training time (the identity for adapters trained before it)."""
        return Calibration.from_dict(self.config.calibration).scores(logits.float(), self.multi_label)

    def predictions(self, logits: torch.Tensor, review_threshold: float | None = None) -> list[Prediction]:
        """Labels, calibrated scores and confidence per row. An item needs review when its
        confidence is below `review_threshold` if one is given (auto-accept at a precision),
        else when it is near a decision boundary (within the review margin)."""
        probs = self.scores(logits).cpu()
        margin = self.config.review_margin
        names, thresholds = self.label_names, self.thresholds
        confidence = item_confidence(probs, self.multi_label, thresholds, self.min_labels).tolist()
        given = self.decisions(probs).tolist() if self.multi_label else [None] * len(probs)
        out = []
        for row, sure, on in zip(probs.tolist(), confidence, given):
            scores = dict(zip(names, row))
            if self.multi_label:
                picked = [n for n, yes in zip(names, on) if yes]
                closest = min(abs(p - t) for p, t in zip(row, thresholds))
                unsure = closest < margin
            else:
                top = max(range(len(row)), key=row.__getitem__)
                picked = [names[top]]
                closest = row[top] - max((p for i, p in enumerate(row) if i != top), default=0.0)
                unsure = closest < 2 * margin
            if review_threshold is not None:
                unsure = sure < review_threshold
            out.append(Prediction(picked, scores, unsure, sure, closest))
        return out

    # -- files ----------------------------------------------------------------------------------
    def to_bytes(self) -> tuple[bytes, str]:
        tensors = {k: v.detach().float().cpu().contiguous() for k, v in self.state_dict().items()}
        return save_safetensors(tensors), self.config.to_json()

    @classmethod
    def from_bytes(cls, weights: bytes, config_json: str, base: Base) -> Adapter:
        config = AdapterConfig.from_json(config_json)
        trained_on = config.base_model
        if trained_on.fingerprint != base.fingerprint:
            raise AdapterMismatchError(
                f"adapter was trained on base model {trained_on.name!r} "
                f"(fingerprint {trained_on.fingerprint[:12]}) but is being loaded onto "
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
