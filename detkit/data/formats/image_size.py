"""An image's displayed ``(H, W)`` from its file header, without decoding the pixels.

Converting YOLO labels (normalised to the image) to pixels needs every image's size; decoding a
COCO-sized folder for that would take many minutes, reading headers takes seconds. PNG and JPEG
headers are parsed (``data/image_header.py``); any other file is decoded with OpenCV. Sizes are
those of the frame ``read_image_rgb`` returns (EXIF orientation applied), the one annotations use.
"""

from __future__ import annotations

from pathlib import Path

from detkit.data.image_header import read_header
from detkit.io import open_regular


def read_image_size(path: Path) -> tuple[int, int] | None:
    """``(H, W)`` of the image at ``path``, or None when it is missing or not a readable image."""
    try:
        with open_regular(path) as handle:
            header = read_header(handle)
    except OSError:
        return None
    if header is not None:
        return header.displayed_size
    # OpenCV only for the rare format without a parsed header, so reading sizes imports no OpenCV.
    from detkit.data.images import ImageError, read_image_rgb

    try:
        return read_image_rgb(path).shape[:2]
    except ImageError:
        return None
