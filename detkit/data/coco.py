"""COCO ``instances`` json + image folder as a ``torch.utils.data.Dataset`` of ``(image, Target)``.

Each item is ``image float32 [3, H, W]`` in ``[0, 1]`` and a ``Target`` whose ``boxes`` are
``float32 [M, 4]`` xyxy absolute pixels of that image (COCO ``[x, y, w, h]`` -> ``x2 = x + w``),
clipped to ``[0, W] x [0, H]``; ``labels`` are ``int64`` in ``[0, K)`` with ``label = index of the
category id in category_ids``; ``iscrowd`` is ``bool [M]`` (crowd regions stay: training drops them
with ``Target.without_crowd()``, evaluation needs them); ``masks`` is ``uint8 [M, H, W]`` or None.

The json is checked once at construction. Malformed files raise ``DataError``; malformed records
are dropped or repaired and counted in ``report``, never raised from ``__getitem__``.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import Dataset

from detkit.data.coco_fields import (
    clip_box,
    crowd_flag,
    is_degenerate,
    is_int,
    is_number,
    read_coco_json,
    usable_segmentation,
    xywh_to_xyxy,
)
from detkit.data.image_paths import image_path
from detkit.data.images import image_to_tensor, read_image_rgb
from detkit.errors import DataError
from detkit.structures import Target

Transform = Callable[[Tensor, Target], tuple[Tensor, Target]]


@dataclass(frozen=True)
class SanitizeReport:
    """What the construction pass over the annotations found (sizes from the json's width/height).

    num_annotations: annotation records in the file.
    num_clipped: boxes past the border of the json's width/height (clipped to the image when read).
    num_dropped_degenerate: records with no usable bbox, or under 1 px wide or high.
    num_outside_json_frame: boxes under 1 px once clipped to the json's width/height: dropped when
        the image file has that size (the file's size decides, when the image is read).
    num_crowd: crowd annotations kept (``Target.iscrowd`` True).
    num_unknown_category: records whose category id is not in ``category_ids`` (skipped).
    num_images_without_annotations: images whose Target is empty.
    num_dropped_malformed: records without id/image_id/category_id, with an unknown image, a
        duplicate id or an ``iscrowd`` other than 0/1; they are also removed from ``coco`` so that
        evaluation cannot trip on them.
    num_without_segmentation: kept records with no usable segmentation; their mask is their box.
    """

    num_annotations: int = 0
    num_clipped: int = 0
    num_dropped_degenerate: int = 0
    num_outside_json_frame: int = 0
    num_crowd: int = 0
    num_unknown_category: int = 0
    num_images_without_annotations: int = 0
    num_dropped_malformed: int = 0
    num_without_segmentation: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class _Record:
    """One usable annotation: unclipped xyxy box, detkit label, crowd flag, segmentation."""

    annotation_id: int
    box: tuple[float, float, float, float]
    label: int
    iscrowd: bool
    segmentation: Any


class CocoDetection(Dataset[tuple[Tensor, Target]]):
    """COCO detection dataset; see the module docstring for the item contract.

    ``category_ids`` fixes the label mapping (``category_ids[label] = COCO category id``), e.g. the
    training mapping stored in a checkpoint; by default the json's category ids, sorted.
    ``image_ids`` lists every image, sorted, including those without annotations.
    ``proposals`` maps a decoded ``uint8 [H, W, 3]`` image to its ``float32 [P, 4]`` region proposals
    (e.g. ``ProposalCache.proposals_for``); they are attached as ``Target.proposals`` before the transforms.
    """

    def __init__(
        self,
        annotation_file: str | Path,
        image_dir: str | Path,
        *,
        transforms: Transform | None = None,
        with_masks: bool = False,
        category_ids: Sequence[int] | None = None,
        proposals: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.annotation_file = Path(annotation_file)
        self.image_dir = Path(image_dir)
        self.transforms = transforms
        self.proposals = proposals
        self.with_masks = with_masks

        dataset = read_coco_json(self.annotation_file)
        images = _index_images(dataset["images"], self.annotation_file)
        _check_image_names(images, self.image_dir, self.annotation_file)
        names = _category_names(dataset["categories"], self.annotation_file)
        self.category_ids: list[int] = _resolve_category_ids(names, category_ids, self.annotation_file)
        self.class_names: list[str] = [names[cat_id] for cat_id in self.category_ids]
        self._label_of = {cat_id: label for label, cat_id in enumerate(self.category_ids)}

        annotations, self._records, self.report = _sanitize(dataset["annotations"], images, self._label_of)
        dataset["annotations"] = annotations
        self.coco: COCO = _build_coco(dataset)
        self.image_ids: list[int] = sorted(images)

    @property
    def num_trainable_boxes(self) -> int:
        """Usable non-crowd boxes of the known categories (before the real image size may clip more)."""
        return sum(not record.iscrowd for records in self._records.values() for record in records)

    @property
    def num_classes(self) -> int:
        """K, the number of foreground classes."""
        return len(self.category_ids)

    def label_to_category_id(self, label: int) -> int:
        return self.category_ids[int(label)]

    def category_id_to_label(self, category_id: int) -> int:
        try:
            return self._label_of[int(category_id)]
        except KeyError:
            raise KeyError(f"category id {category_id} is not in this dataset's mapping {self.category_ids}") from None

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, index: int) -> Path:
        name: str = self.coco.imgs[self.image_ids[index]]["file_name"]  # checked to be a str on load
        return self.image_dir / name

    def require_image_files(self) -> None:
        """Raise ``DataError`` naming the first missing image file (and how many are missing): a
        ``stat`` per image, so a long run fails at start, not hours in at the first absent file.
        Decoding problems still surface when an image is read."""
        missing = [path for path in map(self.image_path, range(len(self))) if not path.is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more of {len(self)} images)" if len(missing) > 1 else ""
            raise DataError(
                f"{missing[0]}: image not found{more}, listed in {self.annotation_file}; check --images, or drop "
                f"the records with `detkit data check {self.annotation_file} --images {self.image_dir} --fix OUT.json`"
            )

    def orientations(self) -> list[int]:
        """Per image, 1 when the json says it is taller than wide, else 0 (no pixels read): the groups
        that aspect-ratio batching keeps apart. An image without a usable size counts as landscape."""
        groups = []
        for image_id in self.image_ids:
            record = self.coco.imgs[image_id]
            width, height = record.get("width"), record.get("height")
            groups.append(int(is_number(width) and is_number(height) and height > width))
        return groups

    def target_for(self, index: int, image_size: tuple[int, int]) -> Target:
        """The ground truth of image ``index`` without reading its pixels; ``image_size`` (H, W) is the
        stored image's."""
        return self._target(self.image_ids[index], *image_size)

    def __getitem__(self, index: int) -> tuple[Tensor, Target]:
        image_id = self.image_ids[index]
        image = read_image_rgb(self.image_path(index))
        height, width = image.shape[:2]
        target = self._target(image_id, height, width)
        if self.proposals is not None:
            target = replace(target, proposals=torch.from_numpy(self.proposals(image)))
        tensor = image_to_tensor(image)
        if self.transforms is not None:
            tensor, target = self.transforms(tensor, target)
        return tensor, target

    def _target(self, image_id: int, height: int, width: int) -> Target:
        """The Target of one image, clipped to the real image size (which wins over the json's)."""
        records = self._records[image_id]
        boxes = torch.tensor([r.box for r in records], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        keep = ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)
        kept = [r for r, k in zip(records, keep.tolist()) if k]
        masks = None
        if self.with_masks:
            masks = torch.zeros((len(kept), height, width), dtype=torch.uint8)
            for i, record in enumerate(kept):
                masks[i] = torch.from_numpy(_decode_mask(record, height, width, self.annotation_file))
        return Target(
            boxes=boxes[keep],
            labels=torch.tensor([r.label for r in kept], dtype=torch.int64),
            masks=masks,
            iscrowd=torch.tensor([r.iscrowd for r in kept], dtype=torch.bool),
            image_id=int(image_id),
        )


# ---------------------------------------------------------------------------------------------
# Reading and checking the json


def _index_images(records: list[Any], path: Path) -> dict[int, dict[str, Any]]:
    images: dict[int, dict[str, Any]] = {}
    for index, record in enumerate(records):
        if not isinstance(record, dict) or not is_int(record.get("id")) or not isinstance(record.get("file_name"), str):
            raise DataError(
                f"{path}: images[{index}] needs an integer 'id' and a 'file_name'; add them or drop the record"
            )
        if record["id"] in images:
            raise DataError(f"{path}: image id {record['id']} appears twice; give every image a unique id")
        images[record["id"]] = record
    return images


def _check_image_names(images: dict[int, dict[str, Any]], image_dir: Path, path: Path) -> None:
    """Every ``file_name`` must stay inside ``image_dir`` (``image_paths``): refused here, at the start,
    rather than at the first read of the image."""
    for image_id, record in images.items():
        image_path(image_dir, record["file_name"], where=f"{path}: image {image_id}")


def _category_names(records: list[Any], path: Path) -> dict[int, str]:
    names: dict[int, str] = {}
    for index, record in enumerate(records):
        if not isinstance(record, dict) or not is_int(record.get("id")):
            raise DataError(f"{path}: categories[{index}] has no integer 'id'; add one or drop the record")
        if record["id"] in names:
            raise DataError(f"{path}: category id {record['id']} appears twice; give every category a unique id")
        name = record.get("name")
        names[record["id"]] = name if isinstance(name, str) else str(record["id"])
    return names


def _resolve_category_ids(names: dict[int, str], category_ids: Sequence[int] | None, path: Path) -> list[int]:
    if category_ids is None:
        return sorted(names)
    resolved = [int(cat_id) for cat_id in category_ids]
    if len(set(resolved)) != len(resolved):
        raise DataError(f"category_ids {resolved} has duplicates; pass each category id once")
    # A model may know classes this dataset never uses (torchvision's COCO models have 90 ids, ten
    # of them unused "N/A"); those labels simply have no ground truth here.
    for cat_id in resolved:
        names.setdefault(cat_id, f"category_{cat_id}")
    return resolved


def _build_coco(dataset: dict[str, Any]) -> COCO:
    # COCO(path) would parse the file a second time; hand it the checked dict instead.
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
    return coco


# ---------------------------------------------------------------------------------------------
# The sanitizing pass


def _sanitize(
    annotations: list[Any], images: dict[int, dict[str, Any]], label_of: dict[int, int]
) -> tuple[list[dict[str, Any]], dict[int, list[_Record]], SanitizeReport]:
    """Split the annotations into what ``coco`` keeps and what each image's Target holds.

    Records every consumer would trip on (no id, unknown image, no usable bbox) leave both; records
    of another category or degenerate after clipping stay in ``coco`` (they are ground truth for
    evaluation) but not in the Targets.
    """
    counts = dict.fromkeys((f.name for f in fields(SanitizeReport)), 0)
    counts["num_annotations"] = len(annotations)
    kept: list[dict[str, Any]] = []
    records: dict[int, list[_Record]] = {image_id: [] for image_id in images}
    seen_ids: set[int] = set()
    for ann in annotations:
        if not _well_formed(ann, images, seen_ids):
            counts["num_dropped_malformed"] += 1
            continue
        seen_ids.add(ann["id"])
        box = xywh_to_xyxy(ann.get("bbox"))
        if box is None:
            counts["num_dropped_degenerate"] += 1
            continue
        box_segmentation = _fill_defaults(ann, box)
        kept.append(ann)

        label = label_of.get(ann["category_id"])
        if label is None:
            counts["num_unknown_category"] += 1
            continue
        if is_degenerate(box):
            counts["num_dropped_degenerate"] += 1
            continue
        # Counted in the json's frame, but kept: the image file's own size decides when it is read
        # (``_target``), so a json whose width/height are wrong cannot drop valid boxes.
        image = images[ann["image_id"]]
        clipped = clip_box(box, image.get("width"), image.get("height"))
        counts["num_outside_json_frame"] += is_degenerate(clipped)
        counts["num_clipped"] += clipped != box and not is_degenerate(clipped)
        iscrowd = bool(ann["iscrowd"])
        counts["num_crowd"] += iscrowd
        counts["num_without_segmentation"] += box_segmentation
        records[ann["image_id"]].append(_Record(ann["id"], box, label, iscrowd, ann["segmentation"]))
    counts["num_images_without_annotations"] = sum(1 for recs in records.values() if not recs)
    return kept, records, SanitizeReport(**counts)


def _well_formed(ann: Any, images: dict[int, dict[str, Any]], seen_ids: set[int]) -> bool:
    return (
        isinstance(ann, dict)
        and is_int(ann.get("id"))
        and ann["id"] not in seen_ids
        # is_int first: an unhashable image_id (a list) would make the dict lookup raise.
        and is_int(ann.get("image_id"))
        and ann["image_id"] in images
        and is_int(ann.get("category_id"))
        and crowd_flag(ann.get("iscrowd")) is not None
    )


def _fill_defaults(ann: dict[str, Any], box: tuple[float, float, float, float]) -> bool:
    """Repair in place the fields pycocotools' COCOeval reads, so evaluation works on any kept record.

    Returns whether the segmentation had to be replaced by the box.
    """
    ann["iscrowd"] = crowd_flag(ann.get("iscrowd"))
    if not is_number(ann.get("area")):
        ann["area"] = (box[2] - box[0]) * (box[3] - box[1])
    segmentation = usable_segmentation(ann.get("segmentation"))
    if segmentation is None:
        x1, y1, x2, y2 = box
        ann["segmentation"] = [[x1, y1, x2, y1, x2, y2, x1, y2]]
        return True
    ann["segmentation"] = segmentation
    return False


def _decode_mask(record: _Record, height: int, width: int, path: Path) -> np.ndarray:
    """``uint8 [H, W]`` mask of a record, as ``COCO.annToMask`` decodes it but in the real image frame.

    Polygons are rasterized at the real image size; an RLE of another size is cropped or
    zero-padded to it (top-left aligned, as the pixels are).
    """
    segmentation = record.segmentation
    try:
        if isinstance(segmentation, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation["counts"], list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(segmentation, *segmentation["size"])
        else:
            rle = segmentation
        mask: np.ndarray = mask_utils.decode(rle)
    except (TypeError, ValueError, KeyError) as error:
        raise DataError(
            f"{path}: annotation {record.annotation_id} has a segmentation pycocotools cannot decode ({error}); "
            "fix or drop its 'segmentation'"
        ) from error
    if mask.shape == (height, width):
        return mask
    fitted = np.zeros((height, width), dtype=np.uint8)
    h, w = min(height, mask.shape[0]), min(width, mask.shape[1])
    fitted[:h, :w] = mask[:h, :w]
    return fitted
