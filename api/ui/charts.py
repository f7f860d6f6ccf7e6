"""Geometry for the dashboard's two charts, drawn as inline SVG by its templates: the training
loss curve and the confusion-matrix heatmap. Plain arithmetic on the numbers a train job
records; no plotting library, nothing loaded from the network."""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Tick:
    at: float  # pixel position along the axis
    text: str


@dataclass
class LossChart:
    width: int
    height: int
    left: int
    top: int
    right: int
    bottom: int
    path: str  # SVG path of the per-step loss
    dots: list[tuple[float, float, str]]  # epoch means: x, y, tooltip
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    x_unit: str  # "step" or "epoch"


def nice_step(span: float, count: int) -> float:
    """A round tick spacing (1, 2 or 5 × 10^k) that cuts `span` into about `count` parts."""
    raw = span / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    step = nice_step(hi - lo, count)
    first = math.floor(lo / step) * step
    values, value = [], first
    while value <= hi + step * 1e-9:
        values.append(round(value, 10))
        value += step
    if values[-1] < hi:
        values.append(round(values[-1] + step, 10))
    return values


def loss_chart(step_losses: list[tuple[float, float]], epoch_losses: list[float], steps_per_epoch: float | None,
               width: int = 640, height: int = 260) -> LossChart | None:
    """Loss per optimizer step (a line) with each epoch's mean loss (dots) over it. Without a
    step history (older jobs), the epoch means alone, one per epoch."""
    left, top, right, bottom = 56, 16, 16, 36
    if step_losses:
        points = [(float(s), float(v)) for s, v in step_losses]
        x_unit = "step"
        epoch_points = [((i + 1) * steps_per_epoch, v) for i, v in enumerate(epoch_losses)] if steps_per_epoch else []
    elif epoch_losses:
        points = [(float(i + 1), float(v)) for i, v in enumerate(epoch_losses)]
        x_unit, epoch_points = "epoch", list(points)
    else:
        return None
    xs = [x for x, _ in points + epoch_points]
    ys = [y for _, y in points + epoch_points]
    # The x axis runs from 0 to the last step (or epoch), with whole-number ticks.
    x_values = [x for x in ticks(0.0, max(xs), 6) if x <= max(xs) and x == int(x)]
    # The y axis spans the losses seen, not 0…max: a curve that falls from 2.7 to 2.3 should
    # be seen to fall.
    y_values = ticks(min(ys), max(ys), 4)
    x0, x1, y0, y1 = 0.0, max(xs), y_values[0], y_values[-1]
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return round(left + (x - x0) / (x1 - x0) * plot_w, 1)

    def py(y: float) -> float:
        return round(top + (1 - (y - y0) / (y1 - y0)) * plot_h, 1)

    path = "M" + " L".join(f"{px(x)},{py(y)}" for x, y in points)
    dots = [(px(x), py(y), f"{i + 1}: {y:.4f}") for i, (x, y) in enumerate(epoch_points)]
    return LossChart(width, height, left, top, right, bottom, path, dots,
                     [Tick(px(v), f"{v:g}") for v in x_values], [Tick(py(v), f"{v:g}") for v in y_values], x_unit)


@dataclass
class Cell:
    x: int
    y: int
    count: int
    share: float  # of the true label's row
    fill: str
    ink: str  # text colour readable on `fill`
    truth: str
    predicted: str


@dataclass
class Heatmap:
    names: list[str]
    short_names: list[str]
    cell: int
    left: int
    top: int
    width: int
    height: int
    cells: list[Cell] = field(default_factory=list)


def shade(share: float) -> str:
    """White → deep blue as the share grows (a perceptually even ramp is not needed for counts
    this small; a readable one is)."""
    low, high = (247, 251, 255), (8, 69, 148)
    r, g, b = (round(lo + (hi - lo) * share) for lo, hi in zip(low, high))
    return f"#{r:02x}{g:02x}{b:02x}"


def short_name(name: str, limit: int = 12) -> str:
    # East Asian characters are about twice as wide as Latin ones.
    width, out = 0, ""
    for ch in name:
        width += 2 if ord(ch) > 0x2E80 else 1
        if width > limit:
            return out + "…"
        out += ch
    return out


def confusion_heatmap(matrix: list[list[int]], names: list[str]) -> Heatmap | None:
    """`matrix[t][p]`: how many held-out examples of true label t were predicted as p."""
    k = len(names)
    if not matrix or len(matrix) != k or any(len(row) != k for row in matrix):
        return None
    cell = 44 if k <= 8 else 34 if k <= 16 else 24
    short = [short_name(n) for n in names]
    label_px = 8 + 7 * max(sum(2 if ord(c) > 0x2E80 else 1 for c in s) for s in short)
    # Column names are written upwards at 60°: they need sin 60° of their length above the
    # grid and cos 60° of it to the right of their column.
    left, top = label_px + 8, round(label_px * 0.87) + 10
    heatmap = Heatmap(names, short, cell, left, top, left + k * cell + label_px // 2 + 8, top + k * cell + 8)
    for t, row in enumerate(matrix):
        total = sum(row)
        for p, count in enumerate(row):
            share = count / total if total else 0.0
            heatmap.cells.append(Cell(left + p * cell, top + t * cell, count, share, shade(share),
                                      "#ffffff" if share > 0.55 else "#1f2937", names[t], names[p]))
    return heatmap
