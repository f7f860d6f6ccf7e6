"""Per-process model state: the base model, loaded once, and a small LRU of adapters.

Adapters are cached by checksum, so a retrained or re-activated version is never confused with
an older one. Bytes read from the database are checked against the stored SHA-256 before they
are deserialised: a mismatch is an error, and such an adapter is never served.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from service.settings import get_settings
from store import adapters

from . import metrics

if TYPE_CHECKING:  # reft_core pulls in torch; import it only when a model is needed
    import reft_core

log = logging.getLogger(__name__)

ADAPTER_CACHE_SIZE = 16


class AdapterIntegrityError(RuntimeError):
    """An adapter's bytes do not match its stored checksum."""


_lock = threading.Lock()
_base: reft_core.Base | None = None
_tagger: reft_core.Tagger | None = None
_adapters: OrderedDict[str, reft_core.Adapter] = OrderedDict()


def base() -> reft_core.Base:
    """The frozen base model of this process, loaded on first use."""
    global _base
    with _lock:
        if _base is None:
            from reft_core import load_base

            settings = get_settings()
            _base = load_base(settings.base_model, settings.device)
            log.info("base model %s loaded on %s", _base.name, _base.device)
        return _base


def tagger() -> reft_core.Tagger:
    """One Tagger per process, sharing the base model."""
    global _tagger
    model = base()
    with _lock:
        if _tagger is None:
            from reft_core import Tagger

            _tagger = Tagger(model)
        return _tagger


def adapter(ref: adapters.AdapterRef) -> reft_core.Adapter:
    """The adapter `ref` names, from the cache or the database (checksum verified)."""
    with _lock:
        cached = _adapters.get(ref.checksum)
        if cached is not None:
            _adapters.move_to_end(ref.checksum)
    metrics.count_adapter_cache(hit=cached is not None)
    if cached is not None:
        return cached
    weights, config_json, stored = adapters.adapter_bytes(ref)
    actual = adapters.adapter_checksum(weights, config_json)
    if actual != stored or stored != ref.checksum:
        raise AdapterIntegrityError(
            f"adapter {ref.label_set_id} v{ref.version} is corrupt: checksum {actual[:12]}… "
            f"does not match the stored {stored[:12]}…"
        )
    from reft_core import Adapter

    loaded = Adapter.from_bytes(weights, config_json, base())
    with _lock:
        _adapters[ref.checksum] = loaded
        _adapters.move_to_end(ref.checksum)
        while len(_adapters) > ADAPTER_CACHE_SIZE:
            _adapters.popitem(last=False)
    return loaded


def clear() -> None:
    """Forget cached adapters (the base model stays)."""
    with _lock:
        _adapters.clear()
