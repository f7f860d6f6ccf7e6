"""Everything that defines how an adapter is trained. Saved with the adapter."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

INTERVENTIONS = ("loreft", "direft", "red")
POOLINGS = ("auto", "mean", "cls", "last")
_POSITIONS = re.compile(r"^f(\d{1,3})\+l(\d{1,3})$")


class ReftConfigError(ValueError):
    """A training option is unknown or out of range; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_positions(spec: str) -> tuple[int, int] | None:
    """`f<n>+l<m>` → (n, m): the first n and last m real tokens of each text; `all` → None:
    every real token (the edit's parameters do not grow with the number of positions)."""
    if spec == "all":
        return None
    match = _POSITIONS.match(spec) if isinstance(spec, str) else None
    if not match:
        raise ReftConfigError("positions", f"expected 'all' or 'f<n>+l<m>' such as 'f1+l1', got {spec!r}")
    first, last = int(match.group(1)), int(match.group(2))
    if first + last == 0:
        raise ReftConfigError("positions", "at least one position is needed")
    return first, last


@dataclass
class TrainConfig:
    intervention: str = "loreft"
    layers: list[int] | str = "auto"
    positions: str = "all"
    rank: int = 2
    epochs: int = 10
    lr: float = 5e-3
    dropout: float = 0.05
    batch_size: int = 32
    max_length: int = 128
    eval_fraction: float = 0.15
    seed: int = 0
    pooling: str = "auto"
    patience: int = 3

    @classmethod
    def from_dict(cls, overrides: dict[str, Any] | None) -> TrainConfig:
        overrides = dict(overrides or {})
        known = {f.name for f in fields(cls)}
        for key in overrides:
            if key not in known:
                raise ReftConfigError(key, f"unknown option (known: {', '.join(sorted(known))})")
        config = cls(**overrides)
        config.validate()
        return config

    def validate(self) -> None:
        def check(name: str, ok: bool, message: str) -> None:
            if not ok:
                raise ReftConfigError(name, message)

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool)

        check("intervention", self.intervention in INTERVENTIONS, f"one of {', '.join(INTERVENTIONS)}")
        check("pooling", self.pooling in POOLINGS, f"one of {', '.join(POOLINGS)}")
        parse_positions(self.positions)
        if self.layers != "auto":
            check(
                "layers",
                isinstance(self.layers, list) and len(self.layers) > 0 and all(is_int(x) and x >= 0 for x in self.layers)
                and len(set(self.layers)) == len(self.layers),
                "'auto' or a non-empty list of distinct layer indices ≥ 0",
            )
        check("rank", is_int(self.rank) and 1 <= self.rank <= 256, "an integer from 1 to 256")
        check("epochs", is_int(self.epochs) and 1 <= self.epochs <= 100, "an integer from 1 to 100")
        check("lr", is_num(self.lr) and 0 < self.lr <= 1, "a number in (0, 1]")
        check("dropout", is_num(self.dropout) and 0 <= self.dropout <= 0.9, "a number in [0, 0.9]")
        check("batch_size", is_int(self.batch_size) and 1 <= self.batch_size <= 1024, "an integer from 1 to 1024")
        check("max_length", is_int(self.max_length) and 8 <= self.max_length <= 4096, "an integer from 8 to 4096")
        check("eval_fraction", is_num(self.eval_fraction) and 0.05 <= self.eval_fraction <= 0.5, "a number in [0.05, 0.5]")
        check("seed", is_int(self.seed), "an integer")
        check("patience", is_int(self.patience) and 1 <= self.patience <= 100, "an integer from 1 to 100")

    def resolve_layers(self, num_layers: int) -> list[int]:
        if self.layers == "auto":
            # The upper half but the top block: the frozen lower half is computed once and
            # cached, and an edit needs the abstract upper representations. Not the top block's
            # output: edited at every position and then pooled, an affine edit there is only an
            # affine map of the pooled vector — a linear probe again (bench/RESULTS.md, sweep).
            return list(range(num_layers // 2, max(num_layers // 2 + 1, num_layers - 1)))
        bad = [layer for layer in self.layers if layer >= num_layers]
        if bad:
            raise ReftConfigError("layers", f"{bad} out of range: the model has layers 0–{num_layers - 1}")
        return sorted(self.layers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
