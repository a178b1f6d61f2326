"""COCO result records from detkit's detections, and the results json they are written to.

detkit boxes are ``[D, 4]`` xyxy absolute pixels; a COCO result record holds
``bbox = [x, y, width, height]`` (xywh, absolute pixels), a dataset ``category_id`` (not the
contiguous label) and, for instance segmentation, a compressed RLE ``segmentation`` whose
``counts`` is a str so the record is plain JSON. Reading a results file back is ``results_file``
(no torch there: scoring a file needs no model).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

from detkit.io import atomic_write_json
from detkit.structures import Detections

MASK_THRESH = 0.5


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
