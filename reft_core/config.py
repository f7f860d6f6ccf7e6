"""Everything that defines how an adapter is trained, declared once. Saved with the adapter.

Torch-free on purpose: the service's web tier builds its request schema and its OpenAPI
document from these fields (their types, bounds and choices live in each field's `Option`),
so a training option and its limits are written here and nowhere else.
"""
from __future__ import annotations

import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

# The names of the interventions in `interventions.REGISTRY` (which needs torch); a test keeps
# the two equal.
INTERVENTIONS = ("loreft", "direft", "red")
POOLINGS = ("auto", "mean", "cls", "last")
EVALUATIONS = ("auto", "held_out", "k-fold")
SOUPS = ("auto", "none", "folds")
LABEL_WEIGHTS = ("balanced", "none")
OBJECTIVES = ("auto", "labels", "pairs")
# What an option was, in effect, for adapters saved before it existed (others load with their
# default): their recipes are retrained as they were trained.
BEFORE_OPTION = {"label_weights": "none", "early_stop_min_eval": 1, "kfold_below_multi_label": 0, "soup": "none",
                 "objective": "labels"}
# What a label set's adapters learn: one or more labels per text, or labelled character spans
# (a tag per token, `spans`).
KINDS = ("classification", "spans")
POSITIONS_PATTERN = r"^(all|f\d{1,3}\+l\d{1,3})$"
MAX_SEED = 2**31 - 1
_POSITIONS = re.compile(r"^f(\d{1,3})\+l(\d{1,3})$")


