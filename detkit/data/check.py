"""``detkit data check``: every problem of a COCO dataset found at once, as a structured report.

Every image is decoded (``image_scan``) and every record checked against the rules
``CocoDetection`` applies (``coco_fields``), so the report names what training would silently drop,
repair or trip on. Boxes are COCO ``[x, y, w, h]`` pixels, checked in the frame of the json's
``width``/``height`` (the file's size where the json has none).

Errors: the dataset is wrong, and training or evaluation would lose data or give wrong numbers.

    no_images                 the file lists no image at all
    missing_image, unreadable_image, truncated_image   the file is absent, undecodable, or cut short
    image_too_large           over the pixel limit (``images.max_image_pixels``): never decoded
    image_outside_folder      file_name leads outside the image folder (``image_paths``): not opened
    image_size_mismatch       json width/height differ from the file: boxes may be in another frame
    malformed_image           image record without an integer id or a string file_name
    malformed_category        category record without an integer id
    malformed_annotation      annotation without integer id, image_id and category_id
    duplicate_image_id, duplicate_category_id, duplicate_annotation_id
    duplicate_category_name   two categories share a name: the model's outputs cannot be told apart
    id_out_of_range           an id outside [0, 2**63): the evaluators index ids as int64
    zero_annotation_id        annotation id 0: pycocotools' COCOeval stores the id of the matched
                              ground truth and reads 0 as "unmatched", so a perfect detection of it
                              counts as a false positive
    malformed_iscrowd         iscrowd other than 0/1 (the string "no" would read as a crowd)
    undecodable_segmentation  an RLE pycocotools cannot decode: Mask R-CNN training refuses it
    missing_image_id          annotation whose image_id names no image
    unknown_category          annotation whose category_id names no category
    malformed_box             bbox is not 4 finite numbers
    degenerate_box            w or h <= 0, or under 1 px once clipped to the image (training drops it)
    box_outside_image         more than 1 px outside the image (negative or past width/height)

Warnings: legal, and sometimes intended, but worth a look.

    zero_id                   image or category id 0 (some COCO tools read 0 as "none" or background)
    duplicate_file_name       two image records share a file
    missing_image_size        image record without width/height (CocoDetection uses the file's)
    images_without_annotations  fine for negatives; a mistake when labels were lost
    crowd_without_rle         iscrowd=1 with a polygon or no segmentation (COCO crowds are RLE)
    unusable_segmentation     a segmentation that is not polygons of >= 3 points nor an RLE: masks use the box
    box_edge_overshoot        past the image edge by at most 1 px: rounding, clipped when read
    tiny_box                  a side under 2 px after clipping: usually a click instead of a drag
    duplicate_box             the same box and class twice in one image
    unused_category           a category no annotation uses
    class_imbalance           largest class count / smallest >= 10

Only a file detkit cannot read at all (not JSON, no ``images``/``annotations``/``categories``
lists) is a ``DataError``; everything inside it becomes a finding.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from detkit.data.coco_fields import (
    Box,
    clip_box,
    crowd_flag,
    is_degenerate,
    is_id,
    is_int,
    is_number,
    is_positive_size,
    is_rle,
    read_coco_json,
    rle_decodes,
    usable_segmentation,
    xywh_to_xyxy,
)
from detkit.data.image_scan import ImageStatus, scan_images
from detkit.errors import quoted

Severity = Literal["error", "warning"]

MAX_EXAMPLES = 5
IMBALANCE_RATIO = 10.0
OUTSIDE_TOLERANCE_PX = 1.0  # beyond this a box is misplaced, not rounded
OVERSHOOT_NOTE_PX = 0.01  # below this, float noise (YOLO's 6 decimals): not reported
TINY_BOX_PX = 2.0

# code -> (severity, what it means); the order is the report's.
CHECKS: dict[str, tuple[Severity, str]] = {
    "no_images": ("error", "the file lists no images"),
    "missing_image": ("error", "image files not found"),
    "unreadable_image": ("error", "image files OpenCV cannot decode"),
    "truncated_image": ("error", "image files cut short (no end marker): an interrupted copy or download"),
    "image_too_large": ("error", "images over the pixel limit (DETKIT_MAX_IMAGE_PIXELS): never decoded"),
    "image_outside_folder": (
        "error",
        "file_name leads outside the image folder: not read (--allow-outside-images to allow)",
    ),
    "image_size_mismatch": ("error", "json width/height differ from the image file: boxes may be in another frame"),
    "malformed_image": ("error", "image records without an integer id or a file_name"),
    "duplicate_image_id": ("error", "image ids used by more than one image record"),
    "malformed_category": ("error", "category records without an integer id"),
    "duplicate_category_id": ("error", "category ids used by more than one category record"),
    "duplicate_category_name": (
        "error",
        "category names used by more than one category: their detections cannot be told apart",
    ),
    "id_out_of_range": ("error", "ids outside [0, 2**63): the evaluators index ids as 64-bit integers"),
    "malformed_annotation": ("error", "annotations without an integer id, image_id and category_id"),
    "duplicate_annotation_id": ("error", "annotation ids used more than once"),
    "zero_annotation_id": (
        "error",
        "annotation id 0: pycocotools scores a detection matched to it as a false positive",
    ),
    "malformed_iscrowd": ("error", "iscrowd is not 0 or 1: training drops these annotations"),
    "undecodable_segmentation": (
        "error",
        "RLE segmentations pycocotools cannot decode: Mask R-CNN training stops on them",
    ),
    "missing_image_id": ("error", "annotations whose image_id names no image"),
    "unknown_category": ("error", "annotations whose category_id names no category"),
    "malformed_box": ("error", "bbox is not 4 finite numbers [x, y, w, h]"),
    "degenerate_box": ("error", "boxes with w or h <= 0, or under 1 px once clipped to the image: training drops them"),
    "box_outside_image": ("error", "boxes more than 1 px outside their image: training clips them"),
    "zero_id": ("warning", "image or category id 0: some COCO tools read 0 as 'none' or background"),
    "duplicate_file_name": ("warning", "image records sharing one file"),
    "missing_image_size": ("warning", "image records without width/height (the file's size is used)"),
    "images_without_annotations": ("warning", "images with no annotations (fine for negatives)"),
    "crowd_without_rle": ("warning", "iscrowd=1 annotations whose segmentation is not an RLE"),
    "unusable_segmentation": (
        "warning",
        "segmentations that are neither polygons (>= 3 points) nor an RLE: masks use the box",
    ),
    "box_edge_overshoot": ("warning", "boxes past the image edge by at most 1 px (rounding): clipped when read"),
    "tiny_box": ("warning", "boxes with a side under 2 px: usually a click instead of a drag"),
    "duplicate_box": ("warning", "the same box and class twice in one image"),
    "unused_category": ("warning", "categories no annotation uses"),
    "class_imbalance": ("warning", "largest class count over smallest is at least 10"),
}


@dataclass(frozen=True)
class Finding:
    """One kind of problem: its code and severity, what it means, how many records have it, and
    up to ``MAX_EXAMPLES`` of them named by id and file name."""

    code: str
    severity: Severity
    message: str
    count: int
    examples: tuple[str, ...]


@dataclass(frozen=True)
class CheckReport:
    """Everything ``check_dataset`` found. ``images`` holds each decoded file's status, for ``--fix``."""

    annotation_file: Path
    image_dir: Path
    num_images: int
    num_annotations: int
    num_categories: int
    findings: tuple[Finding, ...]
    images: dict[str, ImageStatus] = field(default_factory=dict, repr=False, compare=False)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def finding(self, code: str) -> Finding | None:
        return next((f for f in self.findings if f.code == code), None)

    @property
    def missing_images(self) -> int:
        finding = self.finding("missing_image")
        return finding.count if finding is not None else 0

    @property
    def wrong_image_folder(self) -> bool:
        """At least half the image files are missing: the likely fix is another ``--images``, not
        ``--fix`` (which would drop those records)."""
        return self.num_images > 0 and self.missing_images * 2 >= self.num_images


