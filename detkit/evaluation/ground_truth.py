"""The ground truth of a COCO evaluation: a COCO instances dict, read and checked for what scoring reads.

Accepted as a path to an instances json, the dict itself, or a pycocotools-style ``COCO`` object
(anything with a ``.dataset`` dict). Scoring reads each image's and category's integer ``id`` and
each annotation's ``id``, ``image_id``, ``category_id``, ``bbox`` (xywh, absolute pixels) and ``area``;
``segm`` scoring reads ``segmentation`` too (polygons or RLE), so a ground truth without masks (a
VOC or YOLO dataset's) cannot be scored that way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detkit.errors import DataError
from detkit.io import read_json


def load_ground_truth(ground_truth: Any, iou_types: Sequence[str]) -> tuple[dict[str, Any], str]:
    """The ground truth's COCO dict, checked for ``iou_types``, and a name for messages."""
    if isinstance(ground_truth, (str, os.PathLike)):
        path = Path(ground_truth)
        source = str(path)
        dataset = read_json(
            path, what="ground-truth annotation file", missing_fix="pass the instances json of the dataset"
        )
    elif isinstance(ground_truth, dict):
        dataset = ground_truth
        source = "ground truth"
    else:
        dataset = getattr(ground_truth, "dataset", None)
        source = str(getattr(ground_truth, "annotation_file", None) or "ground truth")
    check_ground_truth(dataset, source, iou_types)
    return dataset, source


def check_ground_truth(dataset: Any, source: str, iou_types: Sequence[str]) -> None:
    """``DataError`` naming ``source``, the first record scoring cannot read, and the fix."""
    if not isinstance(dataset, dict):
        raise DataError(f"{source}: not a COCO dataset (expected an object); pass an instances json or a COCO object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            raise DataError(f"{source}: has no '{key}' list; pass a COCO instances json")
    for key in ("images", "categories"):
        for index, record in enumerate(dataset[key]):
            if not isinstance(record, dict) or not _is_int(record.get("id")):
                raise DataError(
                    f"{source}: {key}[{index}] has no integer 'id'; fix the record (`detkit data check` lists them all)"
                )
    segm = "segm" in iou_types
    annotations = dataset["annotations"]
    if segm and annotations and not any(isinstance(ann, dict) and "segmentation" in ann for ann in annotations):
        raise DataError(
            f"{source}: no annotation has a 'segmentation' (instance masks), which segm evaluation needs; "
            "score the boxes with --iou-type bbox, or evaluate against a ground truth with masks"
        )
    required = ("id", "image_id", "category_id", "bbox", "area") + (("segmentation",) if segm else ())
    for index, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            raise DataError(
                f"{source}: annotation {index} is not an object; fix or drop it (`detkit data check --fix`)"
            )
        missing = [key for key in required if key not in ann]
        if missing:
            raise DataError(
                f"{source}: annotation {index} has no '{missing[0]}'; add it or drop the record "
                f"({'segm' if segm else 'bbox'} evaluation needs {', '.join(required)})"
            )


def id_zero_notes(dataset: dict[str, Any]) -> tuple[str, ...]:
    """A note when an annotation has id 0, which pycocotools alone reads as "no match"."""
    if any(ann.get("id") == 0 for ann in dataset["annotations"]):
        return (
            "the ground truth has an annotation id 0, which pycocotools alone would score as unmatched (a perfect "
            "detection of it counted as a false positive); detkit scores with its own ids; "
            "`detkit data check --fix` writes a file without it",
        )
    return ()


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
