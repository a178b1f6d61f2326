"""What the COCO libraries are handed: the ground truth and the detections on detkit's own ids 1..N.

Both pycocotools and faster-coco-eval store the id of the ground truth a detection matched and read
0 as "no match", so a file whose annotation ids start at 0 would score a perfect detection of that
object as a false positive; faster-coco-eval also holds ids as 64-bit integers. Numbering images,
categories and annotations 1..N in file order makes both impossible, whatever ids the file uses.

Evaluation writes into annotation dicts (``ignore`` flags, polygons replaced by RLEs, cached RLEs),
so the ground truth handed over is a fresh shallow copy per evaluation, and the caller's dicts stay
as they were. The detections are built the way the libraries' ``loadRes`` builds them, without
its per-record work the evaluation never reads (a box polygon added to every bbox record).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PrivateIds:
    """Private ids 1..N by the file's ids, in the order the file lists its images and categories."""

    image: dict[Any, int]
    category: dict[Any, int]

    @classmethod
    def of(cls, dataset: dict[str, Any]) -> PrivateIds:
        return cls(
            image={image["id"]: new for new, image in enumerate(dataset["images"], start=1)},
            category={c["id"]: new for new, c in enumerate(dataset["categories"], start=1)},
        )

    def images_of(self, image_ids: list[Any]) -> np.ndarray:
        """``[N]`` int64 private image ids; 0 for an id the ground truth does not list."""
        return np.fromiter((self.image.get(i, 0) for i in image_ids), dtype=np.int64, count=len(image_ids))

    def categories_of(self, category_ids: list[Any]) -> np.ndarray:
        """``[N]`` int64 private category ids; 0 for an id the ground truth does not list."""
        return np.fromiter((self.category.get(c, 0) for c in category_ids), dtype=np.int64, count=len(category_ids))

    def names(self, dataset: dict[str, Any]) -> dict[int, str]:
        """Category name by private id."""
        return {self.category[c["id"]]: str(c.get("name", c["id"])) for c in dataset["categories"]}


def private_ground_truth(dataset: dict[str, Any], ids: PrivateIds) -> dict[str, Any]:
    """A copy of ``dataset`` on private ids that evaluation may write into. Annotations naming an
    image or category the file does not list cannot match anything scored and are left out."""
    annotations: list[dict[str, Any]] = []
    for ann in dataset["annotations"]:
        image_id, category_id = ids.image.get(ann["image_id"]), ids.category.get(ann["category_id"])
        if image_id is not None and category_id is not None:
            annotations.append({**ann, "id": len(annotations) + 1, "image_id": image_id, "category_id": category_id})
    return {
        "info": dataset.get("info", {}),
        "images": [{**image, "id": ids.image[image["id"]]} for image in dataset["images"]],
        "categories": [{**c, "id": ids.category[c["id"]]} for c in dataset["categories"]],
        "annotations": annotations,
    }


def private_detections(
    records: list[dict[str, Any]],
    image_ids: np.ndarray,
    category_ids: np.ndarray,
    boxes: np.ndarray | None,
    image_sizes: dict[int, tuple[int, int]],
) -> list[dict[str, Any]]:
    """``records`` as the libraries' ``loadRes`` makes them, changed in place (pass copies to keep
    the originals): private ``image_id`` / ``category_id`` (``[D]`` int64), ``id`` 1..D,
    ``iscrowd`` 0, and ``area``. With ``boxes`` (``[D, 4]`` xywh: every record has one) the area is
    the box's, as ``loadRes`` does even for records that carry a mask too; without, each record's
    mask gives its area and its ``bbox`` (``image_sizes``: private image id -> ``(H, W)``, for
    polygons)."""
    if boxes is not None:
        areas = (boxes[:, 2] * boxes[:, 3]).tolist()
    else:
        areas = _mask_areas_and_boxes(records, image_ids, image_sizes)
    for number, (record, image_id, category_id, area) in enumerate(
        zip(records, image_ids.tolist(), category_ids.tolist(), areas), start=1
    ):
        record["image_id"] = image_id
        record["category_id"] = category_id
        record["id"] = number
        record["iscrowd"] = 0
        record["area"] = area
    return records


def _mask_areas_and_boxes(
    records: list[dict[str, Any]], image_ids: np.ndarray, image_sizes: dict[int, tuple[int, int]]
) -> list[float]:
    """Each record's mask area, setting its ``bbox`` to the mask's box (what ``loadRes`` does for
    records without a box)."""
    from pycocotools import mask as mask_utils

    rles = [
        _rle(record["segmentation"], image_sizes[image_id]) for record, image_id in zip(records, image_ids.tolist())
    ]
    if not rles:
        return []
    for record, box in zip(records, mask_utils.toBbox(rles).tolist()):
        record["bbox"] = box
    return [float(area) for area in mask_utils.area(rles)]


def _rle(segmentation: Any, size: tuple[int, int]) -> dict[str, Any]:
    """A compressed RLE of a result's ``segmentation``: polygons and uncompressed RLEs are encoded in
    their image's frame, as pycocotools' ``annToRLE`` does for the ground truth."""
    from pycocotools import mask as mask_utils

    height, width = size
    if isinstance(segmentation, list):
        return dict(mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width)))
    if isinstance(segmentation.get("counts"), list):
        return dict(mask_utils.frPyObjects(segmentation, height, width))
    return dict(segmentation)