class _Findings:
    """Counts and first examples per code, in the order of ``CHECKS``."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._examples: dict[str, list[str]] = {}
        self._messages: dict[str, str] = {}

    def add(self, code: str, example: str, count: int = 1) -> None:
        self._counts[code] += count
        examples = self._examples.setdefault(code, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(example)

    def set_message(self, code: str, message: str) -> None:
        self._messages[code] = message

    def build(self) -> tuple[Finding, ...]:
        return tuple(
            Finding(code, severity, self._messages.get(code, message), self._counts[code], tuple(self._examples[code]))
            for code, (severity, message) in CHECKS.items()
            if self._counts[code]
        )


def check_dataset(
    annotation_file: Path,
    image_dir: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    images: dict[str, ImageStatus] | None = None,
) -> CheckReport:
    """Check the COCO json at ``annotation_file`` and its images under ``image_dir``.

    ``progress(done, total)`` follows the image decoding; ``images`` reuses an earlier scan.
    """
    dataset = read_coco_json(Path(annotation_file))
    return check_coco(dataset, Path(annotation_file), Path(image_dir), progress=progress, images=images)


def check_coco(
    dataset: dict[str, Any],
    annotation_file: Path,
    image_dir: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    images: dict[str, ImageStatus] | None = None,
) -> CheckReport:
    """``check_dataset`` on an already parsed json (its top level checked by ``read_coco_json``)."""
    found = _Findings()
    if not dataset["images"]:
        found.add("no_images", f"{annotation_file}: 'images' is empty")
    image_records = _check_image_records(dataset["images"], found)
    categories = _check_categories(dataset["categories"], found)
    if images is None:
        # Every named file, not only the first record of each id: --fix keeps renumbered duplicates.
        names = [
            r["file_name"]
            for r in dataset["images"]
            if isinstance(r, dict) and isinstance(r.get("file_name"), str) and r["file_name"]
        ]
        images = scan_images(image_dir, names, progress=progress)
    sizes = _check_files(image_records, images, found)
    class_counts, annotated = _check_annotations(dataset["annotations"], image_records, categories, sizes, found)
    _check_unannotated(image_records, annotated, found)
    _check_classes(categories, class_counts, found)
    return CheckReport(
        annotation_file,
        image_dir,
        len(dataset["images"]),
        len(dataset["annotations"]),
        len(dataset["categories"]),
        found.build(),
        images,
    )


# ---------------------------------------------------------------------------------------------
# Records


def _check_image_records(records: list[Any], found: _Findings) -> dict[int, dict[str, Any]]:
    """The usable image records by id (the first of a duplicated id wins, as pycocotools' index keeps one)."""
    images: dict[int, dict[str, Any]] = {}
    files: dict[str, int] = {}
    for index, record in enumerate(records):
        if (
            not isinstance(record, dict)
            or not is_int(record.get("id"))
            or not isinstance(record.get("file_name"), str)
            or not record["file_name"]
        ):
            found.add("malformed_image", f"images[{index}]")
            continue
        image_id, file_name = record["id"], record["file_name"]
        if image_id in images:
            found.add("duplicate_image_id", f"image {image_id}: {images[image_id]['file_name']} and {file_name}")
            continue
        if image_id == 0:
            found.add("zero_id", f"image 0 ({file_name})")
        if not is_id(image_id):
            found.add("id_out_of_range", f"image {quoted(image_id)} ({file_name})")
        if file_name in files:
            found.add("duplicate_file_name", f"{file_name}: images {files[file_name]} and {image_id}")
        files.setdefault(file_name, image_id)
        images[image_id] = record
    return images


def _check_categories(records: list[Any], found: _Findings) -> dict[int, str]:
    """Category names by id (the first of a duplicated id wins)."""
    categories: dict[int, str] = {}
    ids_by_name: dict[str, int] = {}
    for index, record in enumerate(records):
        if not isinstance(record, dict) or not is_int(record.get("id")):
            found.add("malformed_category", f"categories[{index}]")
            continue
        cat_id, name = record["id"], str(record.get("name", record["id"]))
        if cat_id in categories:
            found.add("duplicate_category_id", f"category {cat_id}: {quoted(categories[cat_id])} and {quoted(name)}")
            continue
        if cat_id == 0:
            found.add("zero_id", f"category 0 ({quoted(name)})")
        if not is_id(cat_id):
            found.add("id_out_of_range", f"category {quoted(cat_id)} ({quoted(name)})")
        if name in ids_by_name:
            found.add("duplicate_category_name", f"{quoted(name)}: categories {ids_by_name[name]} and {cat_id}")
        ids_by_name.setdefault(name, cat_id)
        categories[cat_id] = name
    return categories


def _check_files(
    images: dict[int, dict[str, Any]], scan: dict[str, ImageStatus], found: _Findings
) -> dict[int, tuple[float, float] | None]:
    """File problems per image; returns each image's frame ``(W, H)``: the json's, else the file's, else None."""
    codes = {
        "missing": "missing_image",
        "unreadable": "unreadable_image",
        "truncated": "truncated_image",
        "too_large": "image_too_large",
        "outside": "image_outside_folder",
    }
    frames: dict[int, tuple[float, float] | None] = {}
    for image_id, record in images.items():
        status = scan.get(record["file_name"], ImageStatus("missing", detail="not scanned"))
        if status.state in codes:
            found.add(codes[status.state], f"image {image_id}: {record['file_name']} ({status.detail})")
        width: Any = record.get("width")  # JSON values: used as numbers once is_positive_size holds
        height: Any = record.get("height")
        has_size = is_positive_size(width) and is_positive_size(height)
        if not has_size:
            found.add("missing_image_size", f"image {image_id}: {record['file_name']}")
        elif status.size is not None and (status.size[1], status.size[0]) != (width, height):
            found.add(
                "image_size_mismatch",
                f"image {image_id}: {record['file_name']} json {width}x{height}, "
                f"file {status.size[1]}x{status.size[0]}",
            )
        if has_size:
            frames[image_id] = (float(width), float(height))
        else:
            frames[image_id] = None if status.size is None else (float(status.size[1]), float(status.size[0]))
    return frames


def _check_annotations(
    annotations: list[Any],
    images: dict[int, dict[str, Any]],
    categories: dict[int, str],
    frames: dict[int, tuple[float, float] | None],
    found: _Findings,
) -> tuple[Counter[int], set[int]]:
    """Per-annotation checks; returns non-crowd annotation counts per category and the annotated image ids."""
    seen_ids: set[int] = set()
    boxes_seen: set[tuple[int, int, tuple[float, ...]]] = set()
    class_counts: Counter[int] = Counter()
    annotated: set[int] = set()
    for index, ann in enumerate(annotations):
        if not isinstance(ann, dict) or not all(is_int(ann.get(key)) for key in ("id", "image_id", "category_id")):
            found.add("malformed_annotation", f"annotations[{index}]")
            continue
        ann_id, image_id, cat_id = ann["id"], ann["image_id"], ann["category_id"]
        if ann_id in seen_ids:
            found.add("duplicate_annotation_id", f"annotation {ann_id}")
        seen_ids.add(ann_id)
        if ann_id == 0:
            found.add("zero_annotation_id", f"annotation 0 (annotations[{index}])")
        if not is_id(ann_id):
            found.add("id_out_of_range", f"annotation {quoted(ann_id)} (annotations[{index}])")
        if image_id not in images:
            found.add("missing_image_id", f"annotation {ann_id}: image_id {image_id}")
            continue
        where = f"annotation {ann_id} in {images[image_id]['file_name']}"
        if cat_id not in categories:
            found.add("unknown_category", f"{where}: category_id {cat_id}")
            continue
        flag = crowd_flag(ann.get("iscrowd"))
        if flag is None:
            found.add("malformed_iscrowd", f"{where}: iscrowd {quoted(ann.get('iscrowd'))}")
            continue
        annotated.add(image_id)
        crowd = bool(flag)
        if crowd and not is_rle(ann.get("segmentation")):
            found.add("crowd_without_rle", where)
        _check_segmentation(ann.get("segmentation"), where, found)
        box = _box_or_report(ann.get("bbox"), where, found)
        if box is None:
            continue
        class_counts[cat_id] += not crowd
        _check_geometry(box, frames[image_id], where, found)
        if not crowd:  # a crowd region may well coincide with a box
            key = (image_id, cat_id, tuple(round(v, 3) for v in box))
            if key in boxes_seen:
                found.add("duplicate_box", where)
            boxes_seen.add(key)
    return class_counts, annotated


def _check_segmentation(segmentation: Any, where: str, found: _Findings) -> None:
    """What Mask R-CNN training would do with a segmentation: stop on an RLE it cannot decode, use the
    box for one it cannot read at all (an absent or empty one is the usual box-only annotation)."""
    if segmentation in (None, [], {}):
        return
    usable = usable_segmentation(segmentation)
    if usable is None:
        found.add("unusable_segmentation", f"{where}: segmentation {quoted(segmentation)}")
    elif isinstance(usable, dict) and not rle_decodes(usable):
        found.add("undecodable_segmentation", f"{where}: RLE {quoted(usable.get('counts'))}")


def _box_or_report(bbox: Any, where: str, found: _Findings) -> Box | None:
    box = xywh_to_xyxy(bbox)
    if box is not None:
        return box
    finite = isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(is_number(v) for v in bbox)
    if finite:  # 4 numbers, but a negative width or height
        found.add("degenerate_box", f"{where}: bbox {list(bbox)}")
    else:
        found.add("malformed_box", f"{where}: bbox {quoted(bbox)}")
    return None


def _check_geometry(box: Box, frame: tuple[float, float] | None, where: str, found: _Findings) -> None:
    """Degenerate, outside-the-image and tiny boxes; ``frame`` is the image's ``(W, H)``, if known."""
    x1, y1, x2, y2 = box
    width, height = frame if frame is not None else (None, None)
    overshoot = max(-x1, -y1, x2 - width if width else 0.0, y2 - height if height else 0.0)
    if overshoot > OUTSIDE_TOLERANCE_PX:
        found.add("box_outside_image", f"{where}: xyxy {_xyxy_text(box)} in {_frame_text(frame)}")
    elif overshoot > OVERSHOOT_NOTE_PX:
        found.add("box_edge_overshoot", f"{where}: by {overshoot:.2f} px")
    clipped = clip_box(box, width, height)
    if x2 - x1 <= 0 or y2 - y1 <= 0 or is_degenerate(clipped):
        found.add("degenerate_box", f"{where}: xyxy {_xyxy_text(box)} in {_frame_text(frame)}")
    elif min(clipped[2] - clipped[0], clipped[3] - clipped[1]) < TINY_BOX_PX:
        found.add("tiny_box", f"{where}: xyxy {_xyxy_text(box)}")


def _check_unannotated(images: dict[int, dict[str, Any]], annotated: set[int], found: _Findings) -> None:
    for image_id, record in images.items():
        if image_id not in annotated:
            found.add("images_without_annotations", f"image {image_id}: {record['file_name']}")


def _check_classes(categories: dict[int, str], class_counts: Counter[int], found: _Findings) -> None:
    for cat_id, name in categories.items():
        if not class_counts[cat_id]:
            found.add("unused_category", f"category {cat_id} '{name}'")
    used = sorted(((class_counts[c], c) for c in categories if class_counts[c]), reverse=True)
    if len(used) < 2:
        return
    (largest, largest_id), (smallest, smallest_id) = used[0], used[-1]
    ratio = largest / smallest
    if ratio < IMBALANCE_RATIO:
        return
    rare = [(count, cat_id) for count, cat_id in used if largest / count >= IMBALANCE_RATIO]
    found.set_message(
        "class_imbalance",
        f"largest class '{categories[largest_id]}' ({largest}) over smallest "
        f"'{categories[smallest_id]}' ({smallest}) is {ratio:.1f}x; "
        f"classes under 1/{IMBALANCE_RATIO:g} of the largest:",
    )
    for count, cat_id in reversed(rare):
        found.add("class_imbalance", f"'{categories[cat_id]}': {count}")


def _xyxy_text(box: Box) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def _frame_text(frame: tuple[float, float] | None) -> str:
    return "an image of unknown size" if frame is None else f"{frame[0]:g}x{frame[1]:g}"