class ReftConfigError(ValueError):
    """A training option is unknown or out of range; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Option:
    """What one training option accepts. `kind` is int, float, str or "layers" ("auto" or a
    list of distinct block indices); bounds are inclusive (`ge`, `le`) or exclusive (`gt`)."""

    kind: str
    doc: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    max_items: int | None = None  # layers: at most this many

    def problem(self, value: Any) -> str | None:
        """Why `value` is not acceptable, or None."""
        if self.kind == "layers":
            if value == "auto":
                return None
            ok = (isinstance(value, list) and 0 < len(value) <= (self.max_items or len(value))
                  and all(_is_int(x) and x >= (self.ge or 0) and (self.le is None or x <= self.le) for x in value)
                  and len(set(value)) == len(value))
            return None if ok else f"'auto' or a non-empty list of at most {self.max_items} distinct layer indices " \
                                   f"from {int(self.ge or 0)} to {int(self.le or 0)}"
        if self.choices is not None:
            return None if value in self.choices else f"one of {', '.join(self.choices)}"
        if self.kind == "str":
            if not isinstance(value, str) or (self.pattern and not re.match(self.pattern, value)):
                return f"a string matching {self.pattern}"
            return None
        number_ok = _is_int(value) if self.kind == "int" else (isinstance(value, (int, float))
                                                               and not isinstance(value, bool))
        if not number_ok or (self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt) \
                or (self.le is not None and value > self.le):
            return f"{'an integer' if self.kind == 'int' else 'a number'} {self.range_text()}"
        return None

    def range_text(self) -> str:
        low = f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}" if self.gt is not None else "(-inf"
        high = f"{_num(self.le)}]" if self.le is not None else "inf)"
        return f"in {low}, {high}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _num(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def option(default: Any, kind: str, doc: str, **limits: Any) -> Any:
    """A TrainConfig field: its default and what it accepts (read by `TrainConfig.options()`)."""
    spec = Option(kind, doc, **limits)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"option": spec})
    return field(default=default, metadata={"option": spec})


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


def main_metric(multi_label: bool, kind: str = "classification") -> str:
    """The one number adapters are compared by (early stopping, promotion): micro-F1 for
    multi-label sets and for spans (entity-level, exact match), macro-F1 otherwise."""
    return "micro_f1" if multi_label or kind == "spans" else "macro_f1"


# Auditing a set's labels (reft_core.audit) needs this many examples of every label — one per
# fold, so every fold's adapter has seen each label — and this many in all. Here, not in
# reft_core.audit, so that the web tier can check them without loading torch.
AUDIT_FOLDS = 5
AUDIT_MIN_PER_LABEL = 5
AUDIT_MIN_EXAMPLES = 20


@dataclass(frozen=True)
class TrainConfig:
    intervention: str = option("loreft", "str", "the edit applied to hidden states", choices=INTERVENTIONS)
    layers: list[int] | str = option(
        "auto", "layers", "block indices to intervene on; auto: the upper half but the top block",
        ge=0, le=1000, max_items=256)
    positions: str = option("all", "str", "every real token, or the first n / last m real tokens (f<n>+l<m>)",
                            pattern=POSITIONS_PATTERN)
    rank: int = option(2, "int", "low rank r of the edit", ge=1, le=256)
    epochs: int = option(10, "int", "max epochs (early stopping on the held-out split)", ge=1, le=100)
    lr: float = option(5e-3, "float", "learning rate", gt=0, le=1)
    dropout: float = option(0.05, "float", "dropout on the intervention's edit (never on h)", ge=0, le=0.9)
    batch_size: int = option(32, "int", "training batch size", ge=1, le=1024)
    max_length: int = option(128, "int", "tokens per text (tagging cuts texts at the same length)", ge=8, le=4096)
    eval_fraction: float = option(0.15, "float", "held-out share (stratified)", ge=0.05, le=0.5)
    seed: int = option(0, "int", "determinism", ge=0, le=MAX_SEED)
    pooling: str = option("auto", "str", "head input", choices=POOLINGS)
    patience: int = option(3, "int", "checks without a better held-out score before stopping", ge=1, le=100)
    early_stop_min_eval: int = option(
        100, "int", "held_out: stop early (keeping the best check's weights) only with at least this many "
        "evaluation rows; with fewer, a check's score is mostly chance, so the whole schedule is trained and its "
        "last weights are kept", ge=1, le=1_000_000)
    min_steps: int = option(100, "int", "optimizer steps at least, however few the examples", ge=0, le=100_000)
    ema: float = option(0.0, "float", "decay of an exponential moving average of the trained weights, which the "
                        "checks score and the adapter keeps (0: the weights of the last step); its first steps "
                        "average over fewer (decay (1 + t) / (10 + t) until that is larger)", ge=0, le=0.999)
    contrastive: float = option(0.0, "float", "weight of a supervised contrastive loss on the pooled representation",
                                ge=0, le=10)
    evaluation: str = option("auto", "str", "held_out (evaluation rows never trained on), k-fold (out-of-fold "
                             "scores, then a refit on every example), or auto: k-fold below kfold_below examples "
                             "(a multi-label set: below kfold_below_multi_label, if larger)",
                             choices=EVALUATIONS)
    kfold_below: int = option(200, "int", "auto evaluation: k-fold below this many examples", ge=0, le=1_000_000)
    kfold_below_multi_label: int = option(
        1000, "int", "auto evaluation of a multi-label set: k-fold below this many examples (or kfold_below, if "
        "larger) — its per-label calibration and thresholds need every example's out-of-fold scores, not a "
        "held-out share's few positives of each label", ge=0, le=1_000_000)
    folds: int = option(5, "int", "k-fold evaluation: folds", ge=2, le=20)
    soup: str = option("auto", "str", "k-fold evaluation: the adapter is the refit (none), or the weight average "
                       "of the refit and the fold models (folds; no cost at tagging), or auto: folds for a "
                       "multi-label set, none for a single-label one", choices=SOUPS)
    label_weights: str = option("balanced", "str", "multi-label: each label's positive examples weigh its "
                                "negatives / positives in the loss (balanced), so a label with a few examples among "
                                "many is learnt rather than drowned by its negatives; or all weigh 1 (none)",
                                choices=LABEL_WEIGHTS)

    objective: str = option(
        "auto", "str", "what the steps train: the head's loss on the labels (labels); or SetFit's pairs (pairs): a "
        "cosine-similarity loss on pairs of examples (same label or not) shapes the pooled representation, then "
        "a logistic regression fitted on it becomes the head — single-label sets only, trained at pairs_rank and "
        "pairs_lr, layers auto meaning every block; or auto: pairs in k-fold evaluation of a single-label set "
        "(below kfold_below examples), labels everywhere else", choices=OBJECTIVES)
    pairs_rank: int = option(8, "int", "the pairs objective: low rank r of the edit (instead of rank)", ge=1, le=256)
    pairs_lr: float = option(1e-3, "float", "the pairs objective: learning rate (instead of lr)", gt=0, le=1)

    @classmethod
    def options(cls) -> dict[str, tuple[Option, Any]]:
        """Every option: name → (what it accepts, its default)."""
        return {f.name: (f.metadata["option"], f.default if f.default_factory is MISSING else f.default_factory())
                for f in fields(cls)}

    @classmethod
    def from_dict(cls, overrides: dict[str, Any] | None) -> TrainConfig:
        overrides = dict(overrides or {})
        known = cls.options()
        for key in overrides:
            if key not in known:
                raise ReftConfigError(key, f"unknown option (known: {', '.join(sorted(known))})")
        config = cls(**overrides)
        config.validate()
        return config

    @classmethod
    def problem(cls, name: str, value: Any) -> str | None:
        """Why `value` is not acceptable for the option `name`, or None. The one validator of
        training options: `validate()` runs it on every field, the service's API on each field
        of a request."""
        problem = cls.options()[name][0].problem(value)
        if problem is None and name == "positions":
            try:
                parse_positions(value)
            except ReftConfigError as e:
                return e.message
        return problem

    def validate(self) -> None:
        for name in self.options():
            problem = self.problem(name, getattr(self, name))
            if problem:
                raise ReftConfigError(name, problem)

    def resolve_layers(self, num_layers: int, kind: str = "classification") -> list[int]:
        if isinstance(self.layers, str) and self.objective == "pairs":
            # Every block: the pairs shape the representation itself (bench/RESULTS.md, "the pairs
            # objective"), and a rank-8 edit of every block is what beat SetFit at 8 per label.
            return list(range(num_layers))
        if isinstance(self.layers, str) and kind == "spans":
            # Every block but the top: a token's tag leans on the lexical detail of the lower
            # blocks (CoNLL-2003 dev, 200 training sentences, MiniLM, two seeds: blocks 0–4 0.53
            # and 0.50 entity F1, the upper half 3–4 0.47 and 0.42), and an affine edit of the top
            # block's output is one more linear map before the per-token head.
            return list(range(max(1, num_layers - 1)))
        if isinstance(self.layers, str):  # "auto"
            # The upper half but the top block: the frozen lower half is computed once and
            # cached, and an edit needs the abstract upper representations. Not the top block's
            # output: edited at every position and then pooled, an affine edit there is only an
            # affine map of the pooled vector — a linear probe again (bench/RESULTS.md, sweep).
            return list(range(num_layers // 2, max(num_layers // 2 + 1, num_layers - 1)))
        bad = [layer for layer in self.layers if layer >= num_layers]
        if bad:
            raise ReftConfigError("layers", f"{bad} out of range: the model has layers 0–{num_layers - 1}")
        return sorted(self.layers)

    @property
    def train_rank(self) -> int:
        """The rank the recipe trains at: `pairs_rank` with the pairs objective, else `rank`."""
        return self.pairs_rank if self.objective == "pairs" else self.rank

    @property
    def train_lr(self) -> float:
        """The learning rate the recipe trains at: `pairs_lr` with the pairs objective, else `lr`."""
        return self.pairs_lr if self.objective == "pairs" else self.lr

    def problem_for_set(self, kind: str, multi_label: bool) -> ReftConfigError | None:
        """Why this recipe cannot train a label set of `kind` (multi-label or not), or None.
        Torch-free, so that the service refuses such a recipe when it is given, not when a
        worker trains it."""
        if kind == "spans":
            if self.positions != "all":
                return ReftConfigError("positions", "span labeling edits every real token: use 'all'")
            if self.contrastive:
                return ReftConfigError("contrastive", "the contrastive loss is on pooled texts: classification only")
            if self.evaluation == "k-fold":
                return ReftConfigError("evaluation",
                                       "span labeling is evaluated on a held-out share: use 'held_out' or 'auto'")
        if self.objective == "pairs" and (multi_label or kind == "spans"):
            return ReftConfigError("objective", "pairs needs a single-label classification set (each pair of "
                                   "texts is 'same label' or not); use labels or auto")
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
