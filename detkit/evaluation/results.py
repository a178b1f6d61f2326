"""COCO results json: the one place detkit's detections become COCO records and back.

detkit boxes are ``[D, 4]`` xyxy absolute pixels; a COCO result record holds
``bbox = [x, y, width, height]`` (xywh, absolute pixels), a dataset ``category_id`` (not the
contiguous label) and, for instance segmentation, a compressed RLE ``segmentation`` whose
``counts`` is a str so the record is plain JSON.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from numbers import Real
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from pycocotools import mask as mask_utils

from detkit.errors import DataError, quoted
from detkit.io import atomic_write_json, read_json
from detkit.structures import Detections

MASK_THRESH = 0.5
_FIX = "write it with `detkit detect` (COCO results format: image_id, category_id, bbox, score) or fix the record"


def detections_to_coco_results(
    detections: Sequence[Detections], image_ids: Sequence[int], category_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """One COCO result record per detection.

    detections[i] belongs to dataset image ``image_ids[i]``; its boxes must be in that image's
    original frame. ``category_ids[label]`` maps a contiguous label in ``[0, K)`` to the dataset's
    category id. Boxes keep full float precision: rounding here would move AP for small objects.
    """
    if len(detections) != len(image_ids):
        raise ValueError(f"got {len(detections)} Detections but {len(image_ids)} image ids")
    records: list[dict[str, Any]] = []
    for dets, image_id in zip(detections, image_ids):
        records.extend(_image_results(dets, int(image_id), category_ids))
    return records


def _image_results(dets: Detections, image_id: int, category_ids: Sequence[int]) -> list[dict[str, Any]]:
    if len(dets) == 0:
        return []
    boxes = dets.boxes.detach().to("cpu", torch.float64).numpy()
    scores = dets.scores.detach().to("cpu", torch.float64).numpy()
    labels = dets.labels.detach().cpu().numpy()
    if labels.min() < 0 or labels.max() >= len(category_ids):
        raise ValueError(f"labels must lie in [0, {len(category_ids)}); got {labels.min()}..{labels.max()}")
    rles = masks_to_rles(dets.masks) if dets.masks is not None else None
    records = []
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        record = {
            "image_id": image_id,
            "category_id": int(category_ids[int(labels[i])]),
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": float(scores[i]),
        }
        if rles is not None:
            record["segmentation"] = rles[i]
        records.append(record)
    return records


def masks_to_rles(masks: torch.Tensor) -> list[dict[str, Any]]:
    """Compressed RLEs (``counts`` as str) of ``masks >= 0.5``.

    masks: ``[D, H, W]`` float probabilities in the image frame (``[D, 1, H, W]`` is accepted,
    as torchvision's Mask R-CNN returns it).
    """
    if masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.dim() != 3:
        raise ValueError(f"masks must be [D, H, W]; got shape {tuple(masks.shape)}")
    binary = (masks.detach() >= MASK_THRESH).to(torch.uint8).cpu().numpy()
    # pycocotools reads column-major [H, W, D] buffers; a C-ordered array would be misread.
    rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0)))
    return [_jsonable_rle(rle) for rle in rles]


def _jsonable_rle(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(s) for s in rle["size"]], "counts": counts}


def ground_truth_as_results(coco: Any, *, include_masks: bool = False) -> list[dict[str, Any]]:
    """Every non-crowd annotation of a pycocotools ``COCO`` as a detection with score 1.0.

    A perfect detector: evaluating these must give AP 1.0, which makes them the sanity check of
    the evaluation path. ``include_masks`` adds each annotation's compressed RLE (from
    ``coco.annToRLE``) so segm evaluation can be checked too.
    """
    records = []
    for ann in coco.dataset.get("annotations", []):
        if ann.get("iscrowd", 0):
            continue
        record = {
            "image_id": int(ann["image_id"]),
            "category_id": int(ann["category_id"]),
            "bbox": [float(v) for v in ann["bbox"]],
            "score": 1.0,
        }
        if include_masks:
            record["segmentation"] = _jsonable_rle(coco.annToRLE(ann))
        records.append(record)
    return records


def write_results_json(path: str | os.PathLike[str], results: list[dict[str, Any]]) -> None:
    """Write result records as a COCO results json, atomically."""
    atomic_write_json(path, results)


def load_results_json(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read and validate a COCO results json; ``DataError`` names the file, record and fix."""
    path = Path(path)
    records = read_json(path, what="results file", missing_fix="write one with `detkit detect` or pass the right path")
    validate_results(records, str(path))
    return cast(list[dict[str, Any]], records)  # validate_results checked it is a list of records


