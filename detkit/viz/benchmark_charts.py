"""The benchmark's two charts, drawn with OpenCV.

* ``render_stage_chart``: one horizontal bar per model, stacked by stage. Left panel: milliseconds
  per image on one linear axis (R-CNN's seconds next to YOLO's milliseconds is the story); right
  panel: the same bars as shares of 100%, where the composition of the fast models stays readable.
* ``render_accuracy_chart``: AP against milliseconds per image (log axis, spans of 100x are usual),
  one labelled point per model with an AP; models without one (random weights) are listed below.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np

from detkit.viz.plotting import FONT, GRID, PALETTE, TEXT, format_tick, nice_ticks, put_centered

WIDTH = 1280
_ROW, _BAR = 44, 26
_LABEL_W, _GAP, _RIGHT = 170, 60, 30
_TOP, _AXIS_H, _LEGEND_H = 60, 50, 40


class ChartRow(Protocol):
    """What a chart reads of one benchmark result (``engine.benchmark.report.PipelineResult``); read
    only, so a property such as ``PipelineResult.ms_per_image`` fits."""

    @property
    def name(self) -> str: ...

    @property
    def stages_ms(self) -> dict[str, float]: ...

    @property
    def ms_per_image(self) -> float: ...

    @property
    def ap(self) -> float | None: ...


def render_stage_chart(results: Sequence[ChartRow], stages: Sequence[str], title: str) -> np.ndarray:
    """``[H, WIDTH, 3]`` BGR uint8, one stacked bar of ``stages`` (in that order) per result; H grows
    with the number of results."""
    height = _TOP + _ROW * len(results) + _AXIS_H + _LEGEND_H
    canvas = np.full((height, WIDTH, 3), 255, dtype=np.uint8)
    put_centered(canvas, title, (WIDTH // 2, 22), 0.65, 2)
    panel_w = (WIDTH - _LABEL_W - _GAP - _RIGHT) // 2
    absolute = (_LABEL_W, _LABEL_W + panel_w)
    shares = (_LABEL_W + panel_w + _GAP, _LABEL_W + 2 * panel_w + _GAP)
    longest = max((sum(r.stages_ms.values()) for r in results), default=1.0) or 1.0
    ticks, step = nice_ticks(0.0, longest * 1.05)
    scale_ms = float(ticks[-1]) if ticks[-1] >= longest else longest
    bottom = _TOP + _ROW * len(results)
    put_centered(canvas, "ms per image", ((absolute[0] + absolute[1]) // 2, _TOP - 14), 0.5, 1)
    put_centered(canvas, "share of the image's time", ((shares[0] + shares[1]) // 2, _TOP - 14), 0.5, 1)
    _vertical_grid(canvas, absolute, bottom, [(t / scale_ms, format_tick(t, step)) for t in ticks])
    _vertical_grid(canvas, shares, bottom, [(f, f"{round(100 * f)}%") for f in (0.0, 0.25, 0.5, 0.75, 1.0)])
    for row, result in enumerate(results):
        y = _TOP + row * _ROW + (_ROW - _BAR) // 2
        cv2.putText(
            canvas, _clip_text(result.name, _LABEL_W - 12, 0.5), (8, y + _BAR - 7), FONT, 0.5, TEXT, 1, cv2.LINE_AA
        )
        total = sum(result.stages_ms.values())
        _stacked_bar(canvas, absolute, y, [result.stages_ms.get(s, 0.0) / scale_ms for s in stages])
        _stacked_bar(canvas, shares, y, [result.stages_ms.get(s, 0.0) / total if total > 0 else 0.0 for s in stages])
        end = absolute[0] + int(round(total / scale_ms * (absolute[1] - absolute[0])))
        cv2.putText(
            canvas, f"{total:.0f}", (min(end + 6, absolute[1] - 40), y + _BAR - 7), FONT, 0.45, TEXT, 1, cv2.LINE_AA
        )
    _legend(canvas, stages, height - _LEGEND_H + 12)
    return canvas


def render_accuracy_chart(results: Sequence[ChartRow], title: str) -> np.ndarray:
    """``[560, WIDTH, 3]`` BGR uint8."""
    height = 560
    canvas = np.full((height, WIDTH, 3), 255, dtype=np.uint8)
    put_centered(canvas, title, (WIDTH // 2, 22), 0.65, 2)
    box = (90, 60, WIDTH - 40, height - 110)
    left, top, right, bottom = box
    cv2.rectangle(canvas, (left, top), (right, bottom), TEXT, 1)
    scored = [(r, r.ap) for r in results if r.ap is not None]
    unscored = [r.name for r in results if r.ap is None]
    if unscored:
        text = "no AP (random weights or no --data): " + ", ".join(unscored)
        cv2.putText(canvas, _clip_text(text, WIDTH - 100, 0.45), (left, height - 20), FONT, 0.45, TEXT, 1, cv2.LINE_AA)
    put_centered(canvas, "ms per image (log scale)", ((left + right) // 2, bottom + 50), 0.5, 1)
    cv2.putText(canvas, "AP", (20, (top + bottom) // 2), FONT, 0.55, TEXT, 1, cv2.LINE_AA)
    if not scored:
        put_centered(
            canvas,
            "AP needs trained weights (--weights) and annotated data (--data)",
            ((left + right) // 2, (top + bottom) // 2),
            0.6,
            1,
        )
        return canvas
    low_ms, high_ms = _log_range([r.ms_per_image for r, _ in scored])
    top_ap = min(1.0, max(ap for _, ap in scored) * 1.15 + 0.02)

    def x_of(ms: float) -> float:
        return left + (math.log10(ms) - low_ms) / (high_ms - low_ms) * (right - left)

    def y_of(ap: float) -> float:
        return bottom - ap / top_ap * (bottom - top)

    for exponent in range(math.floor(low_ms), math.ceil(high_ms) + 1):
        for mantissa in (1, 2, 5):
            ms = mantissa * 10.0**exponent
            if low_ms <= math.log10(ms) <= high_ms:
                px = int(round(x_of(ms)))
                cv2.line(canvas, (px, top + 1), (px, bottom - 1), GRID, 1)
                put_centered(canvas, f"{ms:g}", (px, bottom + 20), 0.42, 1)
    ticks, step = nice_ticks(0.0, top_ap)
    for ap in ticks:
        py = int(round(y_of(ap)))
        cv2.line(canvas, (left + 1, py), (right - 1, py), GRID, 1)
        cv2.putText(canvas, format_tick(ap, step), (left - 50, py + 5), FONT, 0.42, TEXT, 1, cv2.LINE_AA)
    cv2.rectangle(canvas, (left, top), (right, bottom), TEXT, 1)
    for index, (result, result_ap) in enumerate(scored):
        point = (int(round(x_of(result.ms_per_image))), int(round(y_of(result_ap))))
        color = PALETTE[index % len(PALETTE)]
        cv2.circle(canvas, point, 7, color, cv2.FILLED, cv2.LINE_AA)
        label = f"{result.name}  AP {result_ap:.3f}"
        (text_w, _), _ = cv2.getTextSize(label, FONT, 0.45, 1)
        x = point[0] + 10 if point[0] + 10 + text_w < right else point[0] - 10 - text_w
        cv2.putText(canvas, label, (x, point[1] - 8), FONT, 0.45, TEXT, 1, cv2.LINE_AA)
    return canvas


def _stacked_bar(canvas: np.ndarray, span: tuple[int, int], y: int, fractions: list[float]) -> None:
    x = float(span[0])
    for index, fraction in enumerate(fractions):
        width = fraction * (span[1] - span[0])
        if width > 0:
            cv2.rectangle(
                canvas, (int(round(x)), y), (int(round(x + width)), y + _BAR), PALETTE[index % len(PALETTE)], cv2.FILLED
            )
        x += width


def _vertical_grid(canvas: np.ndarray, span: tuple[int, int], bottom: int, ticks: list[tuple[float, str]]) -> None:
    for fraction, label in ticks:
        px = span[0] + int(round(fraction * (span[1] - span[0])))
        cv2.line(canvas, (px, _TOP - 4), (px, bottom), GRID, 1)
        put_centered(canvas, label, (px, bottom + 16), 0.42, 1)
    cv2.line(canvas, (span[0], _TOP - 4), (span[0], bottom), TEXT, 1)


def _legend(canvas: np.ndarray, stages: Sequence[str], y: int) -> None:
    x = _LABEL_W
    for index, name in enumerate(stages):
        cv2.rectangle(canvas, (x, y - 10), (x + 18, y + 4), PALETTE[index % len(PALETTE)], cv2.FILLED)
        cv2.putText(canvas, name, (x + 24, y + 3), FONT, 0.45, TEXT, 1, cv2.LINE_AA)
        x += 24 + cv2.getTextSize(name, FONT, 0.45, 1)[0][0] + 22


def _log_range(values: list[float]) -> tuple[float, float]:
    """log10 bounds with a margin, at least one decade wide."""
    low, high = math.log10(min(values)), math.log10(max(values))
    middle, half = (low + high) / 2, max((high - low) / 2 + 0.15, 0.5)
    return middle - half, middle + half


def _clip_text(text: str, max_width: int, scale: float) -> str:
    while len(text) > 4 and cv2.getTextSize(text, FONT, scale, 1)[0][0] > max_width:
        text = text[:-2]
    return text
