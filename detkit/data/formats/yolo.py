"""Reading YOLO (the Ultralytics layout): ``data.yaml``, ``images/<split>/``, ``labels/<split>/*.txt``.

``data.yaml`` names the classes (``names:`` as a list, or a ``{index: name}`` map; ``nc`` alone
gives ``class_0 .. class_{nc-1}``) and each split (``train:``, ``val:``, ``test:`` or any other
key) as an image folder, a ``.txt`` list of image paths, or a list of either. Relative entries are
resolved against ``path:`` (itself relative to the yaml's folder, or ignored when that folder does
not exist: Ultralytics resolves it against its own datasets folder) or the yaml's folder. Lines of
a ``.txt`` list are relative to the list's folder.

Each image's labels are found as Ultralytics finds them: the last ``/images/`` in its path becomes
``/labels/`` and the extension ``.txt``. A missing label file is an image with no objects. A label
line is ``class cx cy w h`` normalised to ``[0, 1]`` by the image's width and height, or a polygon
``class x1 y1 x2 y2 ...`` (Ultralytics' segment format), read as its bounding box plus the polygon
as the COCO segmentation. Boxes come out in pixels: ``x1 = (cx - w / 2) * W`` and so on, with
``(H, W)`` from the image file's header.

Classes keep the yaml's order; COCO category ids are ``index + 1`` (ids from 1, see split.py).
An image whose size cannot be read (missing, corrupt) is kept without width/height and its labels
are skipped, with a note, so that ``detkit data check`` can still report it. Anything unreadable
in the yaml or a label file is a ``DataError`` naming the file, the line and the fix.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from detkit.data.coco_fields import Box
from detkit.data.formats.image_size import read_image_size
from detkit.data.formats.split import DatasetSplit, add_annotation, add_image, new_coco
from detkit.data.image_paths import image_path
from detkit.errors import DataError, quoted
from detkit.io import read_regular_bytes

DATA_YAML_NAMES = ("data.yaml", "data.yml")
MAX_YAML_BYTES = 1 << 20  # a data.yaml is a few hundred bytes
IMAGE_EXTENSIONS = frozenset({".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"})
# data.yaml keys that are not splits (Ultralytics' own and common extras).
_NOT_SPLITS = frozenset({"path", "names", "nc", "download", "yaml_file", "kpt_shape", "flip_idx", "channels"})
# Normalised values a little outside [0, 1] are rounding from other tools; beyond this they are
# pixel coordinates or garbage, which Ultralytics refuses too.
_NORMALISED_TOLERANCE = 0.01


@dataclass(frozen=True)
class YoloConfig:
    """A parsed data.yaml: its path, the folder relative entries start from, class names, and each
    split's entries as written."""

    yaml_path: Path
    root: Path
    names: list[str]
    splits: dict[str, list[str]]


@dataclass(frozen=True)
class YoloLabel:
    """One label line in pixels: class index, xyxy box, and the polygon (flat x, y list) if any."""

    label: int
    box: Box
    polygon: list[float] | None


# ---------------------------------------------------------------------------------------------
# data.yaml


def find_data_yaml(path: Path) -> Path | None:
    """``path`` itself when it is a yaml file, else the data.yaml inside the folder, else None."""
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return path
    if path.is_dir():
        return next((path / name for name in DATA_YAML_NAMES if (path / name).is_file()), None)
    return None


def load_data_yaml(path: Path) -> YoloConfig:
    """Parse and check a data.yaml (``path`` is the file or its folder)."""
    yaml_path = find_data_yaml(path)
    if yaml_path is None:
        raise DataError(f"{path}: no data.yaml; a YOLO dataset has data.yaml with 'names' and split paths")
    try:
        data = yaml.safe_load(read_regular_bytes(yaml_path, max_bytes=MAX_YAML_BYTES))
    except OSError as error:
        raise DataError(f"{yaml_path}: cannot read ({error.strerror}); check its permissions") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise DataError(f"{yaml_path}: invalid YAML{where}; fix the file") from None
    except RecursionError:
        raise DataError(f"{yaml_path}: YAML nested too deeply to read; fix the file") from None
    if not isinstance(data, dict):
        raise DataError(f"{yaml_path}: not a YAML mapping; data.yaml maps 'names' and 'train'/'val' to values")
    names = _class_names(yaml_path, data)
    splits = {key: _split_entries(yaml_path, key, value) for key, value in data.items() if _is_split(key, value)}
    if not splits:
        raise DataError(f"{yaml_path}: names no split; add e.g. 'train: images/train' and 'val: images/val'")
    return YoloConfig(yaml_path, _root(yaml_path, data.get("path")), names, splits)


def _is_split(key: Any, value: Any) -> bool:
    return isinstance(key, str) and key not in _NOT_SPLITS and value is not None and isinstance(value, (str, list))


