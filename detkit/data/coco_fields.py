"""The field rules of COCO ``instances`` records, shared by the dataset, the checker and the converters.

Boxes here are plain tuples: COCO ``[x, y, w, h]`` in, ``(x1, y1, x2, y2)`` absolute pixels of the
image the record belongs to out (in the frame of the json's ``width``/``height``). One place says
what a usable record is, so ``CocoDetection`` (which drops or repairs), ``detkit data check``
(which reports) and ``--fix`` (which rewrites) can never disagree.
"""

from __future__ import annotations

import math
from numbers import Real
from pathlib import Path
from typing import Any

from detkit.errors import DataError
from detkit.io import read_json

REQUIRED_KEYS = ("images", "annotations", "categories")
# Boxes narrower or lower than this after clipping carry no trainable signal; every consumer drops them.
MIN_BOX_SIDE = 1.0
# Polygon points beyond this (pixels) are garbage, and slow pycocotools' rasteriser to a crawl.
MAX_POLYGON_COORDINATE = 1e5

Box = tuple[float, float, float, float]


def read_coco_json(path: Path) -> dict[str, Any]:
    """Parse a COCO instances json and check its top level: an object with the three record lists."""
    dataset = read_json(path, what="annotation file", missing_fix="pass the path to a COCO instances json")
    if not isinstance(dataset, dict):
        raise DataError(
            f"{path}: top level is not a JSON object; a COCO instances file is an object with {_keys_text()}"
        )
    for key in REQUIRED_KEYS:
        if not isinstance(dataset.get(key), list):
            problem = "has no" if key not in dataset else "has a non-list"
            raise DataError(f"{path}: {problem} '{key}'; a COCO instances file needs {_keys_text()} lists")
    return dataset


def _keys_text() -> str:
    return ", ".join(f"'{key}'" for key in REQUIRED_KEYS)


def is_int(value: Any) -> bool:
    """A JSON integer (``True`` is an int to Python, not to COCO)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite JSON number (Python's json reads ``NaN`` and ``Infinity`` literals; COCO has neither)."""
    if not isinstance(value, Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float (JSON allows 4300 digits)
        return False


def crowd_flag(value: Any) -> int | None:
    """``iscrowd`` as 0 or 1 (absent is 0; JSON true/false are taken); None for anything else: the
    string "no" is truthy, so reading any true-ish value as a crowd would turn objects into ignore regions."""
    if value is None or value is False or value is True:
        return int(bool(value))
    return int(value) if is_number(value) and value in (0, 1) else None


def is_id(value: Any) -> bool:
    """A usable record id: a JSON integer in ``[0, 2**63)``. The evaluators index ids as int64, and a
    negative id is no COCO tool's convention."""
    return is_int(value) and 0 <= value < 2**63


def is_positive_size(value: Any) -> bool:
    """A usable image ``width`` or ``height``."""
    return is_number(value) and value > 0


def xywh_to_xyxy(bbox: Any) -> Box | None:
    """COCO ``[x, y, w, h]`` -> ``(x1, y1, x2, y2)``; None when it is not 4 finite numbers with w, h >= 0."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(is_number(v) for v in bbox):
        return None
    x, y, w, h = (float(v) for v in bbox)
    if w < 0 or h < 0:
        return None
    x2, y2 = x + w, y + h
    # Two finite numbers can still add up to inf (1e308 + 1e308).
    if not (math.isfinite(x2) and math.isfinite(y2)):
        return None
    return (x, y, x2, y2)


def xyxy_to_xywh(box: Box) -> list[float]:
    """``(x1, y1, x2, y2)`` -> COCO ``[x, y, w, h]``."""
    x1, y1, x2, y2 = box
    return [x1, y1, x2 - x1, y2 - y1]


def clip_box(box: Box, width: Any, height: Any) -> Box:
    """Clip to ``[0, W] x [0, H]``; a side with an unknown size is clipped at 0 only."""
    x_max = float(width) if is_positive_size(width) else math.inf
    y_max = float(height) if is_positive_size(height) else math.inf
    x1, y1, x2, y2 = box
    return (min(max(x1, 0.0), x_max), min(max(y1, 0.0), y_max), min(max(x2, 0.0), x_max), min(max(y2, 0.0), y_max))


def is_degenerate(box: Box) -> bool:
    """Under ``MIN_BOX_SIDE`` px wide or high (apply to a clipped box)."""
    return box[2] - box[0] < MIN_BOX_SIDE or box[3] - box[1] < MIN_BOX_SIDE


def usable_segmentation(segmentation: Any) -> Any:
    """The segmentation if pycocotools can decode it (bad polygons removed), else None.

    Polygons need >= 3 points (pycocotools reads a 4-number "polygon" as a bbox) and numeric
    coordinates, finite and within ``MAX_POLYGON_COORDINATE``: pycocotools rasterises the outline
    point by point in C, so a NaN makes it allocate until the process is killed and 1e9 takes
    minutes. An RLE needs a positive ``[H, W]`` size and string counts, or integer counts summing
    to ``H * W``.
    """
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if _is_polygon(p)]
        return polygons or None
    if isinstance(segmentation, dict) and is_rle(segmentation):
        return segmentation
    return None


def is_rle(segmentation: Any) -> bool:
    """A COCO run-length encoding: ``{"size": [H, W], "counts": str | list[int]}`` that pycocotools can decode."""
    if not isinstance(segmentation, dict):
        return False
    size, counts = segmentation.get("size"), segmentation.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(is_int(s) and s > 0 for s in size)):
        return False
    if isinstance(counts, str):
        return bool(counts)
    return isinstance(counts, list) and all(is_int(c) and c >= 0 for c in counts) and sum(counts) == size[0] * size[1]


def rle_decodes(rle: dict[str, Any]) -> bool:
    """Whether pycocotools decodes an RLE that ``is_rle`` accepted (compressed string or list counts):
    a string of the right shape can still hold garbage, which Mask R-CNN training would stop on."""
    from pycocotools import mask as mask_utils

    try:
        if isinstance(rle["counts"], list):
            rle = mask_utils.frPyObjects(rle, *rle["size"])
        mask_utils.decode(rle)
    except (TypeError, ValueError, KeyError, OverflowError):
        return False
    return True


def _is_polygon(points: Any) -> bool:
    if not (isinstance(points, list) and len(points) >= 6 and len(points) % 2 == 0):
        return False
    # sum/min/max run in C: a per-coordinate Python loop would add seconds on COCO-sized files.
    # sum raises on anything but numbers and carries a NaN or inf through; min/max bound the rest.
    try:
        total, low, high = sum(points), min(points), max(points)
    except TypeError:
        return False
    return is_number(total) and -MAX_POLYGON_COORDINATE <= low and high <= MAX_POLYGON_COORDINATE
