"""Training curves drawn with OpenCV (matplotlib is not a dependency).

Input is the training metrics log, one dict per JSON line: training steps such as
``{"epoch": 1, "iter": 120, "lr": 0.01, "loss": 1.2, "loss_rpn_cls": 0.3, ...}`` and validations
such as ``{"epoch": 1, "val": {"AP": 0.2, "AP50": 0.5}}`` (a ``val`` may also nest one dict per
IoU type, ``{"bbox": {...}, "segm": {...}}``). The PNG has two panels: every ``loss*`` key
against iteration (EMA-smoothed, raw values faint behind), and AP / AP50 against epoch.
Non-finite values (and AP = -1, pycocotools' "no ground truth") are skipped, so a diverged step
leaves a gap in the data, not a broken axis.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import cv2
import numpy as np

from detkit.viz.plotting import (
    FONT,
    GRID,
    PALETTE,
    TEXT,
    format_tick,
    nice_ticks,
    put_centered,
    put_vertical,
    write_png,
)

PANEL_SIZE = (480, 640)  # (H, W) of each of the two panels
TITLE_HEIGHT = 44
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 72, 20, 34, 52
VAL_KEYS = ("AP", "AP50")

Box = tuple[int, int, int, int]  # (left, top, right, bottom) of the plot area, pixels
Span = tuple[float, float]  # (low, high) of an axis, data units


@dataclass
class _Series:
    name: str
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)


@dataclass
class _Panel:
    title: str
    x_label: str
    y_label: str
    series: list[_Series]
    smooth: bool
    empty_text: str


def plot_training_curves(
    records: Sequence[dict[str, Any]], path: str | os.PathLike[str], *, title: str = "detkit training"
) -> None:
    """Draw loss and validation-AP curves from metrics-log records into a PNG at ``path`` (atomic)."""
    write_png(path, render_training_curves(records, title=title))


def render_training_curves(records: Sequence[dict[str, Any]], *, title: str = "detkit training") -> np.ndarray:
    """The curves as a BGR uint8 image of shape ``[TITLE_HEIGHT + 480, 2 * 640, 3]``."""
    records = [r for r in records if isinstance(r, dict)]
    panels = [_loss_panel(records), _val_panel(records)]
    height, width = PANEL_SIZE
    canvas = np.full((TITLE_HEIGHT + height, 2 * width, 3), 255, dtype=np.uint8)
    put_centered(canvas, title, (width, TITLE_HEIGHT // 2 + 8), 0.8, 2)
    for i, panel in enumerate(panels):
        view = canvas[TITLE_HEIGHT:, i * width : (i + 1) * width]
        _draw_panel(view, panel)
    return canvas


# ----------------------------------------------------------------------------- series


def _finite(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _loss_panel(records: list[dict[str, Any]]) -> _Panel:
    steps = [r for r in records if "val" not in r and any(k.startswith("loss") for k in r)]
    xs, x_label = _training_x(steps)
    keys = sorted({k for r in steps for k in r if k.startswith("loss")}, key=lambda k: (k != "loss", k))
    series = []
    for key in keys:
        s = _Series(key)
        for x, record in zip(xs, steps):
            if _finite(record.get(key)):
                s.xs.append(x)
                s.ys.append(float(record[key]))
        if s.xs:
            series.append(s)
    return _Panel("training losses", x_label, "loss", series, smooth=True, empty_text="no training losses logged")


def _training_x(steps: list[dict[str, Any]]) -> tuple[list[float], str]:
    """Iteration numbers when they are logged and never go back; else the step's position in the log."""
    iters: list[Any] = [r.get("iter") for r in steps]  # checked to be finite numbers before use
    if iters and all(_finite(i) for i in iters) and all(a <= b for a, b in zip(iters, iters[1:])):
        return [float(i) for i in iters], "iteration"
    # An iteration counter that restarts every epoch would fold the curve back on itself.
    return [float(i + 1) for i in range(len(steps))], "logged step"


