"""Reading a COCO instances json as a ``DatasetSplit``, through ``CocoDetection``'s checks.

Going through ``CocoDetection`` means one set of rules: a file it refuses is a ``DataError`` here
too, and records it drops (malformed, duplicate ids, unknown image, no usable bbox) are dropped
here, with a note. Annotations of categories missing from ``categories`` are left out as well.
Category ids and names are kept as they are, in id order (the detkit label order); boxes stay COCO
``[x, y, w, h]`` pixels, ``file_name`` relative to the image folder.
"""

from __future__ import annotations

import copy
from pathlib import Path

from detkit.data.formats.split import DatasetSplit


def coco_split_name(path: Path) -> str:
    """The split a COCO file holds, from its name: ``instances_val2017.json`` -> ``val2017``."""
    stem = path.stem
    return stem[len("instances_") :] if stem.startswith("instances_") and len(stem) > len("instances_") else stem


def default_image_dir(annotations: Path) -> Path:
    """Where a COCO json's images are when no folder is given: COCO's own layout
    (``annotations/instances_<split>.json`` with images in ``<split>/`` beside ``annotations/``,
    as coco128 and detkit's synthetic set), else the json's own folder."""
    annotations = Path(annotations)
    official = annotations.parent.parent / coco_split_name(annotations)
    if annotations.parent.name == "annotations" and official.is_dir():
        return official
    return annotations.parent


def read_coco(path: Path, *, images: Path | None = None, split: str | None = None) -> DatasetSplit:
    """The COCO json at ``path`` as split ``split`` (default: named after the file); images in
    ``images``, by default ``default_image_dir``."""
    from detkit.data.coco import CocoDetection  # torch: imported only when a COCO file is read

    image_dir = images if images is not None else default_image_dir(path)
    dataset = CocoDetection(path, image_dir)
    source = dataset.coco.dataset
    known = set(dataset.category_ids)
    coco = {
        "info": copy.deepcopy(source.get("info", {"description": ""})),
        "images": copy.deepcopy(source["images"]),
        "annotations": [copy.deepcopy(a) for a in source["annotations"] if a["category_id"] in known],
        "categories": [copy.deepcopy(dataset.coco.cats[cat_id]) for cat_id in dataset.category_ids],
    }
    for category in coco["categories"]:
        category["name"] = dataset.class_names[dataset.category_ids.index(category["id"])]
    split_data = DatasetSplit(split or coco_split_name(path), coco, image_dir)
    report = dataset.report
    if report.num_dropped_malformed:
        split_data.notes.append(
            f"{report.num_dropped_malformed} malformed annotations dropped (no id, unknown image or duplicate id)"
        )
    without_box = report.num_annotations - report.num_dropped_malformed - len(source["annotations"])
    if without_box:
        split_data.notes.append(f"{without_box} annotations without a usable bbox dropped")
    if report.num_unknown_category:
        split_data.notes.append(f"{report.num_unknown_category} annotations of unknown categories dropped")
    return split_data
