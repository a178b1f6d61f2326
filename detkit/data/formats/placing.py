"""Putting images where a layout needs them: a hard link when the file system allows, else a copy.

VOC (``JPEGImages/``) and YOLO (``images/<split>/``) find images by position, so a conversion to
them must place the images. A hard link costs no space and no time and leaves the source intact
(both names point at the same bytes; editing one edits both, deleting one keeps the other). It
fails across file systems and on some (FAT, some network mounts); then the file is copied.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from detkit.errors import DataError


@dataclass
class PlacementCounts:
    linked: int = 0
    copied: int = 0

    def note(self) -> str:
        return f"images placed: {self.linked} hard-linked, {self.copied} copied"


def place_image(source: Path, destination: Path, counts: PlacementCounts) -> None:
    """Hard-link ``source`` at ``destination`` (a new path), copying when linking is not possible.

    Only a regular file that OpenCV recognises as an image is placed: a dataset's names, or links
    inside its folder, must not bring ``/etc/passwd`` or a private key into a folder that is shared.
    """
    import cv2  # here, not at import: reading a COCO json through this package needs no OpenCV

    if not source.is_file():
        raise DataError(
            f"{source}: image not found; the target layout needs every image in place "
            "(run `detkit data check --fix` to drop missing ones first)"
        )
    if not cv2.haveImageReader(str(source)):
        raise DataError(
            f"{source}: not an image file (no image format's signature); a converted dataset holds "
            "images only: replace the file, or drop its record with `detkit data check --fix`"
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination)
        counts.linked += 1
    except OSError:
        try:
            shutil.copyfile(source, destination)
        except OSError as error:
            raise DataError(
                f"{source}: cannot copy image to {destination} ({error.strerror}); check permissions and free space"
            ) from None
        counts.copied += 1


def safe_relative(file_name: str) -> PurePosixPath:
    """``file_name`` as a relative path that stays inside the output folder.

    An absolute name or one with ``..`` would write outside the output; those keep their last part.
    Backslashes are read as separators (COCO files written on Windows use them).
    """
    path = PurePosixPath(file_name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.name or path.name in (".", ".."):
        name = path.name if path.name not in ("", ".", "..") else "image"
        return PurePosixPath(name)
    return PurePosixPath(*[part for part in path.parts if part != "."])
