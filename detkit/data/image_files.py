"""The image files a command is pointed at: files, folders (their images, sorted) and glob patterns."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from detkit.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def find_images(inputs: list[str]) -> list[Path]:
    """Files, folders (their images, sorted) and glob patterns -> image paths, in order, without repeats."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file() or os.path.lexists(path):  # not a regular file: read_image_rgb says what it is
            found.append(path)
        elif any(ch in item for ch in "*?["):
            found.extend(
                sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
            )
        else:
            raise DataError(f"{item}: no such file or folder; pass image files, folders or quoted glob patterns")
    # realpath, not Path.resolve: it raises on a symlink loop (Python < 3.13); the loop is then a file
    # that cannot be read, named by read_image_rgb like any other.
    unique = list(dict.fromkeys(Path(os.path.realpath(p)) for p in found))
    if not unique:
        raise DataError(f"{' '.join(inputs)}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return unique