def _split_entries(yaml_path: Path, key: str, value: Any) -> list[str]:
    entries = [value] if isinstance(value, str) else value
    if not entries or not all(isinstance(e, str) and e.strip() for e in entries):
        raise DataError(f"{yaml_path}: split {quoted(key)} must be a path or a list of paths; got {quoted(value)}")
    return [e.strip() for e in entries]


def _class_names(yaml_path: Path, data: dict[Any, Any]) -> list[str]:
    names, count = data.get("names"), data.get("nc")
    if count is not None and not (isinstance(count, int) and not isinstance(count, bool) and count > 0):
        raise DataError(f"{yaml_path}: nc is {quoted(count)}; write the number of classes")
    if names is None:
        if count is None:
            raise DataError(f"{yaml_path}: no 'names'; list the class names in label order")
        return [f"class_{index}" for index in range(count)]
    if isinstance(names, dict):
        names = _names_from_mapping(yaml_path, names)
    if (
        not isinstance(names, list)
        or not names
        or not all(isinstance(n, (str, int, float)) and not isinstance(n, bool) for n in names)
    ):
        raise DataError(f"{yaml_path}: 'names' must be a list of class names or a {{index: name}} map")
    if count is not None and count != len(names):
        raise DataError(f"{yaml_path}: nc is {count} but 'names' has {len(names)} entries; make them agree")
    return [str(n) for n in names]


def _names_from_mapping(yaml_path: Path, names: dict[Any, Any]) -> list[Any]:
    # Whole numbers only, written as numbers or digits: int() would also take 1.5, True or inf.
    if not all(
        (isinstance(key, int) and not isinstance(key, bool)) or (isinstance(key, str) and key.strip().isdigit())
        for key in names
    ):
        raise DataError(f"{yaml_path}: 'names' keys must be class indices 0, 1, ...")
    by_index = {int(key): value for key, value in names.items()}
    if sorted(by_index) != list(range(len(by_index))):
        raise DataError(
            f"{yaml_path}: 'names' indices are {sorted(by_index)}; number the classes 0..{len(by_index) - 1}"
        )
    return [by_index[index] for index in range(len(by_index))]


def _root(yaml_path: Path, path_value: Any) -> Path:
    if isinstance(path_value, str) and path_value.strip():
        root = Path(path_value.strip())
        root = root if root.is_absolute() else yaml_path.parent / root
        if root.is_dir():
            return root.resolve()  # 'path: ..' is common; keep file names free of '..'
    return yaml_path.parent


def yolo_splits(path: Path) -> list[str]:
    return list(load_data_yaml(path).splits)


def default_yolo_splits(path: Path) -> tuple[str, str]:
    """(train split, validation split): ``train`` (else the first split) and ``val`` (else ``test``,
    else the train split)."""
    splits = yolo_splits(path)
    train = "train" if "train" in splits else splits[0]
    val = next((s for s in ("val", "test") if s in splits), train)
    return train, val


# ---------------------------------------------------------------------------------------------
# Images and label files


def split_images(config: YoloConfig, split: str, images: Path | None = None) -> tuple[list[Path], Path]:
    """The split's image files, and the folder COCO ``file_name`` entries are relative to
    (``images`` if given, the split's folder when it is one folder, else the images' common folder)."""
    if split not in config.splits:
        raise DataError(f"{config.yaml_path}: no split {quoted(split)}; choose one of {', '.join(config.splits)}")
    if images is not None:
        return _images_in(images, config.yaml_path, split), images
    files: list[Path] = []
    folders: list[Path] = []
    for entry in config.splits[split]:
        location = Path(entry) if Path(entry).is_absolute() else config.root / entry
        if location.is_dir():
            files += _images_in(location, config.yaml_path, split)
            folders.append(location)
        elif location.is_file() and location.suffix == ".txt":
            files += _images_listed(location, config.root)
        else:
            raise DataError(
                f"{config.yaml_path}: split {quoted(split)} entry {quoted(entry)} is not a folder or .txt list; "
                "fix the path"
            )
    files = list(dict.fromkeys(files))
    if len(folders) == 1 and len(config.splits[split]) == 1:
        return files, folders[0]
    return files, _common_folder(files, config.root)


def _images_in(folder: Path, yaml_path: Path, split: str) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder of split {quoted(split)} not found; check {yaml_path}")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _images_listed(list_file: Path, root: Path) -> list[Path]:
    """The image paths of a ``.txt`` list (relative lines start at the list's folder): each must lie
    inside the dataset's folder ``root`` (``image_paths``); lines naming no image file type are skipped,
    as Ultralytics skips them."""
    try:
        lines = read_regular_bytes(list_file).decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(
            f"{list_file}: cannot read the image list ({error}); save it as UTF-8, one image path a line"
        ) from None
    paths = []
    for number, line in enumerate((line.strip() for line in lines), start=1):
        if line and Path(line).suffix.lower() in IMAGE_EXTENSIONS:
            absolute = os.path.join(list_file.parent, line)  # an absolute line replaces the folder
            paths.append(image_path(root, os.path.relpath(absolute, root), where=f"{list_file}: line {number}"))
    return paths


