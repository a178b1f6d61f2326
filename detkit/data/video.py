"""Video files and cameras through OpenCV: frames in (``VideoSource``), frames out (``VideoFileWriter``).

Frames are ``uint8 [H, W, 3]`` RGB, as images are read (docs/architecture.md, "Images"); only this
module sees OpenCV's BGR. A frame's ``index`` is its 0-based position in the source and its ``time``
is in seconds: ``index / fps`` for a file (the nominal time the container's frame rate gives), the
seconds since the camera was opened for a camera.

A file is opened and its first frame decoded before anything else happens, so a file that is not a
video (or an ``.mp4`` cut before its index, which FFmpeg cannot open) is a ``VideoError`` naming it.
A file that opens but yields fewer frames than its header announces has ``ended_early`` set once
its frames are exhausted: the caller keeps what was decoded and says so.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from detkit.errors import DataError, StorageError
from detkit.io import open_regular

FALLBACK_FPS = 30.0  # what a container or camera that declares no frame rate is taken to run at
OUTPUT_FOURCC = "mp4v"  # MPEG-4 part 2: every OpenCV FFmpeg build writes it, no licence-bound encoder needed
OUTPUT_SUFFIX = ".mp4"
_FIX_FILE = "replace the file, or convert it with `ffmpeg -i FILE -c:v libx264 OUT.mp4`"


class VideoError(DataError):
    """A video file or camera that cannot be read."""


@dataclass(frozen=True)
class VideoInfo:
    """What a source declares. ``num_frames`` is None for a camera or a container that does not say."""

    name: str  # the file's path, or "camera N"
    height: int
    width: int
    fps: float  # FALLBACK_FPS where the source declares none (``fps_declared`` False)
    num_frames: int | None
    fps_declared: bool = True


@dataclass(frozen=True)
class Frame:
    index: int  # 0-based position in the source (skipped frames count)
    time: float  # seconds (see the module docstring)
    image: np.ndarray  # uint8 [H, W, 3] RGB


class VideoSource:
    """An open video file or camera; ``frames(stride)`` yields its frames once, then ``close``.

    ``frames_read`` counts the source frames consumed (decoded or skipped); ``ended_early`` is True
    once a file has run out of frames before the count its header announces.
    """

    def __init__(self, capture: cv2.VideoCapture, info: VideoInfo, first: np.ndarray, *, camera: bool) -> None:
        self.capture, self.info, self.camera = capture, info, camera
        self._first: np.ndarray | None = first
        self._opened = time.monotonic()
        self.frames_read = 1  # the first frame, decoded when the source was opened
        self.exhausted = False

    @property
    def ended_early(self) -> bool:
        expected = self.info.num_frames
        return self.exhausted and not self.camera and expected is not None and self.frames_read < expected

    def frames(self, stride: int = 1) -> Iterator[Frame]:
        """Every ``stride``-th frame from the first. Skipped frames are only grabbed (demuxed and
        decoded by FFmpeg, never converted to an RGB array), which is most of a frame's read cost saved."""
        if stride < 1:
            raise ValueError(f"stride must be at least 1; got {stride}")
        if self._first is None:
            raise RuntimeError("VideoSource.frames() can be iterated once")
        image, self._first = self._first, None
        yield Frame(0, 0.0, image)
        index = 0
        while True:
            for _ in range(stride - 1):
                if not self.capture.grab():
                    self.exhausted = True
                    return
                self.frames_read += 1
                index += 1
            ok, bgr = self.capture.read()
            if not ok:
                self.exhausted = True
                return
            self.frames_read += 1
            index += 1
            yield Frame(index, self._time(index), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def _time(self, index: int) -> float:
        return time.monotonic() - self._opened if self.camera else index / self.info.fps

    def close(self) -> None:
        self.capture.release()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def open_video(path: str | os.PathLike[str]) -> VideoSource:
    """Open a video file and decode its first frame; ``VideoError`` names the file and the fix."""
    path = Path(path)
    _check_regular(path)
    with _quiet_opencv():
        # FFmpeg only: OpenCV's image-sequence backend would read a name like "shot%02d.mp4" as a pattern.
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        raise VideoError(
            f"{path}: not a readable video (OpenCV cannot open it: not a video, an .mp4/.mov cut before its index "
            f"by an interrupted download or copy, or a codec this OpenCV lacks); {_FIX_FILE}"
        )
    ok, bgr = capture.read()
    if not ok:
        capture.release()
        raise VideoError(f"{path}: no frame could be decoded (an empty or damaged video); {_FIX_FILE}")
    num_frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    return VideoSource(
        capture, _info(str(path), capture, bgr, num_frames if num_frames > 0 else None), _rgb(bgr), camera=False
    )


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """``open_video``'s checks and what the file declares, without keeping it open."""
    with open_video(path) as source:
        return source.info


def open_camera(index: int) -> VideoSource:
    """Open camera ``index`` (``cv2.VideoCapture(index)``) and read its first frame."""
    with _quiet_opencv():
        capture = cv2.VideoCapture(index)
        ok, bgr = capture.read() if capture.isOpened() else (False, None)
    if not ok or bgr is None:
        capture.release()
        raise VideoError(
            f"camera {index}: no camera could be opened at index {index}; connect one, close the program using it, "
            "or pass another --source index or a video file"
        )
    return VideoSource(capture, _info(f"camera {index}", capture, bgr, None), _rgb(bgr), camera=True)


def _info(name: str, capture: cv2.VideoCapture, first_bgr: np.ndarray, num_frames: int | None) -> VideoInfo:
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    declared = math.isfinite(fps) and 0.0 < fps <= 1000.0  # FFmpeg reports 90000 (a time base) for some streams
    height, width = first_bgr.shape[:2]  # the decoded size: the container's may be absent or before cropping
    return VideoInfo(name, height, width, fps if declared else FALLBACK_FPS, num_frames, declared)


def _rgb(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _check_regular(path: Path) -> None:
    """Only a regular file is given to FFmpeg: a FIFO would block it forever, a folder is nothing it can read."""
    if not os.path.lexists(path):
        raise VideoError(f"{path}: video not found; check the path")
    try:
        open_regular(path).close()
    except OSError as error:
        raise VideoError(f"{path}: cannot read the video ({error.strerror}); {_FIX_FILE}") from None


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Keep OpenCV's and FFmpeg's own log lines ("moov atom not found", "can't open camera by index")
    off the terminal: detkit reports the failure as one line of its own.

    FFmpeg's level is read from ``OPENCV_FFMPEG_LOGLEVEL`` once, when OpenCV first uses FFmpeg in the
    process; a level the user set is kept (-8 is AV_LOG_QUIET)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


class VideoFileWriter:
    """RGB frames ``uint8 [H, W, 3]`` of one size into a video file at ``path`` (``OUTPUT_FOURCC``).

    The frames go to a hidden temporary file beside ``path`` (it ends in ``path``'s suffix: FFmpeg
    picks the container from the name); ``finish`` closes it and renames it over ``path``, so no
    half-written video is ever under the final name; ``discard`` removes it.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, size: tuple[int, int]) -> None:
        self.path, self.size = Path(path), size
        fd, name = tempfile.mkstemp(
            prefix=f".{self.path.stem}.", suffix=f".tmp{self.path.suffix}", dir=self.path.parent
        )
        os.close(fd)
        self.tmp = Path(name)
        height, width = size
        with _quiet_opencv():
            self._writer = cv2.VideoWriter(name, cv2.VideoWriter.fourcc(*OUTPUT_FOURCC), fps, (width, height))
        if not self._writer.isOpened():
            self.tmp.unlink(missing_ok=True)
            raise StorageError(
                f"{self.path}: OpenCV cannot write {OUTPUT_FOURCC} {self.path.suffix} video of {width} x {height} at "
                f"{fps:g} fps here; pass --no-save-images to write only the per-frame detections"
            )
        self.frames_written = 0

    def write(self, image: np.ndarray) -> None:
        if image.shape[:2] != self.size:
            # OpenCV drops a frame of another size without a word: the video would silently lose it.
            raise VideoError(
                f"{self.path}: a frame of {image.shape[1]} x {image.shape[0]} in a video of "
                f"{self.size[1]} x {self.size[0]}; re-encode the input at one frame size"
            )
        self._writer.write(cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def finish(self) -> Path:
        """Close the file and publish it at ``path``; returns ``path``."""
        self._writer.release()
        with open(self.tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        self._writer.release()
        self.tmp.unlink(missing_ok=True)
