"""``detkit data check --fix``: a cleaned copy of a COCO json, and a list of what was changed.

What is repaired (boxes are COCO ``[x, y, w, h]`` pixels, in the frame of the image file):

- image records: malformed ones and those whose file is missing, unreadable, truncated, over the
  pixel limit or outside the image folder are dropped, with their annotations; width/height are set
  from the file where missing or wrong; a duplicated id keeps its first record, and a later one is
  dropped when it names the same file, else renumbered (annotations of that id stay with the first
  record: they cannot be told apart); an id outside ``[0, 2**63)`` is renumbered, and so are the
  annotations' references to it.
- categories: malformed ones are dropped; a duplicated id keeps its first record, a later one is
  dropped when it has the same name, else renumbered; an out-of-range id is renumbered (references
  follow); a name another category already has gets the category id appended (``car_7``).
- annotations: malformed ones (including an ``iscrowd`` other than 0/1), those of unknown images or
  categories, and boxes that are not 4 finite numbers or are under 1 px once clipped
  (``coco_fields.is_degenerate``, the rule training applies) are dropped; an RLE pycocotools cannot
  decode is removed (the box stands for the mask, as for box-only annotations); boxes outside the
  image are clipped to it; duplicated ids, id 0 and out-of-range ids are renumbered (a new id is
  one above the largest usable id in the file).

Warnings (crowds without RLE, imbalance, tiny boxes) are left alone: they are choices, not faults.
The output is written atomically; every other key of the json (``info``, ``licenses``) is kept.
"""

from __future__ import annotations

import copy
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from detkit.data.coco_fields import (
    Box,
    clip_box,
    crowd_flag,
    is_degenerate,
    is_id,
    is_int,
    is_positive_size,
    read_coco_json,
    rle_decodes,
    usable_segmentation,
    xywh_to_xyxy,
    xyxy_to_xywh,
)
from detkit.data.image_scan import ImageStatus
from detkit.errors import DataError
from detkit.io import atomic_write_json, same_file

# Changes, in report order: key -> how it reads with its count in front.
_CHANGES = {
    "image_malformed": "malformed image records dropped",
    "image_bad_file": "image records dropped: file missing, unreadable or truncated",
    "image_duplicate": "duplicate image records (same id, same file) dropped",
    "image_renumbered": "image records with a duplicated id renumbered",
    "image_out_of_range": "image records with an id outside [0, 2**63) renumbered (annotations follow)",
    "image_resized": "image records given their file's width/height",
    "category_malformed": "malformed category records dropped",
    "category_duplicate": "duplicate category records (same id, same name) dropped",
    "category_renumbered": "category records with a duplicated id renumbered",
    "category_out_of_range": "category records with an id outside [0, 2**63) renumbered (annotations follow)",
    "category_renamed": "categories whose name another category had renamed to name_<id>",
    "annotation_malformed": "malformed annotations dropped",
    "annotation_bad_iscrowd": "annotations with an iscrowd other than 0 or 1 dropped",
    "annotation_no_image": "annotations of missing or dropped images dropped",
    "annotation_unknown_category": "annotations of unknown categories dropped",
    "annotation_bad_box": "annotations with a malformed or degenerate box dropped",
    "annotation_clipped": "boxes clipped to their image",
    "annotation_segmentation_removed": "undecodable RLE segmentations removed (the box stands for the mask)",
    "annotation_renumbered": "annotations with a duplicated id or id 0 renumbered",
    "annotation_out_of_range": "annotations with an id outside [0, 2**63) renumbered",
}


@dataclass(frozen=True)
class FixResult:
    """The cleaned json's path and ``(count, what)`` for each kind of change made."""

    output: Path
    changes: tuple[tuple[int, str], ...]


