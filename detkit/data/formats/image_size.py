"""An image's stored ``(H, W)`` from its file header, without decoding the pixels.

Converting YOLO labels (normalised to the image) to pixels needs every image's size; decoding a
COCO-sized folder for that would take many minutes, reading headers takes seconds. PNG and JPEG
headers are parsed here; any other file is decoded with OpenCV. Sizes are those of the stored
pixels (EXIF orientation ignored), the frame ``read_image_rgb`` returns and annotations use.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from detkit.data.images import READ_FLAGS

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers carry the size; C4 (Huffman tables), C8 (reserved) and CC
# (arithmetic-coding conditioning) share the range but are not frames.
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers with no length field after them.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


def read_image_size(path: Path) -> tuple[int, int] | None:
    """``(H, W)`` of the image at ``path``, or None when it is missing or not a readable image."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            if head.startswith(_PNG_SIGNATURE):
                size = _png_size(handle)
            elif head[:2] == b"\xff\xd8":
                handle.seek(2)
                size = _jpeg_size(handle)
            else:
                size = None
    except OSError:
        return None
    return size if size is not None else _decoded_size(path)


def _png_size(handle: BinaryIO) -> tuple[int, int] | None:
    """From the IHDR chunk, which the PNG standard puts first: length, 'IHDR', width, height."""
    chunk = handle.read(16)
    if len(chunk) < 16 or chunk[4:8] != b"IHDR":
        return None
    width, height = int.from_bytes(chunk[8:12], "big"), int.from_bytes(chunk[12:16], "big")
    return (height, width) if width and height else None


def _jpeg_size(handle: BinaryIO) -> tuple[int, int] | None:
    """Walk the marker segments after SOI up to the first start-of-frame, which holds the size."""
    while True:
        byte = handle.read(1)
        if byte != b"\xff":
            return None  # not at a marker: corrupt, let the decoder judge
        marker = handle.read(1)
        while marker == b"\xff":  # fill bytes may pad between segments
            marker = handle.read(1)
        if not marker:
            return None
        code = marker[0]
        if code in _JPEG_STANDALONE:
            continue
        if code in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        length_bytes = handle.read(2)
        if len(length_bytes) < 2:
            return None
        length = int.from_bytes(length_bytes, "big")
        if code in _JPEG_FRAME_MARKERS:
            frame = handle.read(5)  # precision, height, width
            if len(frame) < 5:
                return None
            height, width = int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big")
            return (height, width) if width and height else None
        if length < 2:
            return None
        handle.seek(length - 2, 1)


def _decoded_size(path: Path) -> tuple[int, int] | None:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    image = cv2.imdecode(data, READ_FLAGS) if data.size else None
    return None if image is None else (int(image.shape[0]), int(image.shape[1]))
