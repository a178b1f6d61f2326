"""Selective search region proposals (Uijlings et al., IJCV 2013) from OpenCV contrib's ximgproc.

    image: ``uint8 [H, W, 3]`` RGB array
    -> proposals: ``float32 [P, 4]`` xyxy pixels of that image, P <= topk, in selective search's
       rank order (hierarchy level, lightly randomised as in the paper section 4.2, so the first
       boxes are the most object-like)

The "fast" mode is the paper's Selective Search Fast (2 colour spaces x 2 segmentation thresholds
x 2 similarity combinations); "quality" diversifies over more colour spaces, thresholds and
similarities: ~3x the boxes at ~4x the time.

OpenCV draws the ranking's random factors from the C library's ``rand()``, unseeded, so the same
image came back in a different order on every call (and ``topk`` kept a different subset). Seeding
``rand()`` before each call makes the output a function of the image and the parameters, which is
what a cache keyed by them needs. Where libc cannot be reached (Windows) the order may still vary.
"""

from __future__ import annotations

import ctypes
import functools

import cv2
import numpy as np

from detkit.config import ProposalConfig
from detkit.errors import ConfigError

MODES = ("fast", "quality")
RANK_SEED = 0


def selective_search(image: np.ndarray, cfg: ProposalConfig) -> np.ndarray:
    """Proposals for one RGB image; duplicates and boxes under ``cfg.min_box_size`` removed."""
    _check(cfg)
    scale = _shrink_factor(image.shape[:2], cfg.max_image_size)
    work = image if scale == 1.0 else _resize(image, scale)
    segmenter = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    segmenter.setBaseImage(cv2.cvtColor(work, cv2.COLOR_RGB2BGR))
    if cfg.mode == "fast":
        segmenter.switchToSelectiveSearchFast()
    else:
        segmenter.switchToSelectiveSearchQuality()
    _seed_c_rand(RANK_SEED)
    rects = segmenter.process()  # int32 [P, 4] (x, y, w, h) in the working image
    boxes = _unique_in_order(_xywh_to_xyxy(np.asarray(rects, dtype=np.float32).reshape(-1, 4)))
    boxes = boxes / scale
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = boxes[(widths >= cfg.min_box_size) & (heights >= cfg.min_box_size)]
    return np.ascontiguousarray(boxes[: cfg.topk], dtype=np.float32)


def _seed_c_rand(seed: int) -> None:
    libc = _libc()
    if libc is not None:
        libc.srand(seed)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None)  # the process's own symbols: the libc OpenCV calls rand() from
    except (OSError, TypeError):
        return None


def _check(cfg: ProposalConfig) -> None:
    if cfg.mode not in MODES:
        raise ConfigError(f"model.proposals.mode is {cfg.mode!r}; choose one of {', '.join(MODES)}")
    if cfg.max_image_size < 32:
        raise ConfigError(f"model.proposals.max_image_size is {cfg.max_image_size}; give at least 32 pixels")
    if cfg.topk < 1:
        raise ConfigError(f"model.proposals.topk is {cfg.topk}; keep at least 1 proposal per image")


def _shrink_factor(size: tuple[int, int], max_image_size: int) -> float:
    """Factor (<= 1) that brings the longer side down to ``max_image_size``; small images are kept as they are."""
    return min(1.0, max_image_size / max(size))


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _xywh_to_xyxy(rects: np.ndarray) -> np.ndarray:
    boxes = rects.copy()
    boxes[:, 2:] += boxes[:, :2]
    return boxes


def _unique_in_order(boxes: np.ndarray) -> np.ndarray:
    """Drop repeated boxes, keeping each one's first (best-ranked) occurrence."""
    _, first = np.unique(boxes, axis=0, return_index=True)
    return boxes[np.sort(first)]