def fix_dataset(
    annotation_file: Path, images: dict[str, ImageStatus], output: Path, *, image_dir: Path | None = None
) -> FixResult:
    """Write a cleaned copy of the COCO json at ``annotation_file`` to ``output``; ``images`` is the
    scan of ``CheckReport.images`` (every file_name's decoded status), of the folder ``image_dir``.

    Refused (``DataError``, nothing written) when ``output`` is the file being fixed, or when no image
    file was found at all: dropping every record is not a fix, the image folder is wrong.
    """
    if os.path.lexists(output) and same_file(output, annotation_file):
        raise DataError(
            f"--fix {output}: is the file being checked; "
            "write the cleaned copy to another path (the original stays as it is)"
        )
    dataset = read_coco_json(Path(annotation_file))
    statuses = [
        images.get(r["file_name"])
        for r in dataset["images"]
        if isinstance(r, dict) and isinstance(r.get("file_name"), str)
    ]
    if statuses and all(status is not None and status.state == "missing" for status in statuses):
        raise DataError(
            f"{annotation_file}: none of its {len(statuses)} images is in {image_dir or 'the image folder'}, "
            "so --fix would drop every record; pass --images with the folder that holds them (nothing was written)"
        )
    fixed, counts = fix_coco(dataset, images)
    atomic_write_json(output, fixed)
    return FixResult(Path(output), tuple((counts[key], text) for key, text in _CHANGES.items() if counts[key]))


def fix_coco(dataset: dict[str, Any], images: dict[str, ImageStatus]) -> tuple[dict[str, Any], Counter[str]]:
    """The cleaned dataset (a new dict; ``dataset`` is not modified) and the count of each change."""
    counts: Counter[str] = Counter()
    fixed = {key: value for key, value in dataset.items() if key not in ("images", "categories", "annotations")}
    image_ids: dict[int, int] = {}
    category_ids: dict[int, int] = {}
    fixed["images"] = _fix_images(copy.deepcopy(dataset["images"]), images, counts, image_ids)
    fixed["categories"] = _fix_categories(copy.deepcopy(dataset["categories"]), counts, category_ids)
    annotations = _follow_renumbering(copy.deepcopy(dataset["annotations"]), image_ids, category_ids)
    fixed["annotations"] = _fix_annotations(annotations, fixed["images"], fixed["categories"], counts)
    return fixed, counts


def _next_id(records: list[Any]) -> int:
    return max((r["id"] for r in records if isinstance(r, dict) and is_id(r.get("id"))), default=0) + 1


def _renumber(record: dict[str, Any], renumbered: dict[int, int], next_id: int) -> int:
    """Give ``record`` the new id of its out-of-range id (the same for every record that had it);
    returns the next free id."""
    if record["id"] not in renumbered:
        renumbered[record["id"]], next_id = next_id, next_id + 1
    record["id"] = renumbered[record["id"]]
    return next_id


def _follow_renumbering(annotations: list[Any], image_ids: dict[int, int], category_ids: dict[int, int]) -> list[Any]:
    """Point annotations at the new ids of renumbered out-of-range images and categories."""
    for ann in annotations:
        if isinstance(ann, dict):
            if is_int(ann.get("image_id")) and ann["image_id"] in image_ids:
                ann["image_id"] = image_ids[ann["image_id"]]
            if is_int(ann.get("category_id")) and ann["category_id"] in category_ids:
                ann["category_id"] = category_ids[ann["category_id"]]
    return annotations


def _fix_images(
    records: list[Any], scan: dict[str, ImageStatus], counts: Counter[str], renumbered: dict[int, int]
) -> list[dict[str, Any]]:
    next_id = _next_id(records)
    owners: dict[int, dict[str, Any]] = {}
    kept = []
    for record in records:
        if (
            not isinstance(record, dict)
            or not is_int(record.get("id"))
            or not isinstance(record.get("file_name"), str)
            or not record["file_name"]
        ):
            counts["image_malformed"] += 1
            continue
        if not is_id(record["id"]):
            next_id = _renumber(record, renumbered, next_id)
            counts["image_out_of_range"] += 1
        first = owners.get(record["id"])
        if first is not None and first["file_name"] == record["file_name"]:
            counts["image_duplicate"] += 1
            continue
        if first is not None:
            record["id"], next_id = next_id, next_id + 1
            counts["image_renumbered"] += 1
        owners[record["id"]] = record
        status = scan.get(record["file_name"])
        if status is None or status.state != "ok":
            counts["image_bad_file"] += 1
            continue
        counts["image_resized"] += _set_size(record, status.size)
        kept.append(record)
    return kept


