"""Reading images: EXIF orientation as photo viewers apply it, and the pixel limit before decoding."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest

from detkit.data.formats.image_size import read_image_size
from detkit.data.image_header import read_header
from detkit.data.images import ImageError, decode_image_rgb, read_image_rgb
from detkit.data.pixel_limit import DEFAULT_MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS_ENV


def _jpeg_with_orientation(image: np.ndarray, orientation: int, byte_order: bytes = b"MM") -> bytes:
    """``image`` as a JPEG whose APP1 EXIF block says ``orientation``."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    fmt = ">" if byte_order == b"MM" else "<"
    ifd = struct.pack(fmt + "H", 1) + struct.pack(fmt + "HHIHH", 0x0112, 3, 1, orientation, 0) + bytes(4)
    exif = b"Exif\x00\x00" + byte_order + struct.pack(fmt + "HI", 42, 8) + ifd
    segment = b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif
    data = encoded.tobytes()
    return data[:2] + segment + data[2:]


@pytest.mark.parametrize("byte_order", [b"MM", b"II"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_opencv_and_photo_viewers_apply_it(orientation, byte_order, tmp_path):
    """All eight orientations, both byte orders: detkit's pixels equal OpenCV's own EXIF-applying decode,
    and the header's displayed size (what YOLO conversion and data check use) is the decoded one."""
    stored = cv2.resize(
        np.random.default_rng(orientation).integers(0, 255, (3, 5, 3), dtype=np.uint8),
        (50, 30),
        interpolation=cv2.INTER_NEAREST,
    )
    data = _jpeg_with_orientation(stored, orientation, byte_order)
    viewer = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    read = decode_image_rgb(data, "photo.jpg")
    assert np.array_equal(read, viewer)
    assert read.shape[:2] == ((50, 30) if orientation >= 5 else (30, 50))
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    assert read_image_size(path) == read.shape[:2] == read_header(io.BytesIO(data)).displayed_size


def _png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")
    )


def test_a_decompression_bomb_is_refused_from_its_header(monkeypatch):
    """A 200-byte PNG declaring 20000 x 20000 pixels: refused before the decoder allocates 1.2 GB."""
    with pytest.raises(ImageError, match="20000 x 20000 pixels is over the limit of 178,956,970") as caught:
        decode_image_rgb(_png_declaring(20000, 20000), "bomb.png")
    assert caught.value.state == "too_large"
    small = cv2.imencode(".png", np.zeros((40, 50, 3), np.uint8))[1].tobytes()
    assert decode_image_rgb(small, "ok.png").shape == (40, 50, 3)
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, str(40 * 50 - 1))
    with pytest.raises(ImageError, match="50 x 40 pixels is over the limit of 1,999"):
        decode_image_rgb(small, "ok.png")
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "0")  # no limit
    assert decode_image_rgb(small, "ok.png").shape == (40, 50, 3)
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "lots")
    with pytest.raises(Exception, match="write a whole number of pixels"):
        decode_image_rgb(small, "ok.png")


def test_formats_without_a_parsed_header_get_the_same_limit_from_opencv():
    """detkit parses PNG and JPEG headers; for a BMP declaring 20000 x 20000, OpenCV's own check
    refuses it, set to detkit's limit by the CLI before OpenCV loads (in a fresh process: OpenCV
    reads the variable once)."""
    info = struct.pack("<IiiHHIIiiII", 40, 20000, 20000, 1, 24, 0, 0, 2835, 2835, 0, 0)
    bmp = b"BM" + struct.pack("<IHHI", 14 + 40 + 64, 0, 0, 54) + info + bytes(64)
    script = (
        "import sys, numpy as np\n"
        "import detkit.cli.main  # sets OpenCV's limit, as the detkit command does\n"
        "from detkit.data.images import ImageError, decode_image_rgb\n"
        "try:\n    decode_image_rgb(sys.stdin.buffer.read(), 'bomb.bmp')\nexcept ImageError as e:\n"
        "    print(e.state, e)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], input=bmp, capture_output=True, timeout=120)
    assert done.stdout.decode().startswith("too_large bomb.bmp: over the pixel limit"), done.stderr.decode()[-500:]
    assert DEFAULT_MAX_IMAGE_PIXELS == 178_956_970


def test_a_fifo_or_folder_where_an_image_belongs_is_named_not_waited_on(tmp_path):
    import os

    os.mkfifo(tmp_path / "x.jpg")
    (tmp_path / "d.png").mkdir()
    for name, kind in (("x.jpg", "a FIFO"), ("d.png", "a folder")):
        with pytest.raises(ImageError, match=rf"not a regular file \({kind}\)"):
            read_image_rgb(tmp_path / name)
