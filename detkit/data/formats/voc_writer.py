"""Writing Pascal VOC: ``Annotations/<id>.xml``, ``JPEGImages/<id>.<ext>``, ``ImageSets/Main/<split>.txt``.

Boxes are written as VOC's 1-based inclusive indices, the inverse of the reader: ``xmin = x1 + 1,
ymin = y1 + 1, xmax = x2, ymax = y2`` (whole numbers as integers, others to 6 decimals), after
clipping to the image; boxes under 1 px after clipping are dropped. Crowd regions become
``<difficult>1</difficult>`` (VOC evaluation ignores difficult objects as COCO's ignores crowds);
COCO ``difficult``/``truncated`` keys, as the VOC reader writes them, are restored. Masks are not
written (VOC's segmentation PNGs are a separate task).

Images must sit in ``JPEGImages/``: each is hard-linked there (copied across file systems), keeping
its own format and extension (a PNG stays a PNG; ``<filename>`` says which). Image ids are the
file names without extension; a name taken by a different image (synthetic train and val both
have ``000001.png``) gets its split as a prefix. With ``train`` and ``val`` but no ``trainval``,
``trainval.txt`` is written as their union, as VOC tools expect it.

The whole folder is built beside ``out`` and renamed into place: a failed conversion leaves nothing.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from detkit.data.formats.marker import mark_folder
from detkit.data.formats.placing import PlacementCounts, place_image, safe_relative
from detkit.data.formats.report import ConversionReport, SplitSummary
from detkit.data.formats.split import DatasetSplit, ExportObject, fill_image_sizes, objects_by_image
from detkit.data.formats.voc import ANNOTATIONS, IMAGES, SPLIT_LISTS
from detkit.errors import DataError
from detkit.io import atomic_directory, atomic_write_text


def write_voc(splits: list[DatasetSplit], out: Path, *, replace: bool = False) -> ConversionReport:
    """Write ``splits`` as one VOC folder at ``out``; see the module docstring."""
    report = ConversionReport(out, "voc")
    placed: dict[Path, tuple[str, tuple[ExportObject, ...]]] = {}  # source image -> (id, objects)
    taken: set[str] = set()
    lists: dict[str, list[str]] = {}
    counts = PlacementCounts()
    with atomic_directory(out, replace=replace) as tmp:
        mark_folder(tmp, "voc")
        for split in splits:
            _check_class_names(split)
            fill_image_sizes(split)
            objects, export_counts = objects_by_image(split, crowd_as_difficult=True)
            ids = [
                _write_image(tmp, split, image, tuple(objects[image["id"]]), placed, taken, counts)
                for image in split.coco["images"]
            ]
            lists[split.name] = ids
            written = sum(len(v) for v in objects.values())
            report.splits.append(SplitSummary.of(split, out / IMAGES, num_annotations=written))
            report.notes += [f"{split.name}: {note}" for note in split.notes + export_counts.notes("VOC")]
        if "train" in lists and "val" in lists and "trainval" not in lists:
            lists["trainval"] = list(dict.fromkeys(lists["train"] + lists["val"]))
        for name, ids in lists.items():
            atomic_write_text(tmp / SPLIT_LISTS / f"{name}.txt", "".join(f"{image_id}\n" for image_id in ids))
    report.notes.append(counts.note())
    return report


def _check_class_names(split: DatasetSplit) -> None:
    names = split.class_names
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DataError(
            f"split '{split.name}': class names {duplicates} are used by more than one category; "
            "VOC identifies classes by name, so rename them in the COCO categories"
        )


def _write_image(
    tmp: Path,
    split: DatasetSplit,
    image: dict[str, Any],
    objects: tuple[ExportObject, ...],
    placed: dict[Path, tuple[str, tuple[ExportObject, ...]]],
    taken: set[str],
    counts: PlacementCounts,
) -> str:
    """Place one image and write its XML (unless the same picture with the same objects already
    was, from another split); return its VOC id."""
    source = split.image_dir / image["file_name"]
    key = source.resolve()
    if key in placed and placed[key][1] == objects:
        return placed[key][0]
    relative = safe_relative(image["file_name"])
    image_id = _unique_id("_".join(relative.with_suffix("").parts), split.name, taken)
    file_name = f"{image_id}{relative.suffix}"
    place_image(source, tmp / IMAGES / file_name, counts)
    xml = _annotation_xml(file_name, image["height"], image["width"], objects, split.class_names)
    atomic_write_text(tmp / ANNOTATIONS / f"{image_id}.xml", xml)
    placed[key] = (image_id, objects)
    taken.add(image_id)
    return image_id


def _unique_id(base: str, split: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    candidate, number = f"{split}_{base}", 2
    while candidate in taken:
        candidate, number = f"{split}_{base}_{number}", number + 1
    return candidate


def _annotation_xml(
    file_name: str, height: int, width: int, objects: tuple[ExportObject, ...], class_names: list[str]
) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = IMAGES
    ET.SubElement(root, "filename").text = file_name
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(int(value))
    ET.SubElement(root, "segmented").text = "0"
    for voc_object in objects:
        element = ET.SubElement(root, "object")
        ET.SubElement(element, "name").text = class_names[voc_object.label]
        ET.SubElement(element, "pose").text = "Unspecified"
        ET.SubElement(element, "truncated").text = str(int(voc_object.truncated))
        ET.SubElement(element, "difficult").text = str(int(voc_object.difficult))
        box = ET.SubElement(element, "bndbox")
        x1, y1, x2, y2 = voc_object.box
        for tag, position in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(box, tag).text = _coordinate(position)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def _coordinate(value: float) -> str:
    """Whole pixels as integers (what VOC tools parse with ``int()``), others to 1e-6 px."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text
