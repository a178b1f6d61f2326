"""The largest image detkit decodes, like Pillow's ``MAX_IMAGE_PIXELS``: a few kilobytes of PNG can
declare 20000 x 20000 pixels and make a decoder allocate gigabytes before it finds the data missing.

detkit reads the size from PNG and JPEG headers itself and refuses a larger image before decoding
(``images.py``). For the other formats OpenCV's own check is set to the same limit
(``limit_opencv_decoders``, called by the CLI before OpenCV is imported: OpenCV reads the
variable once, when it loads). No cv2 or torch import here, so the CLI can call it first.
"""

from __future__ import annotations

import os
import sys

MAX_IMAGE_PIXELS_ENV = "DETKIT_MAX_IMAGE_PIXELS"
# Pillow's decompression-bomb limit (2 x Image.MAX_IMAGE_PIXELS): about 13,400 x 13,400, seven times
# a 24-megapixel photo. Decoded to float32 for the network such an image is already 2 GB.
DEFAULT_MAX_IMAGE_PIXELS = 178_956_970
_OPENCV_ENV = "OPENCV_IO_MAX_IMAGE_PIXELS"
_OPENCV_CEILING = 2**30  # OpenCV's own default


def max_image_pixels() -> int | None:
    """``$DETKIT_MAX_IMAGE_PIXELS`` (0: no limit), else ``DEFAULT_MAX_IMAGE_PIXELS``."""
    from detkit.errors import ConfigError

    text = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    if not text.isdigit():
        raise ConfigError(f"{MAX_IMAGE_PIXELS_ENV}={text[:40]!r}: write a whole number of pixels (0 for no limit)")
    return int(text) or None


def limit_opencv_decoders() -> None:
    """Give OpenCV's decoders detkit's limit, unless the user set OpenCV's own or OpenCV is loaded."""
    if "cv2" in sys.modules or _OPENCV_ENV in os.environ:
        return
    limit = max_image_pixels()
    os.environ[_OPENCV_ENV] = str(_OPENCV_CEILING if limit is None else max(limit, 1))
