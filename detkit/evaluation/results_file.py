"""A COCO results json, read once and checked over all its records at once.

A results file is a JSON list of records: ``image_id`` and ``category_id`` (the dataset's ids),
``score``, and ``bbox`` ``[x, y, width, height]`` (absolute pixels) and/or ``segmentation`` (an RLE
``{"size": [H, W], "counts": str}`` or polygons); ``detkit detect`` adds ``file_name``.

COCO val's 5,000 images make files of half a million records, so the checks run on columns of the
parsed records (the set of types in a column, numpy over the numbers) instead of calling a check per
record. Only a file those checks refuse is walked record by record, to name its first bad record
and the fix; the walk also accepts what the column checks are too plain for (numpy scalars from
Python callers, ids past 64 bits).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np

from detkit.errors import DataError, quoted
from detkit.io import read_json

RESULTS_FIX = (
    "write it with `detkit detect` (COCO results format: image_id, category_id, bbox, score) or fix the record"
)
RESULTS_MISSING_FIX = "write one with `detkit detect` or pass the right path"
_NUMBERS = {int, float}  # bool is neither: type(True) is bool


@dataclass(frozen=True)
class ResultColumns:
    """The checked fields of N result records, as columns.

    image_ids / category_ids: each record's ids (Python ints: a dataset's ids may pass 64 bits).
    has_bbox / has_segmentation: ``[N]`` bool. boxes: ``[N, 4]`` float64 xywh when every record has
    a bbox, else None.
    """

    image_ids: list[Any]
    category_ids: list[Any]
    has_bbox: np.ndarray
    has_segmentation: np.ndarray
    boxes: np.ndarray | None

    def __len__(self) -> int:
        return len(self.image_ids)


def read_results_file(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], ResultColumns]:
    """The records of a results json, parsed once, and their checked columns; ``DataError`` names the
    file, the first bad record and the fix."""
    records = read_json(path, what="results file", missing_fix=RESULTS_MISSING_FIX)
    return records, validate_results(records, str(path))


def load_results_json(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The checked records of a results json (see ``read_results_file``)."""
    return read_results_file(path)[0]


def validate_results(records: Any, source: str) -> ResultColumns:
    """Check ``records`` is a list of COCO result records and return their columns; ``DataError``
    names ``source``, the first bad record and the fix."""
    if not isinstance(records, list):
        raise DataError(
            f"{source}: expected a JSON list of result records, got {type(records).__name__}; {RESULTS_FIX}"
        )
    columns = _plain_columns(records)
    if columns is None:  # a bad record, or a valid one of types JSON never gives: the walk tells which
        for index, record in enumerate(records):
            problem = _record_problem(record)
            if problem is not None:
                raise DataError(f"{source}: record {index} {problem}; {RESULTS_FIX}")
        columns = _columns(records)
    return columns


# ----------------------------------------------------------------------------- the column checks


def _plain_columns(records: list[Any]) -> ResultColumns | None:
    """The columns of ``records`` when every record is valid as JSON gives it, else None."""
    if not _types_in(records, {dict}):
        return None
    image_ids = [record.get("image_id") for record in records]
    category_ids = [record.get("category_id") for record in records]
    scores = [record.get("score") for record in records]
    if not (_types_in(image_ids, {int}) and _types_in(category_ids, {int}) and _types_in(scores, _NUMBERS)):
        return None
    if _finite_array(scores) is None:
        return None
    has_bbox = _has(records, "bbox")
    has_segmentation = _has(records, "segmentation")
    if not (has_bbox | has_segmentation).all():
        return None
    boxes = [record["bbox"] for record in records] if has_bbox.all() else [r["bbox"] for r in records if "bbox" in r]
    if not _types_in(boxes, {list}) or not set(map(len, boxes)) <= {4}:
        return None
    if not _types_in(itertools.chain.from_iterable(boxes), _NUMBERS):
        return None
    box_array = _finite_array(boxes)
    if box_array is None or not _plain_rles([r["segmentation"] for r in records if "segmentation" in r]):
        return None
    return ResultColumns(
        image_ids, category_ids, has_bbox, has_segmentation, box_array.reshape(-1, 4) if has_bbox.all() else None
    )


def _plain_rles(segmentations: list[Any]) -> bool:
    """Every segmentation an RLE with str/bytes/list counts and a 2-item size (polygons: the walk)."""
    if not _types_in(segmentations, {dict}):
        return False
    sizes = [s.get("size") for s in segmentations]
    return (
        _types_in((s.get("counts") for s in segmentations), {str, bytes, list})
        and _types_in(sizes, {list, tuple})
        and set(map(len, sizes)) <= {2}
    )


def _types_in(values: Iterable[Any], kinds: set[type]) -> bool:
    """Every value's exact type is one of ``kinds`` (a set over the column: C speed, no call per value)."""
    return set(map(type, values)) <= kinds


def _finite_array(values: list[Any]) -> np.ndarray | None:
    """``values`` (numbers, or lists of numbers of one length) as a flat float64 array, None when one
    is not finite."""
    flat = itertools.chain.from_iterable(values) if values and isinstance(values[0], list) else values
    try:
        array = np.fromiter(flat, dtype=np.float64)
    except OverflowError:  # an integer past float64: the walk says which record
        return None
    return array if np.isfinite(array).all() else None


def _has(records: list[dict[str, Any]], key: str) -> np.ndarray:
    """``[N]`` bool: which records have ``key``."""
    return np.fromiter((key in record for record in records), dtype=bool, count=len(records))


def _columns(records: list[dict[str, Any]]) -> ResultColumns:
    """The columns of valid records of any types (numpy scalars, tuples, ids past 64 bits)."""
    has_bbox = _has(records, "bbox")
    boxes = None
    if has_bbox.all():
        boxes = np.asarray([record["bbox"] for record in records], dtype=np.float64).reshape(len(records), 4)
    return ResultColumns(
        image_ids=[record["image_id"] for record in records],
        category_ids=[record["category_id"] for record in records],
        has_bbox=has_bbox,
        has_segmentation=_has(records, "segmentation"),
        boxes=boxes,
    )


# ----------------------------------------------------------------------------- one record, for the message


def _record_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return f"is a {type(record).__name__}, not an object"
    for key in ("image_id", "category_id"):
        if key not in record:
            return f"has no '{key}'"
        if not _is_int(record[key]):
            return f"has a non-integer '{key}' ({quoted(record[key])})"
    if "score" not in record:
        return "has no 'score'"
    if not _is_finite(record["score"]):
        return f"has a non-numeric or non-finite 'score' ({quoted(record['score'])})"
    if "bbox" not in record and "segmentation" not in record:
        return "has neither 'bbox' nor 'segmentation'"
    if "bbox" in record and not _is_xywh(record["bbox"]):
        return f"has a malformed 'bbox' ({quoted(record['bbox'])}); expected [x, y, width, height]"
    if "segmentation" in record and not _is_segmentation(record["segmentation"]):
        return "has a malformed 'segmentation'; expected an RLE {'size': [H, W], 'counts': str} or polygons"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    if not isinstance(value, Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer past float64
        return False


def _is_xywh(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 4 and all(_is_finite(v) for v in value)


def _is_segmentation(value: Any) -> bool:
    if isinstance(value, list):  # polygons [[x1, y1, x2, y2, ...], ...]
        return all(isinstance(polygon, list) and len(polygon) >= 6 for polygon in value)
    return (
        isinstance(value, dict)
        and isinstance(value.get("counts"), (str, bytes, list))
        and isinstance(value.get("size"), (list, tuple))
        and len(value["size"]) == 2
    )
