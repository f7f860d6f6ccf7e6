"""reft_core: LoReFT and friends on any Hugging Face transformer, frozen, cached and batched.

Pure torch + transformers + safetensors; knows nothing of the reftag service.
"""
__version__ = "0.1.0"

from .adapter import Adapter, AdapterMismatchError, Prediction  # noqa: E402
from .base import Base, load_base  # noqa: E402
from .config import ReftConfigError, TrainConfig  # noqa: E402
from .interventions import DiReFT, LoReFT, RED, REGISTRY  # noqa: E402
from .tagger import Tagger  # noqa: E402
from .training import train  # noqa: E402

__all__ = ["Adapter", "AdapterMismatchError", "Base", "DiReFT", "LoReFT", "Prediction", "RED", "REGISTRY",
           "ReftConfigError", "Tagger", "TrainConfig", "load_base", "train"]
