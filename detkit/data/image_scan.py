"""Decoding every image of a dataset once, to find the missing, unreadable and truncated ones.

An image is ``truncated`` when its bytes stop before the format's end marker (see
``images.truncation``), the signature of an interrupted download or copy. OpenCV sometimes decodes
such a file anyway (the missing rows come out grey), so decoding alone does not catch it. It is
``too_large`` over the pixel limit, and ``outside`` when its name leads out of the image folder
(``image_paths``): such a file is not even opened.

Decoding is ``read_image_rgb``'s (EXIF orientation applied), so the size found is the size training
sees. Files are decoded on a thread pool: OpenCV's decoders release the GIL.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2

from detkit.data.image_paths import leads_outside, outside_images_allowed
from detkit.data.images import ImageError, ImageState, read_image_rgb

_MAX_THREADS = 8


@dataclass(frozen=True)
class ImageStatus:
    """What decoding one file found: its state, its decoded ``(H, W)`` (None unless decoded) and,
    for a bad file, why."""

    state: ImageState
    size: tuple[int, int] | None = None
    detail: str = ""


def inspect_image(path: Path) -> ImageStatus:
    """Read and decode one image file, as training would (``read_image_rgb``)."""
    try:
        image = read_image_rgb(path)
    except ImageError as error:
        return ImageStatus(error.state, detail=error.detail)
    return ImageStatus("ok", (int(image.shape[0]), int(image.shape[1])))


def _inspect_named(image_dir: Path, name: str) -> ImageStatus:
    if leads_outside(image_dir, name) and not outside_images_allowed():
        return ImageStatus("outside", detail=f"leads outside {image_dir}")
    return inspect_image(image_dir / name)


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
            for done, (name, status) in enumerate(
                zip(names, pool.map(lambda n: _inspect_named(image_dir, n), names)), start=1
            ):
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
