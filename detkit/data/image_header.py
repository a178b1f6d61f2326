"""What an image file's header says, read without decoding the pixels: stored size and EXIF orientation.

Reading the header first is what lets detkit refuse a decompression bomb (a 1 MB PNG that declares
20000 x 20000 pixels would make the decoder allocate 1.2 GB before it finds the data is missing)
and know the displayed frame of a phone photo (stored landscape, shown portrait) before decoding.

PNG: the IHDR chunk, which the standard puts first. JPEG: the marker segments after SOI up to the
first start-of-frame (which holds the size), reading the EXIF ``Orientation`` tag (0x0112) of an
APP1 segment on the way. Orientation follows EXIF: 1 is as stored, 2-4 mirror or turn by 180
degrees, 5-8 turn by 90 degrees (the displayed height is the stored width). Other formats and
unreadable headers give None: the decoder judges them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Literal

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers carry the size; C4 (Huffman tables), C8 (reserved) and CC
# (arithmetic-coding conditioning) share the range but are not frames.
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers with no length field after them.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})
_JPEG_APP1 = 0xE1
_EXIF_SIGNATURE = b"Exif\x00\x00"
_ORIENTATION_TAG = 0x0112
_SHORT = 3  # TIFF field type of the orientation value


@dataclass(frozen=True)
class ImageHeader:
    """``height`` x ``width`` of the stored pixels and the EXIF orientation (1-8; 1 when absent)."""

    height: int
    width: int
    orientation: int = 1

    @property
    def pixels(self) -> int:
        return self.height * self.width

    @property
    def displayed_size(self) -> tuple[int, int]:
        """``(H, W)`` once the orientation is applied: the frame detkit reads images and boxes in."""
        return (self.width, self.height) if self.orientation >= 5 else (self.height, self.width)


def read_header(handle: IO[bytes]) -> ImageHeader | None:
    """The header of the PNG or JPEG file open in ``handle`` (at its start), or None."""
    head = handle.read(8)
    if head.startswith(_PNG_SIGNATURE):
        return _png_header(handle)
    if head[:2] == b"\xff\xd8":
        handle.seek(2)
        return _jpeg_header(handle)
    return None


def _png_header(handle: IO[bytes]) -> ImageHeader | None:
    """IHDR: length, 'IHDR', width, height."""
    chunk = handle.read(16)
    if len(chunk) < 16 or chunk[4:8] != b"IHDR":
        return None
    width, height = int.from_bytes(chunk[8:12], "big"), int.from_bytes(chunk[12:16], "big")
    return ImageHeader(height, width) if width and height else None


def _jpeg_header(handle: IO[bytes]) -> ImageHeader | None:
    """Walk the marker segments after SOI up to the first start-of-frame."""
    orientation = 1
    while True:
        if handle.read(1) != b"\xff":
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
        if len(length_bytes) < 2 or int.from_bytes(length_bytes, "big") < 2:
            return None
        length = int.from_bytes(length_bytes, "big") - 2
        if code in _JPEG_FRAME_MARKERS:
            frame = handle.read(5)  # precision, height, width
            if len(frame) < 5:
                return None
            height, width = int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big")
            return ImageHeader(height, width, orientation) if width and height else None
        if code == _JPEG_APP1:
            payload = handle.read(length)
            if payload.startswith(_EXIF_SIGNATURE):
                orientation = exif_orientation(payload[len(_EXIF_SIGNATURE) :]) or orientation
        else:
            handle.seek(length, 1)


def exif_orientation(tiff: bytes) -> int | None:
    """The ``Orientation`` of an EXIF block (a TIFF structure: byte order, 42, offset of IFD0), or None.

    IFD0 is a 2-byte entry count, then 12-byte entries: tag, type, count, value (a SHORT value sits
    in the first two bytes of the value field).
    """
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    order: Literal["little", "big"] = "little" if tiff[:2] == b"II" else "big"
    if int.from_bytes(tiff[2:4], order) != 42:
        return None
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return None
    for index in range(int.from_bytes(tiff[ifd : ifd + 2], order)):
        entry = tiff[ifd + 2 + 12 * index : ifd + 14 + 12 * index]
        if len(entry) < 12:
            return None
        if int.from_bytes(entry[0:2], order) == _ORIENTATION_TAG and int.from_bytes(entry[2:4], order) == _SHORT:
            value = int.from_bytes(entry[8:10], order)
            return value if 1 <= value <= 8 else None
    return None
