"""Reading Pascal VOC: ``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``.

Boxes: VOC ``<bndbox>`` holds 1-based inclusive pixel indices (``xmin = 1`` is the first column,
``xmax = W`` the last). detkit's boxes are continuous xyxy pixels where the image spans ``[0, W]``,
so ``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax`` (detectron2's reading of VOC); the writer
inverts it exactly.

Classes: VOC lists none. The default order is every ``<name>`` found in ``Annotations/`` (all of
it, not one split, so that train and val get the same labels), sorted; ``classes`` gives an explicit
order, and an object of another class is then an error. COCO category ids are 1..K in that order.

Flags: ``difficult`` objects are kept as ordinary annotations with ``"difficult": 1`` in the COCO
record (detectron2 trains on them too: they do not hurt accuracy), ``"truncated"`` likewise; COCO
tools ignore the extra keys, and the VOC writer restores both.

Splits: each ``ImageSets/Main/<split>.txt`` (class-specific lists such as ``cat_train.txt`` are
skipped). Without ``ImageSets/Main`` every XML is in the one split ``all``.

Geometry is not judged here: a box with ``xmin > xmax`` or outside the image is read as written,
for ``detkit data check`` to report and ``CocoDetection`` to drop or clip. What cannot be read
(missing tags, text where numbers belong, malformed XML) is a ``DataError`` naming file and object.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from detkit.data.coco_fields import Box
from detkit.data.formats.image_size import read_image_size
from detkit.data.formats.safe_xml import parse_xml_file
from detkit.data.formats.split import DatasetSplit, add_annotation, add_image, new_coco
from detkit.data.image_paths import image_path
from detkit.errors import DataError, quoted
from detkit.io import read_regular_bytes

ANNOTATIONS = "Annotations"
IMAGES = "JPEGImages"
SPLIT_LISTS = Path("ImageSets") / "Main"
ALL = "all"
# Tried in order when an XML's <filename> is absent or names no file in the image folder.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_STANDARD_SPLITS = ("train", "val", "trainval", "test")  # VOC's own, in reading order
_CLASS_LIST = re.compile(r"^.+_(?P<split>[^_]+)$")


@dataclass(frozen=True)
class VocObject:
    """One ``<object>``: class name, xyxy pixel box (see the module docstring), flags."""

    name: str
    box: Box
    difficult: bool
    truncated: bool


@dataclass(frozen=True)
class VocRecord:
    """One annotation file: its path, ``<filename>``, ``<size>`` as ``(H, W)`` (None if absent) and objects."""

    xml: Path
    filename: str | None
    size: tuple[int, int] | None
    objects: tuple[VocObject, ...]


# ---------------------------------------------------------------------------------------------
# Splits


def voc_splits(root: Path) -> list[str]:
    """Split names of a VOC folder: its split lists, or ``["all"]`` when it has none."""
    folder = root / SPLIT_LISTS
    stems = sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []
    stems = [s for s in stems if not _is_class_list(s, stems)]
    # The usual splits first, in the order a user reads them; others after, sorted.
    ordered = [s for s in _STANDARD_SPLITS if s in stems] + [s for s in stems if s not in _STANDARD_SPLITS]
    return ordered or [ALL]


def _is_class_list(stem: str, stems: list[str]) -> bool:
    match = _CLASS_LIST.match(stem)
    return match is not None and match["split"] in stems and stem not in _STANDARD_SPLITS


def default_voc_splits(root: Path) -> tuple[str, str]:
    """(train split, validation split): ``train`` (else ``trainval``, else ``all``) and ``val``
    (else ``test``, else the train split)."""
    splits = voc_splits(root)
    train = next((s for s in ("train", "trainval") if s in splits), ALL)
    val = next((s for s in ("val", "test") if s in splits), train)
    return train, val


def split_ids(root: Path, split: str) -> list[str]:
    """Image ids of ``split`` in list order (duplicates once); ``all`` without a list is every XML."""
    path = root / SPLIT_LISTS / f"{split}.txt"
    if split == ALL and not path.is_file():
        return sorted(p.stem for p in (root / ANNOTATIONS).glob("*.xml"))
    if not path.is_file():
        raise DataError(f"{path}: VOC split '{split}' not found; choose one of {', '.join(voc_splits(root))}")
    try:
        lines = read_regular_bytes(path).decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(
            f"{path}: cannot read the split list ({error}); save it as UTF-8 text, one image id a line"
        ) from None
    # A line may carry more columns (class lists add 1/-1); the id is the first.
    ids = [line.split()[0] for line in lines if line.strip()]
    return list(dict.fromkeys(ids))


def check_voc_root(root: Path) -> None:
    if not (root / ANNOTATIONS).is_dir():
        raise DataError(
            f"{root}: no {ANNOTATIONS}/ folder; "
            f"a Pascal VOC dataset has {ANNOTATIONS}/*.xml, {IMAGES}/ and ImageSets/Main/"
        )


# ---------------------------------------------------------------------------------------------
# One XML file


def parse_voc_xml(path: Path) -> VocRecord:
    """Read one VOC annotation file; ``DataError`` naming the file and object on anything unreadable."""
    root = parse_xml_file(path, what="VOC annotation file")
    if root.tag != "annotation":
        raise DataError(f"{path}: root element is <{root.tag}>, not <annotation>; is this a Pascal VOC file?")
    filename = _text(root, "filename")
    objects = tuple(_parse_object(path, index, element) for index, element in enumerate(root.findall("object")))
    return VocRecord(path, filename or None, _parse_size(path, root), objects)


def _text(element: ET.Element, tag: str) -> str | None:
    child = element.find(tag)
    return None if child is None or child.text is None else child.text.strip()


def _parse_size(path: Path, root: ET.Element) -> tuple[int, int] | None:
    """``<size>`` as ``(H, W)``; None when absent or zero (common in hand-made files: read the image)."""
    size = root.find("size")
    if size is None:
        return None
    values = []
    for tag in ("height", "width"):
        text = _text(size, tag)
        if text is None:
            return None
        value = _number(text)
        if value is None or value < 0 or value != int(value):
            raise DataError(
                f"{path}: <size><{tag}> is {quoted(text)}, not a whole number of pixels; fix it or remove <size>"
            )
        values.append(int(value))
    return (values[0], values[1]) if values[0] > 0 and values[1] > 0 else None


def _parse_object(path: Path, index: int, element: ET.Element) -> VocObject:
    where = f"{path}: object {index + 1}"
    name = _text(element, "name")
    if not name:
        raise DataError(f"{where} has no <name>; add the class name or remove the object")
    box_element = element.find("bndbox")
    if box_element is None:
        raise DataError(
            f"{where} ({quoted(name)}) has no <bndbox>; add <xmin>, <ymin>, <xmax>, <ymax> or remove the object"
        )
    corners = []
    for tag in ("xmin", "ymin", "xmax", "ymax"):
        text = _text(box_element, tag)
        value = None if text is None else _number(text)
        if value is None:
            problem = f"has no <{tag}>" if text is None else f"has <{tag}> {quoted(text)}, not a finite number"
            raise DataError(f"{where} ({quoted(name)}) {problem}; write the box as pixel coordinates")
        corners.append(value)
    xmin, ymin, xmax, ymax = corners
    box = (xmin - 1.0, ymin - 1.0, xmax, ymax)  # 1-based inclusive indices -> continuous [0, W] coordinates
    return VocObject(name, box, _flag(where, element, "difficult"), _flag(where, element, "truncated"))


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _flag(where: str, element: ET.Element, tag: str) -> bool:
    """A 0/1 flag; absent or empty is 0 (many tools omit them)."""
    text = _text(element, tag)
    if not text:
        return False
    value = _number(text)
    if value not in (0.0, 1.0):
        raise DataError(f"{where} has <{tag}> {quoted(text)}; write 0 or 1")
    return value == 1.0


# ---------------------------------------------------------------------------------------------
# A split as COCO


def read_voc(
    root: Path, split: str, *, images: Path | None = None, classes: Sequence[str] | None = None
) -> DatasetSplit:
    """Split ``split`` of the VOC dataset at ``root`` as a ``DatasetSplit`` (``file_name`` relative to
    ``images``, by default ``root/JPEGImages``)."""
    check_voc_root(root)
    image_dir = images if images is not None else root / IMAGES
    ids = split_ids(root, split)
    records = [_record_of(root, split, image_id) for image_id in ids]
    names = _class_names(root, records, classes)
    category_of = {name: index + 1 for index, name in enumerate(names)}
    coco = new_coco(names, description=f"Pascal VOC {root} split {split}, converted by detkit")
    split_data = DatasetSplit(split, coco, image_dir)
    unsized = 0
    for image_id, record in zip(ids, records):
        file_name = _image_file_name(image_dir, record, image_id)
        size = record.size or read_image_size(image_dir / file_name)
        unsized += size is None
        coco_image_id = add_image(coco, file_name, size)
        for voc_object in record.objects:
            if voc_object.name not in category_of:
                raise DataError(
                    f"{record.xml}: class {quoted(voc_object.name)} is not in the class list {quoted(names, 200)}; "
                    "add it to --classes"
                )
            add_annotation(
                coco,
                coco_image_id,
                category_of[voc_object.name],
                voc_object.box,
                difficult=int(voc_object.difficult),
                truncated=int(voc_object.truncated),
            )
    if unsized:
        split_data.notes.append(
            f"{unsized} images have no <size> and no readable file; their width/height are left out"
        )
    return split_data


def _record_of(root: Path, split: str, image_id: str) -> VocRecord:
    xml = root / ANNOTATIONS / f"{image_id}.xml"
    if not xml.is_file():
        raise DataError(
            f"{root / SPLIT_LISTS / f'{split}.txt'}: image id {quoted(image_id)} has no "
            f"{ANNOTATIONS}/{image_id}.xml; add it or remove the line"
        )
    return parse_voc_xml(xml)


def _class_names(root: Path, records: list[VocRecord], classes: Sequence[str] | None) -> list[str]:
    if classes is not None:
        names = [str(c).strip() for c in classes]
        if not names or len(set(names)) != len(names) or not all(names):
            raise DataError(
                f"class list {quoted(list(classes), 200)} must name each class once; pass e.g. --classes cat,dog"
            )
        return names
    # Every file, not just this split's: train and val must agree on labels.
    found = {o.name for r in records for o in r.objects}
    listed = {r.xml for r in records}
    for xml in sorted((root / ANNOTATIONS).glob("*.xml")):
        if xml not in listed:
            found.update(o.name for o in parse_voc_xml(xml).objects)
    return sorted(found)


def all_class_names(root: Path) -> list[str]:
    """Every class name in ``root/Annotations``, sorted (the default class order)."""
    check_voc_root(root)
    return _class_names(root, [], None)


def _image_file_name(image_dir: Path, record: VocRecord, image_id: str) -> str:
    """The image's path relative to ``image_dir``: ``<filename>`` when that file exists, else
    ``<id>.<ext>`` for the first extension that exists, else ``<filename>`` (or ``<id>.jpg``) as is,
    for ``detkit data check`` to report as missing."""
    if record.filename and image_path(image_dir, record.filename, where=f"{record.xml}: <filename>").is_file():
        return record.filename
    for extension in IMAGE_EXTENSIONS:
        if (image_dir / f"{image_id}{extension}").is_file():
            return f"{image_id}{extension}"
    return record.filename or f"{image_id}.jpg"


def voc_source_files(root: Path, images: Path | None) -> tuple[list[Path], list[Path]]:
    """(files whose content the conversion reads, image files whose presence it depends on)."""
    annotation_files = sorted((root / ANNOTATIONS).glob("*.xml"))
    lists = root / SPLIT_LISTS
    annotation_files += sorted(lists.glob("*.txt")) if lists.is_dir() else []
    image_dir = images if images is not None else root / IMAGES
    image_files = sorted(p for p in image_dir.iterdir() if p.is_file()) if image_dir.is_dir() else []
    return annotation_files, image_files
