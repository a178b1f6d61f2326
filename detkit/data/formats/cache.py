"""Any dataset path as a COCO json + image folder: COCO passes through, VOC and YOLO are converted
once into a cache and reused while the source is unchanged.

    <cache>/<digest>/instances_<split>.json   the converted split
    <cache>/<digest>/source.json              what it was made from, and its image folder; written last

``<cache>`` is ``$DETKIT_CACHE_DIR/datasets``, else ``$XDG_CACHE_HOME/detkit/datasets``, else
``~/.cache/detkit/datasets`` (the proposal cache's choice of root). The digest covers the converter
version, the source's absolute path, split, image folder and class list, the bytes of every
annotation file the conversion reads (XML, split lists, data.yaml, label files) and the name, size
and modification time of every image: editing a label or adding an image makes a new entry, and a
stale one is never read. Entries are written atomically, so concurrent runs are safe.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from detkit.data.formats.coco_reader import coco_split_name, default_image_dir
from detkit.data.formats.convert import read_split
from detkit.data.formats.detect import detect_format
from detkit.data.formats.voc import default_voc_splits, voc_source_files, voc_splits
from detkit.data.formats.yolo import default_yolo_splits, yolo_source_files, yolo_splits
from detkit.io import atomic_write_json, read_regular_bytes

# Bump when a reader changes what it writes for the same source, so old entries are not reused.
CONVERTER_VERSION = 1
_SOURCE_FILE = "source.json"


@dataclass(frozen=True)
class CocoSource:
    """A COCO instances json and the folder its ``file_name`` entries are relative to; ``notes`` says
    what the conversion dropped or changed (empty for a COCO file, which passes through)."""

    annotations: Path
    images: Path
    notes: tuple[str, ...] = ()


def default_cache_dir() -> Path:
    if os.environ.get("DETKIT_CACHE_DIR"):
        return Path(os.environ["DETKIT_CACHE_DIR"]) / "datasets"
    base = Path(os.environ["XDG_CACHE_HOME"]) if os.environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "detkit" / "datasets"


def default_splits(path: Path) -> tuple[str, str]:
    """(train split, validation split) of a dataset path; see ``default_voc_splits`` and
    ``default_yolo_splits``. A COCO file holds one split, named after the file, used for both."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "voc":
        return default_voc_splits(path)
    if fmt == "yolo":
        return default_yolo_splits(path)
    name = coco_split_name(path)
    return name, name


def evaluation_split(path: Path) -> str:
    """The split a VOC or YOLO dataset is scored on by default: ``test``, else its validation split."""
    fmt = detect_format(Path(path))
    splits = voc_splits(Path(path)) if fmt == "voc" else yolo_splits(Path(path)) if fmt == "yolo" else []
    return "test" if "test" in splits else default_splits(path)[1]


def resolve_dataset(
    path: Path,
    split: str | None = None,
    images: Path | None = None,
    *,
    classes: Sequence[str] | None = None,
    cache_dir: Path | None = None,
) -> CocoSource:
    """The COCO json and image folder for ``path`` (COCO json, VOC folder, YOLO folder or data.yaml).

    A COCO json passes through, its images in ``images`` or beside it (``split`` is not used). A VOC
    or YOLO split (default: the train split of ``default_splits``) is converted into the cache
    (``cache_dir``, default ``default_cache_dir()``), or found there from an earlier run.
    """
    path = Path(path)
    if detect_format(path) == "coco":
        return CocoSource(path, Path(images) if images is not None else default_image_dir(path))
    split = split or default_splits(path)[0]
    images = Path(images).resolve() if images is not None else None
    path = path.resolve()
    entry = (cache_dir or default_cache_dir()) / source_digest(path, split, images, classes)
    cached = _load_entry(entry, split)
    if cached is not None:
        return cached
    converted = read_split(path, split, images=images, classes=classes)
    annotations = entry / f"instances_{split}.json"
    atomic_write_json(annotations, converted.coco)
    image_dir = converted.image_dir.resolve()
    atomic_write_json(
        entry / _SOURCE_FILE, {"source": str(path), "split": split, "images": str(image_dir), "notes": converted.notes}
    )
    return CocoSource(annotations, image_dir, tuple(converted.notes))


def _load_entry(entry: Path, split: str) -> CocoSource | None:
    """The cached conversion, or None when absent or incomplete (then it is made again)."""
    annotations = entry / f"instances_{split}.json"
    try:
        meta = json.loads(read_regular_bytes(entry / _SOURCE_FILE, max_bytes=1 << 20))
        return CocoSource(annotations, Path(meta["images"]), tuple(meta["notes"])) if annotations.is_file() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def source_digest(path: Path, split: str, images: Path | None, classes: Sequence[str] | None) -> str:
    """Hex digest of everything a conversion of ``split`` depends on (see the module docstring)."""
    fmt = detect_format(path)
    if fmt == "voc":
        content_files, image_files = voc_source_files(path, images)
    else:
        content_files, image_files = yolo_source_files(path, split, images)
    digest = hashlib.blake2b(digest_size=16)
    header = [
        str(CONVERTER_VERSION),
        fmt,
        str(path),
        split,
        str(images),
        "\0".join(classes) if classes is not None else "-",
    ]
    digest.update("\n".join(header).encode())
    for file in content_files:
        digest.update(f"\nfile {file}\n".encode())
        try:
            digest.update(read_regular_bytes(file))
        except OSError:
            digest.update(b"<absent>")
    for file in image_files:
        try:
            stat = file.stat()
            digest.update(f"\nimage {file} {stat.st_size} {stat.st_mtime_ns}".encode())
        except OSError:
            digest.update(f"\nimage {file} <absent>".encode())
    return digest.hexdigest()