def _set_size(record: dict[str, Any], size: tuple[int, int] | None) -> bool:
    """Give ``record`` the file's ``(H, W)``; whether it changed."""
    if size is None:
        return False
    height, width = size
    if (
        is_positive_size(record.get("width"))
        and is_positive_size(record.get("height"))
        and (record["width"], record["height"]) == (width, height)
    ):
        return False
    record["width"], record["height"] = width, height
    return True


def _fix_categories(records: list[Any], counts: Counter[str], renumbered: dict[int, int]) -> list[dict[str, Any]]:
    next_id = _next_id(records)
    names: dict[int, Any] = {}
    kept = []
    for record in records:
        if not isinstance(record, dict) or not is_int(record.get("id")):
            counts["category_malformed"] += 1
            continue
        if not is_id(record["id"]):
            next_id = _renumber(record, renumbered, next_id)
            counts["category_out_of_range"] += 1
        if record["id"] in names and names[record["id"]] == record.get("name"):
            counts["category_duplicate"] += 1
            continue
        if record["id"] in names:
            record["id"], next_id = next_id, next_id + 1
            counts["category_renumbered"] += 1
        names[record["id"]] = record.get("name")
        kept.append(record)
    _rename_shared_names(kept, counts)
    return kept


def _rename_shared_names(categories: list[dict[str, Any]], counts: Counter[str]) -> None:
    """A name (as the checker reads it: ``str(name)``, or the id without one) that an earlier
    category has becomes ``name_<id>``: two classes of one name cannot be told apart in the output."""
    taken = {str(c.get("name", c["id"])) for c in categories}
    seen: set[str] = set()
    for category in categories:
        name = str(category.get("name", category["id"]))
        if name in seen:
            new_name, suffix = f"{name}_{category['id']}", 2
            while new_name in taken:
                new_name, suffix = f"{name}_{category['id']}_{suffix}", suffix + 1
            category["name"] = new_name
            taken.add(new_name)
            counts["category_renamed"] += 1
            name = new_name
        seen.add(name)


def _fix_annotations(
    records: list[Any], images: list[dict[str, Any]], categories: list[dict[str, Any]], counts: Counter[str]
) -> list[dict[str, Any]]:
    by_id = {image["id"]: image for image in images}
    category_ids = {category["id"] for category in categories}
    next_id = _next_id(records)
    seen: set[int] = set()
    kept = []
    for ann in records:
        problem = _annotation_problem(ann, by_id, category_ids)
        if problem is not None:
            counts[problem] += 1
            continue
        image = by_id[ann["image_id"]]
        box = cast(Box, xywh_to_xyxy(ann["bbox"]))  # not None: _annotation_problem checked it
        clipped = clip_box(box, image.get("width"), image.get("height"))
        if is_degenerate(clipped):
            counts["annotation_bad_box"] += 1
            continue
        if clipped != box:
            ann["bbox"] = xyxy_to_xywh(clipped)
            counts["annotation_clipped"] += 1
        if _undecodable_rle(ann.get("segmentation")):
            del ann["segmentation"]
            counts["annotation_segmentation_removed"] += 1
        if not is_id(ann["id"]):
            ann["id"], next_id = next_id, next_id + 1
            counts["annotation_out_of_range"] += 1
        elif ann["id"] in seen or ann["id"] == 0:
            ann["id"], next_id = next_id, next_id + 1
            counts["annotation_renumbered"] += 1
        seen.add(ann["id"])
        kept.append(ann)
    return kept


def _annotation_problem(ann: Any, images: dict[int, dict[str, Any]], category_ids: set[int]) -> str | None:
    """The change key that drops ``ann``, or None when it is kept."""
    if not isinstance(ann, dict) or not all(is_int(ann.get(key)) for key in ("id", "image_id", "category_id")):
        return "annotation_malformed"
    if crowd_flag(ann.get("iscrowd")) is None:
        return "annotation_bad_iscrowd"
    if ann["image_id"] not in images:
        return "annotation_no_image"
    if ann["category_id"] not in category_ids:
        return "annotation_unknown_category"
    if xywh_to_xyxy(ann.get("bbox")) is None:
        return "annotation_bad_box"
    return None


def _undecodable_rle(segmentation: Any) -> bool:
    usable = usable_segmentation(segmentation)
    return isinstance(usable, dict) and not rle_decodes(usable)
