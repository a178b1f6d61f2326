"""Detections drawn onto images with OpenCV: boxes, label tags and translucent masks.

Images are ``[H, W, 3]`` uint8 RGB (what the data loaders and ``detkit predict`` handle);
boxes are detkit's ``[D, 4]`` xyxy absolute pixels of that image. Only the file writer converts
to OpenCV's BGR.
"""

from __future__ import annotations

import colorsys
import os
from pathlib import Path

import cv2
import numpy as np

from detkit.errors import DetkitError
from detkit.io import atomic_write_bytes
from detkit.structures import Detections

MASK_ALPHA = 0.45
MASK_THRESH = 0.5
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_GOLDEN_RATIO = 0.618033988749895


def class_color(label: int) -> tuple[int, int, int]:
    """A stable RGB colour per class: hues a golden-ratio step apart stay distinct for any K."""
    hue = (0.05 + label * _GOLDEN_RATIO) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(
    image: np.ndarray, detections: Detections, class_names: list[str], *, score_thresh: float = 0.0
) -> np.ndarray:
    """A copy of ``image`` with every detection scoring at least ``score_thresh`` drawn on it.

    image: ``[H, W, 3]`` uint8 RGB. detections: boxes xyxy in this image's pixels; masks, when
    present, ``[D, H, W]`` probabilities in the same frame (shown where >= 0.5).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be [H, W, 3] uint8 RGB; got {image.shape} {image.dtype}")
    canvas = np.ascontiguousarray(image).copy()
    keep = detections.scores >= score_thresh
    dets = detections.filter(keep).to("cpu")
    if len(dets) == 0:
        return canvas
    boxes = dets.boxes.detach().numpy()
    scores = dets.scores.detach().numpy()
    labels = dets.labels.detach().numpy()
    # Lowest score first, so the most confident detection ends up on top where they overlap.
    order = np.argsort(scores, kind="stable")
    if dets.masks is not None:
        _blend_masks(canvas, dets.masks.detach().numpy(), labels, order)
    scale = _text_scale(canvas.shape[0], canvas.shape[1])
    for i in order:
        color = class_color(int(labels[i]))
        name = class_names[labels[i]] if 0 <= labels[i] < len(class_names) else str(int(labels[i]))
        _draw_box(canvas, boxes[i], color, scale)
        _draw_tag(canvas, boxes[i], f"{name} {scores[i]:.2f}", color, scale)
    return canvas


def _blend_masks(canvas: np.ndarray, masks: np.ndarray, labels: np.ndarray, order: np.ndarray) -> None:
    """Alpha-blend each mask ``[D, H, W]`` in its class colour, in place."""
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.shape[1:] != canvas.shape[:2]:
        raise ValueError(f"masks {masks.shape[1:]} must match the image size {canvas.shape[:2]}")
    for i in order:
        region = masks[i] >= MASK_THRESH
        if not region.any():
            continue
        color = np.array(class_color(int(labels[i])), dtype=np.float32)
        blended = (1.0 - MASK_ALPHA) * canvas[region].astype(np.float32) + MASK_ALPHA * color
        canvas[region] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        outline, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, outline, -1, tuple(int(c) for c in color), 1, cv2.LINE_AA)


def _text_scale(height: int, width: int) -> float:
    """Font scale that keeps tags legible on thumbnails and modest on large photos."""
    return float(np.clip(min(height, width) / 900.0, 0.35, 1.2))


def _box_pixels(box: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    height, width = shape[:2]
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    return (
        int(np.clip(x1, 0, width - 1)),
        int(np.clip(y1, 0, height - 1)),
        int(np.clip(x2, 0, width - 1)),
        int(np.clip(y2, 0, height - 1)),
    )


def _draw_box(canvas: np.ndarray, box: np.ndarray, color: tuple[int, int, int], scale: float) -> None:
    x1, y1, x2, y2 = _box_pixels(box, canvas.shape)
    thickness = max(1, int(round(2 * scale)))
    cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)


def _draw_tag(canvas: np.ndarray, box: np.ndarray, text: str, color: tuple[int, int, int], scale: float) -> None:
    """A filled tag above the box (inside it when the box touches the top edge)."""
    x1, y1, _, _ = _box_pixels(box, canvas.shape)
    thickness = max(1, int(round(scale * 1.5)))
    (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    pad = max(2, int(round(3 * scale)))
    tag_h = text_h + baseline + 2 * pad
    top = y1 - tag_h if y1 - tag_h >= 0 else y1
    left = int(np.clip(x1, 0, max(0, canvas.shape[1] - text_w - 2 * pad)))
    cv2.rectangle(canvas, (left, top), (left + text_w + 2 * pad, top + tag_h), color, cv2.FILLED)
    origin = (left + pad, top + pad + text_h)
    cv2.putText(canvas, text, origin, _FONT, scale, _text_color(color), thickness, cv2.LINE_AA)


def _text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light tags, white on dark ones (ITU-R BT.601 luma)."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def save_image_rgb(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Encode an ``[H, W, 3]`` uint8 RGB image by the file suffix (.png, .jpg, ...) and write it atomically."""
    suffix = Path(path).suffix.lower()
    if not suffix:
        raise DetkitError(f"{path}: no file suffix to pick an image format from; use .png or .jpg")
    try:
        ok, encoded = cv2.imencode(suffix, cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    except cv2.error:
        ok = False
    if not ok:
        raise DetkitError(f"{path}: OpenCV cannot write '{suffix}' images; use .png or .jpg")
    atomic_write_bytes(path, encoded.tobytes())
