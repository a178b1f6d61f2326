"""Image reading: files on disk to ``uint8 [H, W, 3]`` RGB arrays and ``float32 [3, H, W]`` tensors.

Pixels are returned in the displayed frame: a JPEG's EXIF orientation is applied, as every photo
viewer, browser and labelling tool applies it, so a phone's portrait photo (stored landscape, tagged
"rotate 90") is read portrait, and boxes drawn on it in a labelling tool land where they were drawn.
Annotations (and a COCO json's ``width``/``height``) must be in that frame. Other formats are read
as stored.

Before decoding, the header's pixel count is checked against ``pixel_limit.max_image_pixels()``
(like Pillow's ``MAX_IMAGE_PIXELS``; see ``pixel_limit.py``).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

from detkit.data.image_header import ImageHeader, read_header
from detkit.data.pixel_limit import MAX_IMAGE_PIXELS_ENV, max_image_pixels
from detkit.errors import DataError
from detkit.io import read_regular_bytes

if TYPE_CHECKING:
    from torch import Tensor

# Decode the stored pixels; orientation is applied by ``apply_orientation`` from detkit's own reading
# of the header, so the size the header gives and the pixels decoded can never disagree.
READ_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION

MAX_IMAGE_BYTES = 2 << 30  # no photo or scan of the allowed pixel count is larger

_JPEG_START, _JPEG_SCAN, _JPEG_END = b"\xff\xd8", b"\xff\xda", b"\xff\xd9"
_PNG_START, _PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"
_FIX_MISSING = "check the image folder and the file_name in the annotations"
_FIX_REPLACE = "replace it or drop it from the annotations"

# What ``detkit data check`` reports of an image file (``image_scan.ImageStatus``). An ``ImageError``
# carries one of the bad states; ``outside`` is found before a file is opened.
ImageState = Literal["ok", "missing", "unreadable", "truncated", "too_large", "outside"]


class ImageError(DataError):
    """An image file that cannot be used. ``state`` says how (what ``detkit data check`` reports:
    ``missing``, ``unreadable``, ``truncated`` or ``too_large``) and ``detail`` why, in a few words.

    Constructible from the message alone, as every exception must be: a data-loader worker's
    exception is rebuilt in the main process as ``type(error)(message)``.
    """

    def __init__(self, message: str, state: ImageState = "unreadable", detail: str = "") -> None:
        super().__init__(message)
        self.state, self.detail = state, detail or message

    @classmethod
    def of(
        cls, path: str | os.PathLike[str], state: ImageState, detail: str, fix: str, *, headline: str = ""
    ) -> ImageError:
        return cls(f"{path}: {headline or detail}; {fix}", state, detail)


def read_image_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as ``uint8 [H, W, 3]`` RGB in its displayed frame (grey and RGBA files are
    converted). Raises ``ImageError`` naming the file when it is missing, not a regular file,
    truncated, over the pixel limit or cannot be decoded."""
    return decode_image_rgb(read_image_bytes(path), path)


def read_image_bytes(path: str | os.PathLike[str]) -> bytes:
    path = Path(path)
    if not os.path.lexists(path):
        raise ImageError.of(path, "missing", "image not found", _FIX_MISSING)
    try:
        return read_regular_bytes(path, max_bytes=MAX_IMAGE_BYTES)
    except FileNotFoundError:  # a symlink to nowhere
        raise ImageError.of(path, "missing", "image not found (a broken link)", _FIX_MISSING) from None
    except OSError as error:
        raise ImageError.of(path, "unreadable", f"cannot read image ({error.strerror})", _FIX_REPLACE) from None


def decode_image_rgb(data: bytes, path: str | os.PathLike[str]) -> np.ndarray:
    """``data`` (a file's bytes) as ``uint8 [H, W, 3]`` RGB in the displayed frame; see ``read_image_rgb``."""
    cut = truncation(data)
    if cut:
        # OpenCV would decode what is there and fill the rest with grey: training on that teaches garbage.
        raise ImageError.of(
            path,
            "truncated",
            cut,
            "replace the file, or drop it with `detkit data check ANNOTATIONS --images DIR --fix OUT.json`",
            headline=f"truncated image ({cut}: an interrupted download or copy)",
        )
    header = read_header(io.BytesIO(data))
    check_pixel_count(header, path)
    bgr = _decode(data, path)
    if bgr is None:
        raise ImageError.of(
            path,
            "unreadable",
            "not a readable image",
            "replace it with a valid JPEG or PNG or drop it from the annotations",
        )
    return apply_orientation(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), header.orientation if header else 1)


def check_pixel_count(header: ImageHeader | None, path: str | os.PathLike[str]) -> None:
    limit = max_image_pixels()
    if header is not None and limit is not None and header.pixels > limit:
        raise ImageError.of(
            path,
            "too_large",
            f"{header.width} x {header.height} pixels is over the limit of {limit:,}",
            f"downscale or tile the image, or raise {MAX_IMAGE_PIXELS_ENV} (0 for no limit)",
        )


def _decode(data: bytes, path: str | os.PathLike[str]) -> np.ndarray | None:
    if not data:
        return None
    try:
        return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), READ_FLAGS)
    except cv2.error as error:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(error):  # OpenCV's own limit (formats detkit reads no header of)
            raise ImageError.of(
                path,
                "too_large",
                "over the pixel limit",
                f"downscale the image, or raise {MAX_IMAGE_PIXELS_ENV} (0 for no limit)",
            ) from None
        raise ImageError.of(
            path, "unreadable", f"OpenCV cannot decode it ({_first_line(error)})", _FIX_REPLACE
        ) from None


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1][:120] if lines else type(error).__name__


# EXIF orientation -> the OpenCV operations that turn stored pixels into displayed ones.
_ORIENT = {
    2: lambda a: cv2.flip(a, 1),
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),
    5: lambda a: cv2.transpose(a),
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: cv2.flip(cv2.transpose(a), -1),
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` ``[H, W, C]`` as displayed under EXIF ``orientation`` (1-8)."""
    turn = _ORIENT.get(orientation)
    return image if turn is None else np.ascontiguousarray(turn(image))


def truncation(data: bytes) -> str:
    """Why a JPEG or PNG file's bytes stop early ("" when complete, or another format).

    A JPEG is complete when an end-of-image marker (``FF D9``) follows its last start-of-scan
    (``FF DA``): entropy-coded data escapes ``FF``, so only a real marker matches, and bytes some
    writers append after the image (zero padding, vendor trailers) are allowed. A PNG is complete
    when it has its ``IEND`` chunk.
    """
    if data.startswith(_JPEG_START):
        last_scan = data.rfind(_JPEG_SCAN)
        return (
            "" if last_scan >= 0 and data.rfind(_JPEG_END) > last_scan else "ends before the JPEG end-of-image marker"
        )
    if data.startswith(_PNG_START):
        return "" if data.rfind(_PNG_END) > 0 else "ends before the PNG IEND chunk"
    return ""


def image_to_tensor(image: np.ndarray) -> Tensor:
    """``uint8 [H, W, 3]`` RGB array -> ``float32 [3, H, W]`` tensor in ``[0, 1]``."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] image, got shape {tuple(image.shape)}")
    # torch only here: reading images (a dataset's sizes for `detkit eval --results`) needs no torch.
    import torch

    chw = np.ascontiguousarray(image.transpose(2, 0, 1))
    return torch.from_numpy(chw).to(torch.float32).div_(255.0)
