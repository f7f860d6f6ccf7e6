"""Per-process model state: each base model this process needs, loaded once on first use, and
a small LRU of adapters.

A worker holds several bases (the bundled ones, and a local model directory if BASE_MODEL names
one); an adapter says which it was trained on (its config's base_model name), and is loaded
onto that one. Adapters are cached by checksum, so a retrained or re-activated version is never
confused with an older one. Bytes read from the database are checked against the stored SHA-256
before they are deserialised: a mismatch is an error, and such an adapter is never served.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from reft_core import bases
from service.settings import get_settings
from store import adapters

from . import metrics

if TYPE_CHECKING:  # reft_core pulls in torch; import it only when a model is needed
    import reft_core

log = logging.getLogger(__name__)

ADAPTER_CACHE_SIZE = 16


class AdapterIntegrityError(RuntimeError):
    """An adapter's bytes do not match its stored checksum."""


class UnknownBase(LookupError):
    """No bundled base and no configured local directory has this name."""


_lock = threading.RLock()
_bases: dict[str, reft_core.Base] = {}
_taggers: dict[str, reft_core.Tagger] = {}
_adapters: OrderedDict[str, reft_core.Adapter] = OrderedDict()


def default_base_name() -> str:
    """What a worker loads first: the base "auto" picks for English (BASE_MODEL, else
    reft_core.bases.ENGLISH_DEFAULT)."""
    return bases.name_of(get_settings().english_base)


def available_bases() -> dict[str, str]:
    return bases.available(get_settings().english_base)


def base(name: str | None = None) -> reft_core.Base:
    """The base `name` (default: `default_base_name()`), loaded on first use in this process."""
    name = name or default_base_name()
    with _lock:
        if name not in _bases:
            where = available_bases().get(name)
            if where is None:
                raise UnknownBase(f"base model {name!r} is not available here (available: "
                                  f"{', '.join(available_bases())})")
            from reft_core import load_base

            loaded = load_base(where, get_settings().device)
            _bases[name] = loaded
            metrics.record_base(loaded)
            log.info("base model %s loaded on %s", loaded.name, loaded.device)
        return _bases[name]


def tagger(name: str | None = None) -> reft_core.Tagger:
    """One Tagger per base and process."""
    model = base(name)
    with _lock:
        if model.name not in _taggers:
            from reft_core import Tagger

            _taggers[model.name] = Tagger(model)
        return _taggers[model.name]


def adapter(ref: adapters.AdapterRef) -> reft_core.Adapter:
    """The adapter `ref` names, from the cache or the database (checksum verified), on the base
    it was trained on."""
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

    loaded = Adapter.from_bytes(weights, config_json, base(base_name_in(config_json)))
    with _lock:
        _adapters[ref.checksum] = loaded
        _adapters.move_to_end(ref.checksum)
        while len(_adapters) > ADAPTER_CACHE_SIZE:
            _adapters.popitem(last=False)
    return loaded


def base_name_in(config_json: str) -> str:
    """The base an adapter's config names (adapters saved before there were several: the default)."""
    return adapters.trained_base(config_json) or default_base_name()


def tagger_for(adapter: reft_core.Adapter) -> reft_core.Tagger:
    return tagger(adapter.config.base_model.name)


def loaded_bases() -> list[str]:
    with _lock:
        return list(_bases)


def clear() -> None:
    """Forget cached adapters (the bases stay)."""
    with _lock:
        _adapters.clear()
