"""Chart primitives drawn with OpenCV (matplotlib is not a dependency): colours, round axis ticks,
centred and vertical text, atomic PNG writing. Used by the training curves and the benchmark charts."""

from __future__ import annotations

import math
import os

import cv2
import numpy as np

from detkit.io import atomic_write_bytes

FONT = cv2.FONT_HERSHEY_SIMPLEX
TEXT = (40, 40, 40)
GRID = (225, 225, 225)
# matplotlib's tab10 palette, BGR: distinct for the handful of series a chart shows.
PALETTE = [
    (180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148),
    (75, 86, 140), (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23),
]  # fmt: skip


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Encode a BGR uint8 image as PNG and write it atomically."""
    ok, encoded = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - PNG encoding of a uint8 BGR canvas does not fail
        raise RuntimeError(f"OpenCV could not encode {path} as PNG")
    atomic_write_bytes(path, encoded.tobytes())


def nice_ticks(lo: float, hi: float, target: int = 6, integer: bool = False) -> tuple[np.ndarray, float]:
    """Round tick positions (1, 2, 2.5 or 5 times a power of ten) covering ``[lo, hi]``.

    ``integer`` keeps the step whole, for axes such as epochs where "1.5" means nothing.
    """
    raw = (hi - lo) / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * magnitude >= raw)
    if integer:
        step = max(1.0, float(round(step))) if step >= 1 else 1.0
    start = math.ceil(lo / step - 1e-9) * step
    ticks = np.arange(start, hi + step * 1e-9, step)
    return ticks, step


def format_tick(value: float, step: float) -> str:
    if abs(value) >= 10000 and step >= 1000:
        return f"{value / 1000:g}k"
    exponent = math.floor(math.log10(step) + 1e-9)
    # A step of 2.5 x 10^k needs one digit more than its power of ten.
    extra = 0 if math.isclose(step / 10.0**exponent, round(step / 10.0**exponent)) else 1
    text = f"{value:.{max(0, extra - exponent)}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def put_centered(view: np.ndarray, text: str, center: tuple[int, int], scale: float, thickness: int) -> None:
    (text_w, text_h), _ = cv2.getTextSize(text, FONT, scale, thickness)
    origin = (center[0] - text_w // 2, center[1] + text_h // 2)
    cv2.putText(view, text, origin, FONT, scale, TEXT, thickness, cv2.LINE_AA)


def put_vertical(view: np.ndarray, text: str, center: tuple[int, int]) -> None:
    """Axis label rotated 90 degrees: OpenCV only draws horizontal text, so draw then rotate."""
    (text_w, text_h), baseline = cv2.getTextSize(text, FONT, 0.5, 1)
    patch: np.ndarray = np.full((text_h + baseline + 4, text_w + 4, 3), 255, dtype=np.uint8)
    cv2.putText(patch, text, (2, text_h + 2), FONT, 0.5, TEXT, 1, cv2.LINE_AA)
    patch = cv2.rotate(patch, cv2.ROTATE_90_COUNTERCLOCKWISE)
    h, w = patch.shape[:2]
    y0 = max(0, center[1] - h // 2)
    x0 = max(0, center[0] - w // 2)
    h, w = min(h, view.shape[0] - y0), min(w, view.shape[1] - x0)
    view[y0 : y0 + h, x0 : x0 + w] = np.minimum(view[y0 : y0 + h, x0 : x0 + w], patch[:h, :w])
