"""reft_core: LoReFT and friends on any Hugging Face transformer, frozen, cached and batched.

Pure torch + transformers + safetensors; knows nothing of the reftag service. Importing the
package (or `reft_core.config`) does not import torch: the names below load their modules on
first use, so a process that only needs the training options (the service's web tier) never
loads a model library.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .config import ReftConfigError, TrainConfig

__version__ = "0.1.0"

# name → the module that defines it (imported on first access)
_LAZY = {
    "Adapter": "adapter", "AdapterConfig": "adapter", "AdapterMismatchError": "adapter", "Prediction": "adapter",
    "Base": "base", "load_base": "base",
    "DiReFT": "interventions", "LoReFT": "interventions", "RED": "interventions", "REGISTRY": "interventions",
    "Tagger": "tagger",
    "train": "training", "evaluate": "training", "recipe_cross_validation": "training",
    "CrossValidation": "training",
    "train_spans": "span_training", "evaluate_spans": "span_training",
}

__all__ = ["Adapter", "AdapterConfig", "AdapterMismatchError", "Base", "CrossValidation", "DiReFT", "LoReFT",
           "Prediction", "RED", "REGISTRY", "ReftConfigError", "Tagger", "TrainConfig", "evaluate", "load_base",
           "recipe_cross_validation", "train", "train_spans", "evaluate_spans"]

if TYPE_CHECKING:
    from .adapter import Adapter, AdapterConfig, AdapterMismatchError, Prediction
    from .base import Base, load_base
    from .interventions import RED, REGISTRY, DiReFT, LoReFT
    from .span_training import evaluate_spans, train_spans
    from .tagger import Tagger
    from .training import CrossValidation, evaluate, recipe_cross_validation, train


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'reft_core' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
