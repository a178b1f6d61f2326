"""Which of the three layouts a path holds: COCO json, Pascal VOC folder, or YOLO folder/data.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from detkit.data.formats.voc import ANNOTATIONS
from detkit.data.formats.yolo import find_data_yaml
from detkit.errors import DataError

Format = Literal["coco", "voc", "yolo"]
FORMATS: tuple[Format, ...] = ("coco", "voc", "yolo")

LAYOUTS = (
    "a COCO instances .json file; "
    "a Pascal VOC folder with Annotations/*.xml, JPEGImages/ and ImageSets/Main/<split>.txt; "
    "or a YOLO folder with data.yaml, images/<split>/ and labels/<split>/ (or the data.yaml itself)"
)


def detect_format(path: Path) -> Format:
    """``coco`` for a .json file, ``voc`` for a folder with ``Annotations/``, ``yolo`` for a folder
    with ``data.yaml`` or a .yaml file; else ``DataError`` naming the path and the three layouts."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found; pass {LAYOUTS}")
    if path.is_file() and path.suffix.lower() == ".json":
        return "coco"
    if path.is_dir() and (path / ANNOTATIONS).is_dir():
        return "voc"
    if find_data_yaml(path) is not None:
        return "yolo"
    raise DataError(f"{path}: not a dataset detkit reads; pass {LAYOUTS}")