def _common_folder(files: list[Path], fallback: Path) -> Path:
    if not files:
        return fallback
    return Path(os.path.commonpath([str(f.parent) for f in files]))


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last ``/images/`` of the path becomes ``/labels/``, the extension ``.txt``."""
    parts = list(image.parts)
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] == "images":
            parts[index] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def parse_label_file(path: Path, num_classes: int, size: tuple[int, int]) -> list[YoloLabel]:
    """The labels of one image of ``size`` ``(H, W)``; [] when the file does not exist."""
    try:
        text = read_regular_bytes(path).decode("utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read the label file ({error}); save it as UTF-8 text") from None
    labels = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if fields:
            labels.append(_parse_line(f"{path}: line {number}", fields, num_classes, size))
    return labels


def _parse_line(where: str, fields: list[str], num_classes: int, size: tuple[int, int]) -> YoloLabel:
    if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
        raise DataError(
            f"{where} has {len(fields)} fields; write 'class cx cy w h' or a polygon 'class x1 y1 x2 y2 x3 y3 ...'"
        )
    label = _class_index(where, fields[0], num_classes)
    values = [_normalised(where, position, text) for position, text in enumerate(fields[1:], start=2)]
    height, width = size
    if len(fields) == 5:
        cx, cy, w, h = values
        box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        return YoloLabel(label, box, None)
    polygon = [v * (width if i % 2 == 0 else height) for i, v in enumerate(values)]
    xs, ys = polygon[0::2], polygon[1::2]
    return YoloLabel(label, (min(xs), min(ys), max(xs), max(ys)), polygon)


def _class_index(where: str, text: str, num_classes: int) -> int:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value.is_integer():
        raise DataError(f"{where}: class {quoted(text)} is not a whole number; the first field is the class index")
    if not 0 <= value < num_classes:
        raise DataError(
            f"{where}: class {int(value)} is out of range; data.yaml names {num_classes} classes (0..{num_classes - 1})"
        )
    return int(value)


def _normalised(where: str, position: int, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(
            f"{where}: field {position} is {quoted(text)}, not a number; write normalised coordinates"
        ) from None
    if not math.isfinite(value):
        raise DataError(f"{where}: field {position} is {quoted(text)}; write a finite normalised coordinate")
    if not -_NORMALISED_TOLERANCE <= value <= 1 + _NORMALISED_TOLERANCE:
        raise DataError(
            f"{where}: field {position} is {text}, outside [0, 1]; YOLO coordinates are normalised "
            "(divide pixel values by the image width or height)"
        )
    return value


# ---------------------------------------------------------------------------------------------
# A split as COCO


def read_yolo(path: Path, split: str, *, images: Path | None = None) -> DatasetSplit:
    """Split ``split`` of the YOLO dataset at ``path`` (data.yaml or its folder) as a ``DatasetSplit``;
    ``images`` replaces the split's image folder from data.yaml."""
    config = load_data_yaml(path)
    files, image_dir = split_images(config, split, images)
    coco = new_coco(config.names, description=f"YOLO {config.yaml_path} split {split}, converted by detkit")
    split_data = DatasetSplit(split, coco, image_dir)
    unsized = skipped = 0
    for image in files:
        size = read_image_size(image)
        image_id = add_image(coco, _relative_name(image, image_dir), size)
        if size is None:
            unsized += 1
            skipped += len(_label_lines(label_path(image)))
            continue
        for label in parse_label_file(label_path(image), len(config.names), size):
            extra = {"segmentation": [label.polygon]} if label.polygon is not None else {}
            add_annotation(coco, image_id, label.label + 1, label.box, **extra)
    if unsized:
        split_data.notes.append(f"{unsized} images are missing or unreadable: their {skipped} label lines were skipped")
    return split_data


def _relative_name(image: Path, image_dir: Path) -> str:
    try:
        return PurePosixPath(*image.relative_to(image_dir).parts).as_posix()
    except ValueError:  # a .txt list may name an image outside the common folder (a symlinked one)
        return image.as_posix()


def _label_lines(path: Path) -> list[str]:
    try:
        return [
            line for line in read_regular_bytes(path).decode("utf-8", errors="replace").splitlines() if line.strip()
        ]
    except OSError:
        return []


def yolo_source_files(path: Path, split: str, images: Path | None) -> tuple[list[Path], list[Path]]:
    """(files whose content the conversion reads, image files whose presence and size it depends on)."""
    config = load_data_yaml(path)
    files, _ = split_images(config, split, images)
    list_files = [config.root / e for e in config.splits[split] if e.endswith(".txt")]
    return [config.yaml_path, *list_files, *(label_path(f) for f in files)], files
