"""The image and video files a command is pointed at: files, folders (their images and videos, sorted)
and glob patterns."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from detkit.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Containers OpenCV's FFmpeg backend reads; a file is told a video by its suffix only, as images are.
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")


@dataclass(frozen=True)
class InputFiles:
    """What ``detkit detect`` reads: image paths and video paths, each in the order given, without repeats."""

    images: list[Path]
    videos: list[Path]


def find_images(inputs: list[str]) -> list[Path]:
    """Files, folders (their images, sorted) and glob patterns -> image paths, in order, without repeats."""
    return _find(inputs, IMAGE_SUFFIXES, "images")


def find_inputs(inputs: list[str]) -> InputFiles:
    """Files, folders (their images and videos, sorted) and glob patterns -> images and videos.

    A file named on the command line is a video when its suffix is one of ``VIDEO_SUFFIXES``, else an
    image (an unreadable one is then named by ``read_image_rgb``, as ``find_images`` leaves it)."""
    found = _find(inputs, IMAGE_SUFFIXES + VIDEO_SUFFIXES, "images or videos")
    return InputFiles(
        images=[path for path in found if not is_video(path)], videos=[path for path in found if is_video(path)]
    )


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _find(inputs: list[str], suffixes: tuple[str, ...], what: str) -> list[Path]:
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes))
        elif path.is_file() or os.path.lexists(path):  # not a regular file: its reader says what it is
            found.append(path)
        elif any(ch in item for ch in "*?["):
            found.extend(sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).suffix.lower() in suffixes))
        else:
            raise DataError(f"{item}: no such file or folder; pass {_what_to_pass(what)}")
    # realpath, not Path.resolve: it raises on a symlink loop (Python < 3.13); the loop is then a file
    # that cannot be read, named by its reader like any other.
    unique = list(dict.fromkeys(Path(os.path.realpath(p)) for p in found))
    if not unique:
        raise DataError(f"{' '.join(inputs)}: no {what} found (looked for {', '.join(suffixes)})")
    return unique


def _what_to_pass(what: str) -> str:
    files = "image files" if what == "images" else "image or video files"
    return f"{files}, folders or quoted glob patterns"
