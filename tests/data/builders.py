"""Small datasets on disk for the format, check and fuzz tests: images, VOC XML, YOLO folders."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np


def write_image(path: Path, height: int, width: int, extension: str = ".png") -> Path:
    """A flat grey image of ``(height, width)`` at ``path`` (encoded by its extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(extension, np.full((height, width, 3), 120, np.uint8))
    assert ok
    path.write_bytes(data.tobytes())
    return path


def voc_object(name: str, xmin, ymin, xmax, ymax, difficult: int | None = 0, truncated: int | None = 0) -> str:
    flags = ""
    if difficult is not None:
        flags += f"<difficult>{difficult}</difficult>"
    if truncated is not None:
        flags += f"<truncated>{truncated}</truncated>"
    return (
        f"<object><name>{name}</name>{flags}<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
        f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
    )


def voc_xml(filename: str | None, size: tuple[int, int] | None, objects: list[str]) -> str:
    """An annotation file; ``size`` is ``(H, W)`` or None for no ``<size>``."""
    parts = ["<annotation><folder>JPEGImages</folder>"]
    if filename is not None:
        parts.append(f"<filename>{filename}</filename>")
    if size is not None:
        parts.append(f"<size><width>{size[1]}</width><height>{size[0]}</height><depth>3</depth></size>")
    parts += objects
    parts.append("</annotation>")
    return "".join(parts)


def write_voc(
    root: Path, records: dict[str, tuple[tuple[int, int], list[str]]], splits: dict[str, list[str]] | None
) -> Path:
    """A VOC folder: ``records`` maps image id -> ((H, W), object snippets); each image is a JPEG."""
    for image_id, (size, objects) in records.items():
        write_image(root / "JPEGImages" / f"{image_id}.jpg", *size, extension=".jpg")
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{image_id}.xml").write_text(voc_xml(f"{image_id}.jpg", size, objects))
    for split, ids in (splits or {}).items():
        (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def write_yolo(
    root: Path, names, images: dict[str, dict[str, tuple[tuple[int, int], str | None]]], extra_yaml: str = ""
) -> Path:
    """A YOLO folder: ``images[split][file name] = ((H, W), label text or None for no label file)``."""
    for split, files in images.items():
        for name, (size, labels) in files.items():
            write_image(root / "images" / split / name, *size, extension=Path(name).suffix)
            if labels is not None:
                label = root / "labels" / split / Path(name).with_suffix(".txt")
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text(labels)
    split_lines = "".join(f"{split}: images/{split}\n" for split in images)
    (root / "data.yaml").write_text(f"names: {json.dumps(names)}\n{split_lines}{extra_yaml}")
    return root


def write_coco(
    root: Path, images: list[dict], annotations: list[dict], categories: list[dict], *, write_images: bool = True
) -> Path:
    """A COCO json at ``root/instances.json``, with a PNG of the declared size for each image record
    that declares one (``write_images``)."""
    root.mkdir(parents=True, exist_ok=True)
    if write_images:
        for image in images:
            if "height" in image and "width" in image:
                write_image(root / image["file_name"], image["height"], image["width"])
    path = root / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path
