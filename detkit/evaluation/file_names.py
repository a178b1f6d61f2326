"""Which ground-truth image a result record is for, when it names its image file.

``detkit detect`` numbers images by position, so the ``image_id`` it writes means nothing to a
dataset; the ``file_name`` it writes beside it does. A name matches a ground-truth ``file_name``
exactly, or the same file under the ground truth's image folder, or a unique base name. One that
matches no image, or two, is a ``DataError``: scoring it against the wrong image would give a wrong
AP with no word.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from detkit.errors import DataError, quoted


def image_ids_by_file_name(
    records: list[dict[str, Any]],
    image_ids: list[Any],
    images: list[dict[str, Any]],
    image_dir: str | os.PathLike[str] | None,
    source: str,
    gt_source: str,
) -> list[Any]:
    """``image_ids`` (each record's own ``image_id``, in order) with the ground-truth id of the image
    named by the record's ``file_name``, for the records that carry one. ``images``: the ground
    truth's image entries; ``image_dir``: the folder their names are relative to."""
    if not any("file_name" in record for record in records):
        return image_ids
    index = _FileNameIndex(images, image_dir)
    found: dict[str, int | None] = {}  # a detect file repeats each name once per detection
    matched = list(image_ids)
    for number, record in enumerate(records):
        if "file_name" not in record:
            continue
        name = record["file_name"]
        image_id = index.find(name) if not isinstance(name, str) else found.setdefault(name, index.find(name))
        if image_id is None:
            raise DataError(
                f"{source}: record {number} has file_name {quoted(name, 80)}, which is no image of "
                f"{gt_source}{index.ambiguity(name)}; evaluate against the dataset the detections were "
                "made on (and its --images folder), or drop the file_name to score by image_id"
            )
        matched[number] = image_id
    return matched


class _FileNameIndex:
    """Ground-truth images by ``file_name``, by resolved path under the image folder, and by base name."""

    def __init__(self, images: list[dict[str, Any]], image_dir: str | os.PathLike[str] | None) -> None:
        self.by_name: dict[str, int] = {}
        self.by_path: dict[str, int] = {}
        self.by_base: dict[str, list[int]] = {}
        for image in images:
            name = image.get("file_name")
            image_id: Any = image.get("id")  # a JSON value, checked to be an integer below
            if not isinstance(name, str) or not _is_int(image_id):
                continue
            self.by_name.setdefault(name, image_id)
            if image_dir is not None:
                self.by_path.setdefault(os.path.realpath(os.path.join(image_dir, name)), image_id)
            self.by_base.setdefault(os.path.basename(name.replace("\\", "/")), []).append(image_id)

    def find(self, file_name: Any) -> int | None:
        if not isinstance(file_name, str):
            return None
        if file_name in self.by_name:
            return self.by_name[file_name]
        path = self.by_path.get(os.path.realpath(file_name)) if "\0" not in file_name else None
        if path is not None:
            return path
        bases = self.by_base.get(os.path.basename(file_name.replace("\\", "/")), [])
        return bases[0] if len(set(bases)) == 1 else None

    def ambiguity(self, file_name: Any) -> str:
        bases = self.by_base.get(os.path.basename(str(file_name).replace("\\", "/")), [])
        return f" (its base name is shared by images {sorted(set(bases))[:4]})" if len(set(bases)) > 1 else ""


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
