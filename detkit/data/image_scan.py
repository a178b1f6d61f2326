"""Decoding every image of a dataset once, to find the missing, unreadable and truncated ones.

An image is ``truncated`` when its bytes stop before the format's end marker (see
``images.truncation``), the signature of an interrupted download or copy. OpenCV sometimes decodes
such a file anyway (the missing rows come out grey), so decoding alone does not catch it.

Decoding uses the flags of ``read_image_rgb`` (EXIF orientation ignored), so the size found is the
size training sees. Files are decoded on a thread pool: OpenCV's decoders release the GIL.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from detkit.data.images import READ_FLAGS, truncation

ImageState = Literal["ok", "missing", "unreadable", "truncated"]

_MAX_THREADS = 8


@dataclass(frozen=True)
class ImageStatus:
    """What decoding one file found: its state, its decoded ``(H, W)`` (None unless decoded) and,
    for a bad file, why."""

    state: ImageState
    size: tuple[int, int] | None = None
    detail: str = ""


def inspect_image(path: Path) -> ImageStatus:
    """Read and decode one image file."""
    if not path.is_file():
        return ImageStatus("missing", detail="no such file")
    try:
        data = path.read_bytes()
    except OSError as error:
        return ImageStatus("unreadable", detail=error.strerror or "cannot read")
    if not data:
        return ImageStatus("unreadable", detail="empty file")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), READ_FLAGS)
    size = None if image is None else (int(image.shape[0]), int(image.shape[1]))
    cut = truncation(data)
    if cut:
        return ImageStatus("truncated", size, detail=cut)
    if image is None:
        return ImageStatus("unreadable", detail="OpenCV cannot decode it")
    return ImageStatus("ok", size)


def scan_images(
    image_dir: Path,
    file_names: Iterable[str],
    *,
    progress: Callable[[int, int], None] | None = None,
    num_threads: int | None = None,
) -> dict[str, ImageStatus]:
    """``{file_name: ImageStatus}`` for each distinct ``file_name`` under ``image_dir``;
    ``progress(done, total)`` is called from this thread after each file."""
    names = list(dict.fromkeys(file_names))
    threads = num_threads or min(_MAX_THREADS, os.cpu_count() or 1)
    results: dict[str, ImageStatus] = {}
    level = _quiet_opencv()
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for done, (name, status) in enumerate(zip(names, pool.map(lambda n: inspect_image(image_dir / n), names)), start=1):
                results[name] = status
                if progress is not None:
                    progress(done, len(names))
    finally:
        cv2.utils.logging.setLogLevel(level)
    return results


def _quiet_opencv() -> int:
    """Silence OpenCV's decoder warnings (one stderr line per broken file): the report says it
    better. Returns the previous level to restore."""
    logging = cv2.utils.logging
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    return previous
