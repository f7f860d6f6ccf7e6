"""Speed ratios of issue 4, every one measured side by side in one run on the bundled MiniLM.

(a) training wall time on the first `--train-rows` SST-2 rows, `--epochs` fixed (patience 100,
    so early stopping cannot skew the ratio): default LoReFT with the frozen-prefix cache, the
    same without it (`train(..., cache_prefix=False)`: every step runs the whole model), the
    same also without length buckets (shuffled batches padded to their longest: the way pyreft
    trains), peft LoRA r=8 through the baseline loop of bench/common.py, and — when
    bench/setup_pyreft.sh has made its virtualenv — pyreft 0.1.0 itself (bench/pyreft_run.py:
    the issue's configuration, LoReFT r4 on layers 1, 3, 5 at f1+l1), run as a subprocess;
(b) tagging throughput (items/s) on a length-mixed corpus (sst2 test + ag_news test texts,
    shuffled with seed 0): reft_core.Tagger with one adapter, the bare base model's forward pass
    + mean pooling with the Tagger's batching policy (length-sorted, batch 64), and a naive
    baseline (submission order, each batch of 64 padded to its longest text);
(c) 8 label sets over the same items: `Tagger.predict_mixed` with all 8 adapters mixed vs the 8
    adapters one after another vs one adapter (rates in items × adapters per second), plus a
    stream whose items each belong to one of the 8 adapters (mixing overhead alone);
(d) memory of a tag worker: a subprocess loads the base model and tags, then loads 100 adapters
    from bytes and tags a stream mixing them; RSS and peak RSS (VmHWM) at each step.
Adapters in (b)-(d) are fresh default adapters with randomly perturbed weights: speed does not
depend on what they learned. Timings in (b) and (c) are the best of `--repeats` interleaved runs.

Full run:   python -m bench.speed --train-rows 4000 --epochs 4 --repeats 3
Smoke run:  python -m bench.speed --quick
Writes bench/out/speed.json and prints a markdown table of the ratios next to issue 4's targets.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from reft_core import Adapter, Base, Tagger, load_base, train
from reft_core.heads import default_pooling

from .common import (
    DEFAULTS,
    EVAL_BATCH,
    EVAL_MAX_LENGTH,
    OUT_DIR,
    command_line,
    encode,
    finetune,
    load_dataset,
    machine,
    markdown_table,
    mean_pooled,
    write_json,
)
from .data import read_jsonl

PARTS = ("train", "tag", "mixed", "memory")


# -- helpers -------------------------------------------------------------------------------------------
def fresh_adapter(base: Base, seed: int, n_labels: int = 2) -> Adapter:
    """reftag's default adapter shape with random weights (away from the identity start)."""
    adapter = Adapter.new(base, intervention=DEFAULTS.intervention, layers=DEFAULTS.resolve_layers(base.num_layers),
                          positions=DEFAULTS.positions, rank=DEFAULTS.rank, dropout=DEFAULTS.dropout,
                          label_names=[f"label{i}" for i in range(n_labels)], multi_label=False,
                          pooling=default_pooling(base.family))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return adapter.eval()


# What the parts read: short (SST-2) and longer (AG News) texts mixed, and SST-2 to train on.
CORPUS = ("sst2", "ag_news")
TRAIN_SET = "sst2"


def mixed_corpus(limit: int | None) -> list[str]:
    texts = [r["text"] for name in CORPUS for r in read_jsonl(name, "test")]
    random.Random(0).shuffle(texts)
    return texts[:limit] if limit else texts


