"""``detkit data convert``: read every split (or one) of a dataset in any format, write it in another.

Without ``split`` every split of the source is converted: a VOC folder's split lists (``trainval``
left out when ``train`` and ``val`` exist: it is their union, and the VOC writer recreates it),
a YOLO data.yaml's splits, or the one split of a COCO file (named after the file, e.g.
``instances_val2017.json`` -> ``val2017``). With ``split``, only that split of a VOC or YOLO
source; for a COCO file, ``split`` names its one split (``train`` makes ``images/train`` in YOLO).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from detkit.data.formats.coco_reader import read_coco
from detkit.data.formats.coco_writer import write_coco
from detkit.data.formats.detect import FORMATS, detect_format
from detkit.data.formats.marker import MARKER, written_by_convert
from detkit.data.formats.report import ConversionReport
from detkit.data.formats.split import DatasetSplit
from detkit.data.formats.voc import read_voc, voc_splits
from detkit.data.formats.voc_writer import write_voc
from detkit.data.formats.yolo import read_yolo, yolo_splits
from detkit.data.formats.yolo_writer import write_yolo
from detkit.errors import DataError, quoted

Writer = Callable[..., ConversionReport]
WRITERS: dict[str, Writer] = {"coco": write_coco, "voc": write_voc, "yolo": write_yolo}
# Split names become file and folder names in every layout.
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def convert_dataset(
    source: Path,
    out: Path,
    to: str,
    *,
    split: str | None = None,
    images: Path | None = None,
    classes: Sequence[str] | None = None,
    replace: bool = False,
) -> ConversionReport:
    """Convert the dataset at ``source`` into format ``to`` at ``out``; see the module docstring.

    ``out`` must not exist unless ``replace``; nothing is written unless the whole conversion succeeds.
    """
    if to not in WRITERS:
        raise DataError(f"unknown target format '{to}'; choose one of {', '.join(FORMATS)}")
    _check_output(source, out, replace)
    splits = read_source(source, split=split, images=images, classes=classes)
    for item in splits:
        if not _SPLIT_NAME.match(item.name):
            raise DataError(
                f"split name {quoted(item.name)} cannot be a file name; "
                "pass --split with letters, digits, '_', '-' or '.'"
            )
    try:
        return WRITERS[to](splits, out, replace=replace)
    except FileExistsError:
        raise DataError(f"{out}: already exists; choose another output or pass --overwrite") from None


def read_source(
    source: Path, *, split: str | None = None, images: Path | None = None, classes: Sequence[str] | None = None
) -> list[DatasetSplit]:
    """The splits to convert from ``source``, each in the converters' common form."""
    fmt = detect_format(source)
    if fmt == "coco":
        if classes is not None:
            raise DataError(f"{source}: a class list applies to Pascal VOC only; a COCO file names its own categories")
        return [read_coco(source, images=images, split=split)]
    names = [split] if split else _all_splits(source, fmt)
    if images is not None and fmt == "yolo" and len(names) > 1:
        raise DataError(f"{source}: --images replaces one split's image folder; pass --split too")
    return [read_split(source, name, images=images, classes=classes) for name in names]


def read_split(
    path: Path, split: str, *, images: Path | None = None, classes: Sequence[str] | None = None
) -> DatasetSplit:
    """Split ``split`` of a VOC or YOLO dataset, read into the converters' common form."""
    fmt = detect_format(path)
    if classes is not None and fmt != "voc":
        raise DataError(
            f"{path}: a class list applies to Pascal VOC only; {fmt.upper()} datasets name their own classes"
        )
    if fmt == "voc":
        return read_voc(path, split, images=images, classes=classes)
    if fmt == "yolo":
        return read_yolo(path, split, images=images)
    raise DataError(f"{path}: a COCO file is read with read_coco, not as a split of a folder")


def _all_splits(source: Path, fmt: str) -> list[str]:
    if fmt == "yolo":
        return yolo_splits(source)
    names = voc_splits(source)
    if "train" in names and "val" in names and "trainval" in names:
        names.remove("trainval")
    return names


def _check_output(source: Path, out: Path, replace: bool) -> None:
    """Refuse an existing output unless ``replace`` and an earlier conversion wrote it (``marker``), and
    one that is, or holds, the source: replacing it would delete the data being read."""
    if os.path.lexists(out) and not replace:
        raise DataError(f"{out}: already exists; choose another output or pass --overwrite")
    source_path, out_path = source.resolve(), out.resolve()
    if out_path == source_path or out_path in source_path.parents:
        raise DataError(f"{out}: is or contains the source {source}; write the conversion somewhere else")
    if os.path.lexists(out) and not written_by_convert(out):
        raise DataError(
            f"{out}: exists and was not written by `detkit data convert` (it has no {MARKER}); --overwrite replaces "
            "only detkit's own conversions: choose another output, or move the existing one away yourself"
        )