def validate_results(records: Any, source: str) -> None:
    """Check ``records`` is a list of COCO result dicts; raise ``DataError`` naming ``source``."""
    if not isinstance(records, list):
        raise DataError(f"{source}: expected a JSON list of result records, got {type(records).__name__}; {_FIX}")
    for index, record in enumerate(records):
        problem = _record_problem(record)
        if problem is not None:
            raise DataError(f"{source}: record {index} {problem}; {_FIX}")


def match_file_names(
    records: list[dict[str, Any]],
    images: list[dict[str, Any]],
    image_dir: str | os.PathLike[str] | None,
    source: str,
    gt_source: str,
) -> list[dict[str, Any]]:
    """``records`` with the ``image_id`` of the ground-truth image their ``file_name`` names (records
    without one are kept as they are). ``detkit detect`` numbers images by position, so its ids mean
    nothing to a dataset; the file name does. A name matches a ground-truth ``file_name`` exactly, or
    the same file under ``image_dir``, or a unique base name; one that matches no image, or two, is
    a ``DataError``: scoring it against the wrong image would give a wrong AP with no word."""
    if not any("file_name" in record for record in records):
        return records
    index = _FileNameIndex(images, image_dir)
    matched = []
    for number, record in enumerate(records):
        if "file_name" not in record:
            matched.append(record)
            continue
        image_id = index.find(record["file_name"])
        if image_id is None:
            raise DataError(
                f"{source}: record {number} has file_name {quoted(record['file_name'], 80)}, which is no image of "
                f"{gt_source}{index.ambiguity(record['file_name'])}; evaluate against the dataset the detections were "
                "made on (and its --images folder), or drop the file_name to score by image_id"
            )
        matched.append({**record, "image_id": image_id})
    return matched


class _FileNameIndex:
    """Ground-truth images by ``file_name``, by resolved path under the image folder, and by base name."""

    def __init__(self, images: list[dict[str, Any]], image_dir: str | os.PathLike[str] | None) -> None:
        self.by_name: dict[str, int] = {}
        self.by_path: dict[str, int] = {}
        self.by_base: dict[str, list[int]] = {}
        for image in images:
            name = image.get("file_name")
            image_id: Any = image.get("id")  # a JSON value, checked to be an integer below
            if not isinstance(name, str) or not _is_int(image_id):
                continue
            self.by_name.setdefault(name, image_id)
            if image_dir is not None:
                self.by_path.setdefault(os.path.realpath(os.path.join(image_dir, name)), image_id)
            self.by_base.setdefault(os.path.basename(name.replace("\\", "/")), []).append(image_id)

    def find(self, file_name: Any) -> int | None:
        if not isinstance(file_name, str):
            return None
        if file_name in self.by_name:
            return self.by_name[file_name]
        path = self.by_path.get(os.path.realpath(file_name)) if "\0" not in file_name else None
        if path is not None:
            return path
        bases = self.by_base.get(os.path.basename(file_name.replace("\\", "/")), [])
        return bases[0] if len(set(bases)) == 1 else None

    def ambiguity(self, file_name: Any) -> str:
        bases = self.by_base.get(os.path.basename(str(file_name).replace("\\", "/")), [])
        return f" (its base name is shared by images {sorted(set(bases))[:4]})" if len(set(bases)) > 1 else ""


def _record_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return f"is a {type(record).__name__}, not an object"
    for key in ("image_id", "category_id"):
        if key not in record:
            return f"has no '{key}'"
        if not _is_int(record[key]):
            return f"has a non-integer '{key}' ({record[key]!r})"
    if "score" not in record:
        return "has no 'score'"
    if not _is_finite(record["score"]):
        return f"has a non-numeric or non-finite 'score' ({record['score']!r})"
    if "bbox" not in record and "segmentation" not in record:
        return "has neither 'bbox' nor 'segmentation'"
    if "bbox" in record and not _is_xywh(record["bbox"]):
        return f"has a malformed 'bbox' ({record['bbox']!r}); expected [x, y, width, height]"
    if "segmentation" in record and not _is_segmentation(record["segmentation"]):
        return "has a malformed 'segmentation'; expected an RLE {'size': [H, W], 'counts': str} or polygons"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


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
