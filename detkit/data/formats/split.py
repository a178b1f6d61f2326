"""One split of a dataset in the converters' common form: a COCO instances dict and its image folder.

Every reader produces a ``DatasetSplit`` and every writer consumes one, so N formats need N readers
and N writers, not N x N converters. Inside, boxes are COCO ``[x, y, w, h]`` in absolute pixels of
the stored image (``x2 = x + w``), ``file_name`` is relative to ``image_dir``, and the class order
(label ``k`` = the ``k``-th class, as YOLO indices and detkit labels count) is the order of
``coco["categories"]``.

Image and annotation ids are written from 1: pycocotools' COCOeval reads a matched annotation id
of 0 as "no match" and scores a perfect detection as a false positive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detkit.data.coco_fields import Box, clip_box, is_degenerate, is_positive_size, xywh_to_xyxy, xyxy_to_xywh
from detkit.data.formats.image_size import read_image_size
from detkit.errors import DataError

_CLIP_NOTE_PX = 0.01


@dataclass
class DatasetSplit:
    """A split: its name, the COCO dict, the folder its ``file_name`` entries are relative to, and
    notes on what reading it dropped or changed (one line each, for the user)."""

    name: str
    coco: dict[str, Any]
    image_dir: Path
    notes: list[str] = field(default_factory=list)

    @property
    def class_names(self) -> list[str]:
        return [category["name"] for category in self.coco["categories"]]

    @property
    def num_images(self) -> int:
        return len(self.coco["images"])

    @property
    def num_annotations(self) -> int:
        return len(self.coco["annotations"])


def new_coco(class_names: list[str], category_ids: list[int] | None = None, description: str = "") -> dict[str, Any]:
    """An empty COCO instances dict with the given classes, in label order (ids 1..K by default)."""
    ids = category_ids if category_ids is not None else list(range(1, len(class_names) + 1))
    return {
        "info": {"description": description},
        "images": [],
        "annotations": [],
        "categories": [{"id": cat_id, "name": name, "supercategory": ""} for cat_id, name in zip(ids, class_names)],
    }


def add_image(coco: dict[str, Any], file_name: str, size: tuple[int, int] | None) -> int:
    """Append an image record and return its id; ``size`` is ``(H, W)`` or None when unknown."""
    image_id = len(coco["images"]) + 1
    record: dict[str, Any] = {"id": image_id, "file_name": file_name}
    if size is not None:
        record["height"], record["width"] = int(size[0]), int(size[1])
    coco["images"].append(record)
    return image_id


def add_annotation(coco: dict[str, Any], image_id: int, category_id: int, box: Box, **extra: Any) -> int:
    """Append a box annotation (``box`` is xyxy absolute pixels) and return its id.

    ``area`` is the box area (there is no mask); no ``segmentation`` is written, and readers that
    need one (``CocoDetection``) use the box.
    """
    annotation_id = len(coco["annotations"]) + 1
    x, y, w, h = xyxy_to_xywh(box)
    record = {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [x, y, w, h],
        "area": max(w, 0.0) * max(h, 0.0),
        "iscrowd": 0,
    }
    record.update(extra)
    coco["annotations"].append(record)
    return annotation_id


def fill_image_sizes(split: DatasetSplit) -> None:
    """Give every image record its width/height, from the file header where the record has none.

    Box-only layouts need them (YOLO normalises by them, VOC writes ``<size>``).
    """
    for image in split.coco["images"]:
        if is_positive_size(image.get("width")) and is_positive_size(image.get("height")):
            continue
        path = split.image_dir / image["file_name"]
        size = read_image_size(path)
        if size is None:
            raise DataError(
                f"{path}: image {image['id']} has no width/height and the file is missing or unreadable; "
                "run `detkit data check --fix` to drop it, or restore the file"
            )
        image["height"], image["width"] = size


@dataclass(frozen=True)
class ExportObject:
    """An annotation as a box-only layout (VOC, YOLO) stores it: clipped xyxy pixels and a class index."""

    box: Box
    label: int
    difficult: bool
    truncated: bool


@dataclass
class ExportCounts:
    """What ``objects_by_image`` left out or changed, for the conversion notes."""

    crowd_dropped: int = 0
    crowd_as_difficult: int = 0
    clipped: int = 0
    degenerate_dropped: int = 0

    def notes(self, target: str) -> list[str]:
        notes = []
        if self.crowd_dropped:
            notes.append(f"{self.crowd_dropped} crowd regions dropped ({target} has no ignore regions)")
        if self.crowd_as_difficult:
            notes.append(f"{self.crowd_as_difficult} crowd regions written as difficult objects (VOC's ignore regions)")
        if self.clipped:
            notes.append(f"{self.clipped} boxes clipped to their image")
        if self.degenerate_dropped:
            notes.append(f"{self.degenerate_dropped} boxes under 1 px (or inverted) after clipping dropped")
        return notes


def objects_by_image(
    split: DatasetSplit, *, crowd_as_difficult: bool
) -> tuple[dict[int, list[ExportObject]], ExportCounts]:
    """Each image's annotations, clipped to the image, as a box-only format holds them.

    ``fill_image_sizes`` must have given every image its width/height. Boxes under 1 px once
    clipped, or inverted, are dropped. Crowd regions become difficult objects (``crowd_as_difficult``:
    VOC evaluation ignores difficult objects as COCO ignores crowds) or are dropped (YOLO has no
    ignore regions).
    """
    label_of = {category["id"]: label for label, category in enumerate(split.coco["categories"])}
    images = {image["id"]: image for image in split.coco["images"]}
    objects: dict[int, list[ExportObject]] = {image_id: [] for image_id in images}
    counts = ExportCounts()
    for ann in split.coco["annotations"]:
        image, label = images.get(ann["image_id"]), label_of.get(ann["category_id"])
        if image is None or label is None:
            continue  # the readers never produce these; CocoDetection already counted them for COCO input
        crowd = bool(ann.get("iscrowd"))
        if crowd and not crowd_as_difficult:
            counts.crowd_dropped += 1
            continue
        box = xywh_to_xyxy(ann.get("bbox"))  # None for a negative width, as a VOC xmin > xmax reads
        clipped = clip_box(box, image["width"], image["height"]) if box is not None else None
        if clipped is None or box is None or is_degenerate(clipped):  # box is None only when clipped is
            counts.degenerate_dropped += 1
            continue
        # Sub-pixel overshoot is rounding (YOLO's 6 decimals), not worth a note.
        counts.clipped += max(abs(a - b) for a, b in zip(clipped, box)) > _CLIP_NOTE_PX
        counts.crowd_as_difficult += crowd
        difficult = crowd or bool(ann.get("difficult"))
        objects[image["id"]].append(ExportObject(clipped, label, difficult, bool(ann.get("truncated"))))
    return objects, counts