def best_seconds(runs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Best wall time of each callable over `repeats` rounds, interleaved so that load on the
    machine hits every contender alike; one untimed warm-up call each first."""
    for fn in runs.values():
        fn()
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# -- (a) training ------------------------------------------------------------------------------------------
PYREFT_PYTHON = Path(__file__).resolve().parent / ".venv-pyreft" / "bin" / "python"


def run_pyreft(rows: int, epochs: int) -> dict[str, Any] | None:
    """pyreft 0.1.0 itself (bench/pyreft_run.py in its own virtualenv), when bench/setup_pyreft.sh made it."""
    if not PYREFT_PYTHON.exists():
        return None
    subprocess.run([str(PYREFT_PYTHON), "-m", "bench.pyreft_run", "--train-rows", str(rows), "--epochs", str(epochs),
                    "--eval", "dev"], check=True, cwd=Path(__file__).resolve().parents[1], capture_output=True)
    return json.loads((OUT_DIR / "pyreft.json").read_text())


def part_train(base: Base, rows: int, epochs: int, with_pyreft: bool = True) -> dict[str, Any]:
    data = load_dataset(TRAIN_SET, rows, 0)
    config = {"epochs": epochs, "patience": 100}
    fit = lambda cache, buckets=True: train(base, data.train.texts, data.train.labels, data.names,  # noqa: E731
                                            config=config, cache_prefix=cache, length_buckets=buckets)
    seconds = {
        "loreft_cached": timed(lambda: fit(True)),
        "loreft_uncached": timed(lambda: fit(False)),
        "loreft_pyreft_way": timed(lambda: fit(False, buckets=False)),
        "lora_r8": timed(lambda: finetune(base, "lora", data.train.texts, data.targets(data.train), len(data.names),
                                          False, epochs=epochs, patience=100)),
    }
    ratios = {"loreft_cached / lora": seconds["loreft_cached"] / seconds["lora_r8"],
              "loreft_uncached / loreft_cached": seconds["loreft_uncached"] / seconds["loreft_cached"],
              "loreft_pyreft_way / loreft_cached": seconds["loreft_pyreft_way"] / seconds["loreft_cached"]}
    pyreft = run_pyreft(rows, epochs) if with_pyreft else None
    if pyreft:
        seconds["pyreft_0.1.0"] = pyreft["train_seconds"]
        ratios["pyreft_0.1.0 / loreft_cached"] = pyreft["train_seconds"] / seconds["loreft_cached"]
    return {"rows": rows, "epochs": epochs, "seconds": seconds, "ratios": ratios, "pyreft": pyreft}


# -- (b) tagging throughput -----------------------------------------------------------------------------------
def part_tag(base: Base, corpus: list[str], repeats: int) -> dict[str, Any]:
    tagger, adapter, bare = Tagger(base), fresh_adapter(base, seed=1), mean_pooled(base.model)
    assert tagger.batch_size == EVAL_BATCH and adapter.max_length == EVAL_MAX_LENGTH
    seconds = best_seconds({
        "tagger_one_adapter": lambda: tagger.predict(adapter, corpus),
        "bare_model_sorted": lambda: encode(base, bare, corpus, sort=True),
        "naive_fixed_order": lambda: encode(base, bare, corpus, sort=False),
    }, repeats)
    rate = {k: len(corpus) / s for k, s in seconds.items()}
    return {"items": len(corpus), "seconds": seconds, "items_per_s": rate,
            "ratios": {"tagger / bare": rate["tagger_one_adapter"] / rate["bare_model_sorted"],
                       "tagger / naive": rate["tagger_one_adapter"] / rate["naive_fixed_order"]}}


# -- (c) 8 label sets -----------------------------------------------------------------------------------------
def part_mixed(base: Base, corpus: list[str], n_adapters: int, repeats: int) -> dict[str, Any]:
    tagger = Tagger(base)
    adapters = [fresh_adapter(base, seed=10 + i, n_labels=2 + i % 4) for i in range(n_adapters)]
    same_items = [(a, t) for t in corpus for a in adapters]
    stream = [(adapters[i % n_adapters], t) for i, t in enumerate(corpus)]
    seconds = best_seconds({
        "single_adapter": lambda: tagger.predict(adapters[0], corpus),
        "sequential_all": lambda: [tagger.predict(a, corpus) for a in adapters],
        "mixed_all": lambda: tagger.predict_mixed(same_items),
        "mixed_stream": lambda: tagger.predict_mixed(stream),
    }, repeats)
    n = len(corpus)
    rate = {"single_adapter": n / seconds["single_adapter"],
            "sequential_all": n * n_adapters / seconds["sequential_all"],
            "mixed_all": n * n_adapters / seconds["mixed_all"],
            "mixed_stream": n / seconds["mixed_stream"]}
    return {"items": n, "adapters": n_adapters, "seconds": seconds, "items_x_adapters_per_s": rate,
            "ratios": {"mixed_all rate / single rate": rate["mixed_all"] / rate["single_adapter"],
                       "sequential_all time / mixed_all time": seconds["sequential_all"] / seconds["mixed_all"],
                       "mixed_stream rate / single rate": rate["mixed_stream"] / rate["single_adapter"]}}


# -- (d) memory of a tag worker ----------------------------------------------------------------------------------
def _proc_status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def _snapshot() -> dict[str, float]:
    return {"rss_mb": round(_proc_status_mb("VmRSS"), 1), "peak_rss_mb": round(_proc_status_mb("VmHWM"), 1)}


def memory_child(directory: str) -> None:
    """Run in a fresh process (`--memory-child DIR`, which holds the adapters and texts.json, the
    texts to tag): prints one JSON line of RSS snapshots."""
    texts = json.loads(Path(directory, "texts.json").read_text(encoding="utf-8"))
    steps = {"imported": _snapshot()}
    base = load_base()
    tagger = Tagger(base)
    steps["base_loaded"] = _snapshot()
    files = sorted(Path(directory).glob("*.safetensors"))
    first = Adapter.from_bytes(files[0].read_bytes(), files[0].with_suffix(".json").read_text(), base)
    tagger.predict(first, texts)
    steps["base_tagged_one_adapter"] = _snapshot()
    adapters = [Adapter.from_bytes(f.read_bytes(), f.with_suffix(".json").read_text(), base) for f in files]
    steps["adapters_loaded"] = _snapshot()
    tagger.predict_mixed([(adapters[i % len(adapters)], t) for i, t in enumerate(texts * 2)])
    steps["tagged_mixed_stream"] = _snapshot()
    print(json.dumps({"adapters": len(adapters), "texts": len(texts), "steps": steps}))


def part_memory(base: Base, n_adapters: int, n_texts: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="reftag-bench-") as directory:
        total = 0
        for i in range(n_adapters):
            weights, config_json = fresh_adapter(base, seed=100 + i).to_bytes()
            Path(directory, f"{i:04d}.safetensors").write_bytes(weights)
            Path(directory, f"{i:04d}.json").write_text(config_json)
            total += len(weights) + len(config_json.encode())
        texts = [r["text"] for r in read_jsonl(TRAIN_SET, "test", n_texts)]
        Path(directory, "texts.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        out = subprocess.run([sys.executable, "-m", "bench.speed", "--memory-child", directory],
                             capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    child = json.loads(out.stdout.strip().splitlines()[-1])
    s, worker = child["steps"], child["steps"]["base_tagged_one_adapter"]
    child["adapter_bytes_total"] = total
    child["ratios"] = {
        f"rss growth from {n_adapters} adapters, MB": s["adapters_loaded"]["rss_mb"] - worker["rss_mb"],
        "peak over base worker, MB": s["tagged_mixed_stream"]["peak_rss_mb"] - worker["peak_rss_mb"],
        "adapter bytes total, MB": total / 2**20,
    }
    return child


# -- report ----------------------------------------------------------------------------------------------------
TARGETS = {
    "loreft_cached / lora": "≤ 0.33",
    "loreft_uncached / loreft_cached": "≥ 3",
    "loreft_pyreft_way / loreft_cached": "",
    "pyreft_0.1.0 / loreft_cached": "",
    "tagger / bare": "≥ 0.95",
    "tagger / naive": "≥ 1.3",
    "mixed_all rate / single rate": "≥ 0.9",
    "sequential_all time / mixed_all time": "≥ 3",
    "mixed_stream rate / single rate": "≥ 0.9",
    "peak over base worker, MB": "≤ 50",
}


def table(results: dict[str, Any]) -> str:
    rows = []
    for part, r in results.items():
        measured = r.get("seconds") or {}
        detail = ", ".join(f"{k} {v:.2f}s" for k, v in measured.items())
        if part == "memory":
            detail = ", ".join(f"{k} {v['rss_mb']:.0f}/{v['peak_rss_mb']:.0f} MB" for k, v in r["steps"].items())
            detail = "RSS/peak: " + detail
        for name, value in r["ratios"].items():
            rows.append([part, name, f"{value:.2f}", TARGETS.get(name, ""), detail])
            detail = ""
    return markdown_table(["part", "ratio", "measured", "issue 4 target", "raw"], rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"subset of {','.join(PARTS)}")
    parser.add_argument("--train-rows", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--corpus-rows", type=int, default=None, help="default: all sst2 + ag_news test texts")
    parser.add_argument("--adapters", type=int, default=8)
    parser.add_argument("--memory-adapters", type=int, default=100)
    parser.add_argument("--memory-texts", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke test: 200 rows, 1 epoch, 128 texts, 1 repeat")
    parser.add_argument("--out", default="speed.json", help="file name under bench/out/")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.train_rows, args.epochs, args.corpus_rows, args.repeats = 200, 1, 128, 1
        args.memory_texts = 64
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child)
        return {}
    command = command_line("bench.speed")
    parts = args.parts.split(",")
    base = load_base()
    corpus = mixed_corpus(args.corpus_rows)
    results: dict[str, Any] = {}
    payload = {"command": command, "machine": machine(), "base": base.name, "results": results}
    jobs = {"train": lambda: part_train(base, args.train_rows, args.epochs),
            "tag": lambda: part_tag(base, corpus, args.repeats),
            "mixed": lambda: part_mixed(base, corpus, args.adapters, args.repeats),
            "memory": lambda: part_memory(base, args.memory_adapters, args.memory_texts)}
    for part in parts:
        results[part] = jobs[part]()
        print(f"{part}: {json.dumps(results[part]['ratios'])}", flush=True)
        write_json(args.out, payload)
    print(f"\ncommand: {command}\n")
    print(table(results))
    return payload


if __name__ == "__main__":
    main()
