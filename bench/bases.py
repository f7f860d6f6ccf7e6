"""Two bases in one worker (issue 13): tagging cost on the multilingual base, a mixed stream of
label sets on both bases, and memory per base.

(a) tagging on the multilingual base against its bare forward pass (+ mean pooling, the Tagger's
    batching policy), on a corpus of English (SST-2 + AG News test) and Chinese (TNEWS test)
    texts — bench.speed's part (b) on this base;
(b) a worker's stream of tag chunks (`--chunk` items each) from label sets on MiniLM and on the
    multilingual base, interleaved chunk by chunk as a queue hands them out, against the same
    chunks run apart (every MiniLM chunk, then every multilingual one): items per second of each,
    both bases loaded once, as a worker holds them;
(c) memory: a fresh process loads MiniLM, tags, loads the multilingual base, tags; RSS and peak
    RSS (VmHWM) at each step, so each base's share is the difference.
Adapters are fresh default adapters with perturbed weights (speed does not depend on what they
learned). Timings are the best of `--repeats` interleaved runs.

    python -m bench.bases --repeats 3
Writes bench/out/bases.json and prints the ratios.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from reft_core import Tagger, load_base
from reft_core.bases import MINILM, MULTILINGUAL

from .common import command_line, machine, markdown_table, write_json
from .data import read_jsonl
from .speed import _snapshot, best_seconds, fresh_adapter, part_tag


def corpus(limit: int) -> list[str]:
    """English and Chinese texts, shuffled (seed 0)."""
    texts = [r["text"] for name in ("sst2", "ag_news", "tnews") for r in read_jsonl(name, "test", limit)]
    random.Random(0).shuffle(texts)
    return texts


def part_stream(texts: list[str], chunk: int, repeats: int) -> dict[str, Any]:
    bases = {name: load_base(name) for name in (MINILM, MULTILINGUAL)}
    taggers = {name: Tagger(base) for name, base in bases.items()}
    adapters = {name: fresh_adapter(base, seed=3) for name, base in bases.items()}
    chunks = [(MINILM if i % 2 == 0 else MULTILINGUAL, texts[lo:lo + chunk])
              for i, lo in enumerate(range(0, len(texts), chunk))]

    def run(order: list[tuple[str, list[str]]]) -> None:
        for name, items in order:
            taggers[name].predict(adapters[name], items)

    apart = sorted(chunks, key=lambda c: c[0] != MINILM)
    seconds = best_seconds({"mixed_stream": lambda: run(chunks), "apart": lambda: run(apart)}, repeats)
    n = sum(len(items) for _, items in chunks)
    rate = {k: n / s for k, s in seconds.items()}
    return {"items": n, "chunks": len(chunks), "chunk_size": chunk, "seconds": seconds, "items_per_s": rate,
            "ratios": {"mixed rate / apart rate": rate["mixed_stream"] / rate["apart"]}}


def memory_child(directory: str) -> None:
    texts = json.loads(Path(directory, "texts.json").read_text(encoding="utf-8"))
    steps = {"imported": _snapshot()}
    for name in (MINILM, MULTILINGUAL):
        base = load_base(name)
        steps[f"{name} loaded"] = _snapshot()
        Tagger(base).predict(fresh_adapter(base, seed=1), texts)
        steps[f"{name} tagged {len(texts)}"] = _snapshot()
    print(json.dumps(steps))


def part_memory(texts: list[str]) -> dict[str, Any]:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        Path(directory, "texts.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        out = subprocess.run([sys.executable, "-m", "bench.bases", "--memory-child", directory], check=True,
                             capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    steps = json.loads(out.stdout.strip().splitlines()[-1])
    keys = list(steps)
    per_base = {name: round(steps[f"{name} tagged {len(texts)}"]["rss_mb"] - steps[keys[keys.index(
        f"{name} loaded") - 1]]["rss_mb"], 1) for name in (MINILM, MULTILINGUAL)}
    return {"steps": steps, "rss_added_by_base_mb": per_base}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=700, help="test rows of each of sst2, ag_news, tnews")
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child)
        return {}
    if args.threads:
        torch.set_num_threads(args.threads)
    texts = corpus(args.texts)
    result = {"command": command_line("bench.bases"), "machine": machine(),
              "tag_multilingual": part_tag(load_base(MULTILINGUAL), texts, args.repeats),
              "stream": part_stream(texts, args.chunk, args.repeats),
              "memory": part_memory(texts[:512])}
    write_json("bases.json", result)
    rows = [["tagging / bare forward (multilingual)", f"{result['tag_multilingual']['ratios']['tagger / bare']:.3f}",
             "≥ 0.95"],
            ["mixed stream / apart (MiniLM + multilingual chunks)",
             f"{result['stream']['ratios']['mixed rate / apart rate']:.3f}", "≥ 0.9"]]
    rows += [[f"RSS added by {name} (loaded + tagging 512 texts)", f"{mb} MB", "measured"]
             for name, mb in result["memory"]["rss_added_by_base_mb"].items()]
    print(markdown_table(["measure", "value", "target"], rows))
    return result


if __name__ == "__main__":
    main()
