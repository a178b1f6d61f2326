"""Image reading: files on disk to ``uint8 [H, W, 3]`` RGB arrays and ``float32 [3, H, W]`` tensors.

Pixels are read as stored: EXIF orientation is ignored, because COCO-style annotations (and the
json ``width``/``height``) are in the frame of the stored pixels, not of the rotated picture.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from detkit.errors import DataError

READ_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION  # stored pixels, EXIF ignored

_JPEG_START, _JPEG_SCAN, _JPEG_END = b"\xff\xd8", b"\xff\xda", b"\xff\xd9"
_PNG_START, _PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


def read_image_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as ``uint8 [H, W, 3]`` RGB (grey and RGBA files are converted).

    Raises ``DataError`` naming the file when it is missing, truncated or cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image not found; check the image folder and the file_name in the annotations")
    # imdecode over a byte buffer instead of imread: same decoder, but it also opens non-ASCII
    # paths on Windows and lets an unreadable file be told apart from a missing one.
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read image ({error.strerror}); check the file's permissions") from error
    cut = truncation(data)
    if cut:
        # OpenCV would decode what is there and fill the rest with grey: training on that teaches garbage.
        raise DataError(
            f"{path}: truncated image ({cut}: an interrupted download or copy); replace the file, or drop it "
            "with `detkit data check ANNOTATIONS --images DIR --fix OUT.json`"
        )
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), READ_FLAGS) if data else None
    if bgr is None:
        raise DataError(f"{path}: not a readable image; replace it with a valid JPEG or PNG or drop it from the annotations")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def truncation(data: bytes) -> str:
    """Why a JPEG or PNG file's bytes stop early ("" when complete, or another format).

    A JPEG is complete when an end-of-image marker (``FF D9``) follows its last start-of-scan
    (``FF DA``): entropy-coded data escapes ``FF``, so only a real marker matches, and bytes some
    writers append after the image (zero padding, vendor trailers) are allowed. A PNG is complete
    when it has its ``IEND`` chunk.
    """
    if data.startswith(_JPEG_START):
        last_scan = data.rfind(_JPEG_SCAN)
        return "" if last_scan >= 0 and data.rfind(_JPEG_END) > last_scan else "ends before the JPEG end-of-image marker"
    if data.startswith(_PNG_START):
        return "" if data.rfind(_PNG_END) > 0 else "ends before the PNG IEND chunk"
    return ""


def image_to_tensor(image: np.ndarray) -> Tensor:
    """``uint8 [H, W, 3]`` RGB array -> ``float32 [3, H, W]`` tensor in ``[0, 1]``."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] image, got shape {tuple(image.shape)}")
    chw = np.ascontiguousarray(image.transpose(2, 0, 1))
    return torch.from_numpy(chw).to(torch.float32).div_(255.0)