def _val_panel(records: list[dict[str, Any]]) -> _Panel:
    validations = [r for r in records if isinstance(r.get("val"), dict)]
    by_name: dict[str, _Series] = {}
    for position, record in enumerate(validations):
        x = float(record["epoch"]) if _finite(record.get("epoch")) else float(position + 1)
        for prefix, metrics in _val_groups(record["val"]):
            for key in VAL_KEYS:
                # pycocotools reports -1 for "no ground truth": a sentinel, not an AP to plot.
                if _finite(metrics.get(key)) and metrics[key] >= 0:
                    s = by_name.setdefault(prefix + key, _Series(prefix + key))
                    s.xs.append(x)
                    s.ys.append(float(metrics[key]))
    return _Panel("validation", "epoch", "AP", list(by_name.values()), smooth=False, empty_text="no validation logged")


def _val_groups(val: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    nested = [(f"{name} ", metrics) for name, metrics in val.items() if isinstance(metrics, dict)]
    return [("", val)] + nested


def _ema(values: list[float]) -> list[float]:
    """Bias-corrected exponential moving average; heavier for long logs, none for a handful of points."""
    weight = float(np.clip(1.0 - 10.0 / max(len(values), 1), 0.0, 0.95))
    smoothed, average = [], 0.0
    for i, value in enumerate(values):
        average = weight * average + (1.0 - weight) * value
        smoothed.append(average / (1.0 - weight ** (i + 1)) if weight > 0 else value)
    return smoothed


# ----------------------------------------------------------------------------- drawing


def _draw_panel(view: np.ndarray, panel: _Panel) -> None:
    height, width = view.shape[:2]
    left, top = _MARGIN_LEFT, _MARGIN_TOP
    right, bottom = width - _MARGIN_RIGHT, height - _MARGIN_BOTTOM
    put_centered(view, panel.title, ((left + right) // 2, top - 12), 0.6, 1)
    cv2.rectangle(view, (left, top), (right, bottom), TEXT, 1)
    if not panel.series:
        put_centered(view, panel.empty_text, ((left + right) // 2, (top + bottom) // 2), 0.55, 1)
        return
    # Marked points (validations) get a margin so the first and last markers are not cut in half.
    x_range = _padded_range([x for s in panel.series for x in s.xs], pad_fraction=0.0 if panel.smooth else 0.03)
    y_range = _padded_range([y for s in panel.series for y in s.ys], pad_fraction=0.05)
    box = (left, top, right, bottom)
    _draw_axes(view, box, x_range, y_range, panel)
    drawn = []
    for index, series in enumerate(panel.series):
        color = PALETTE[index % len(PALETTE)]
        if panel.smooth and len(series.ys) > 10:
            faint = tuple(int(255 - 0.35 * (255 - c)) for c in color)
            drawn.append(_draw_line(view, box, x_range, y_range, series.xs, series.ys, faint, 1))
            _draw_line(view, box, x_range, y_range, series.xs, _ema(series.ys), color, 2)
        else:
            drawn.append(_draw_line(view, box, x_range, y_range, series.xs, series.ys, color, 2, markers=True))
    _draw_legend(view, box, [s.name for s in panel.series], np.concatenate(drawn))


def _padded_range(values: list[float], pad_fraction: float) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        # A single point (or a flat line) still needs a span to sit in the middle of.
        spread = 1.0 if float(lo).is_integer() else max(abs(lo) * 0.1, 1e-3)
        return lo - spread, hi + spread
    pad = (hi - lo) * pad_fraction
    return lo - pad, hi + pad


def _to_pixel(box: Box, x_range: Span, y_range: Span, x: float, y: float) -> tuple[int, int]:
    left, top, right, bottom = box
    px = left + (x - x_range[0]) / (x_range[1] - x_range[0]) * (right - left)
    py = bottom - (y - y_range[0]) / (y_range[1] - y_range[0]) * (bottom - top)
    return int(round(px)), int(round(py))


def _draw_axes(view: np.ndarray, box: Box, x_range: Span, y_range: Span, panel: _Panel) -> None:
    left, top, right, bottom = box
    integer_x = all(float(x).is_integer() for s in panel.series for x in s.xs)
    x_ticks, x_step = nice_ticks(*x_range, integer=integer_x)
    y_ticks, y_step = nice_ticks(*y_range)
    for x in x_ticks:
        px, _ = _to_pixel(box, x_range, y_range, x, y_range[0])
        cv2.line(view, (px, top + 1), (px, bottom - 1), GRID, 1)
        cv2.line(view, (px, bottom), (px, bottom + 5), TEXT, 1)
        put_centered(view, format_tick(x, x_step), (px, bottom + 20), 0.42, 1)
    for y in y_ticks:
        _, py = _to_pixel(box, x_range, y_range, x_range[0], y)
        cv2.line(view, (left + 1, py), (right - 1, py), GRID, 1)
        cv2.line(view, (left - 5, py), (left, py), TEXT, 1)
        label = format_tick(y, y_step)
        (text_w, text_h), _ = cv2.getTextSize(label, FONT, 0.42, 1)
        cv2.putText(view, label, (left - 8 - text_w, py + text_h // 2), FONT, 0.42, TEXT, 1, cv2.LINE_AA)
    cv2.rectangle(view, (left, top), (right, bottom), TEXT, 1)
    put_centered(view, panel.x_label, ((left + right) // 2, bottom + 42), 0.5, 1)
    put_vertical(view, panel.y_label, (14, (top + bottom) // 2))


def _draw_line(
    view: np.ndarray,
    box: Box,
    x_range: Span,
    y_range: Span,
    xs: list[float],
    ys: list[float],
    color: tuple[int, ...],
    thickness: int,
    markers: bool = False,
) -> np.ndarray:
    """Draw one series; return its ``[P, 2]`` pixel positions."""
    points = np.array([_to_pixel(box, x_range, y_range, x, y) for x, y in zip(xs, ys)], dtype=np.int32)
    if len(points) > 1:
        cv2.polylines(view, [points.reshape(-1, 1, 2)], False, color, thickness, cv2.LINE_AA)
    if markers or len(points) == 1:
        for point in points:
            cv2.circle(view, (int(point[0]), int(point[1])), 4, color, cv2.FILLED, cv2.LINE_AA)
    return points


def _draw_legend(view: np.ndarray, box: Box, names: list[str], points: np.ndarray) -> None:
    """Legend in the plot corner that hides the fewest data points (``points``: ``[P, 2]`` pixels)."""
    scale, row = 0.45, 20
    text_w = max(cv2.getTextSize(name, FONT, scale, 1)[0][0] for name in names)
    legend_w, legend_h = text_w + 40, row * len(names) + 6
    x0, y0 = _legend_corner(box, legend_w, legend_h, points)
    cv2.rectangle(view, (x0, y0), (x0 + legend_w, y0 + legend_h), (255, 255, 255), cv2.FILLED)
    cv2.rectangle(view, (x0, y0), (x0 + legend_w, y0 + legend_h), (160, 160, 160), 1)
    for i, name in enumerate(names):
        y = y0 + row * i + row // 2 + 4
        color = PALETTE[i % len(PALETTE)]
        cv2.line(view, (x0 + 6, y), (x0 + 30, y), color, 2, cv2.LINE_AA)
        cv2.putText(view, name, (x0 + 36, y + 5), FONT, scale, TEXT, 1, cv2.LINE_AA)


def _legend_corner(box: Box, legend_w: int, legend_h: int, points: np.ndarray) -> tuple[int, int]:
    left, top, right, bottom = box
    corners = [  # preference order on ties: top right first, as readers expect
        (right - 8 - legend_w, top + 8),
        (left + 8, top + 8),
        (right - 8 - legend_w, bottom - 8 - legend_h),
        (left + 8, bottom - 8 - legend_h),
    ]

    def hidden(corner: tuple[int, int]) -> int:
        x0, y0 = corner
        inside = (points[:, 0] >= x0) & (points[:, 0] <= x0 + legend_w)
        inside &= (points[:, 1] >= y0) & (points[:, 1] <= y0 + legend_h)
        return int(inside.sum())

    return min(corners, key=hidden)
