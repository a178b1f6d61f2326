"""Detection on a video file or a camera: frames in batches through the model, each frame recorded.

Frames are read (``data.video.VideoSource``), every ``stride``-th kept, gathered ``batch_size`` at a
time into one forward pass, and each frame's detections (boxes xyxy in its pixels) handed to its
``FrameRecorder`` (the jsonl line, the annotated frame) as soon as its batch is done.

The annotated video plays at ``fps / stride``: it holds only the processed frames, each standing for
the ``stride`` source frames it was taken from, so it lasts as long as the source and its moments
line up with the source's (and with the jsonl's ``time``).

Decoding does not overlap inference (no reader thread): measured on 2 CPU cores with a 640x480
video, decoding a frame takes ~1 ms and drawing + encoding it ~2 ms, against 35-150 ms in the model
(a small YOLO, Faster R-CNN MobileNetV3-320), and a reader thread tried beside the model gave the
same frames/s (27.9 against 28.2), while it competes with torch's threads for the same cores.

Progress is the ``video`` stage (``total`` is the frames to process, 0 when the source does not say:
a camera, some containers), advanced per batch with ``frames_per_second``.
Ctrl-C stops a source cleanly: the frames done are kept (the jsonl flushed, the video closed and
published; frames of a batch not yet through the model are dropped). For a camera that is how it
ends, and the run goes on; a file's run is stopped (``KeyboardInterrupt`` goes on up).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch
from torch import nn

from detkit.data.images import image_to_tensor
from detkit.data.video import Frame, VideoSource
from detkit.engine.detect_outputs import FrameRecorder
from detkit.engine.events import EventCallback, Notice, StageAdvanced, StageFinished, StageStarted, ignore_events

STAGE = "video"


@dataclass(frozen=True)
class VideoRun:
    """What detection on one video or camera did."""

    source: str  # the file, or "camera N"
    frames_processed: int
    frames_read: int  # source frames consumed, skipped ones included
    stride: int
    seconds: float  # wall time from the first frame read to the last frame recorded
    frames_file: Path
    video: Path | None  # the annotated video; None without save_images
    ended_early: bool  # a file that ended before the frame count its header announces
    stopped: bool  # Ctrl-C ended it

    @property
    def frames_per_second(self) -> float:
        return self.frames_processed / self.seconds if self.seconds > 0 else 0.0


def detect_video(
    model: nn.Module,
    source: VideoSource,
    recorder: FrameRecorder,
    device: torch.device,
    *,
    batch_size: int = 1,
    stride: int = 1,
    on_event: EventCallback = ignore_events,
) -> VideoRun:
    """Run ``model`` on every ``stride``-th frame of ``source`` and record each; see the module docstring."""
    expected = source.info.num_frames
    on_event(StageStarted(STAGE, total=math.ceil(expected / stride) if expected else 0, description=source.info.name))
    started = time.perf_counter()
    stopped = False
    try:
        for batch in _batches(source.frames(stride), batch_size):
            _detect_batch(model, batch, recorder, device)
            on_event(StageAdvanced(STAGE, recorder.frames_done, _speed(recorder.frames_done, started)))
    except KeyboardInterrupt:
        stopped = True
    except BaseException:
        recorder.abort()
        on_event(StageFinished(STAGE))
        raise
    seconds = time.perf_counter() - started
    frames_file, video = recorder.finish()
    on_event(StageFinished(STAGE))
    run = VideoRun(
        source.info.name,
        recorder.frames_done,
        source.frames_read,
        stride,
        seconds,
        frames_file,
        video,
        source.ended_early,
        stopped,
    )
    _report_end(run, source, on_event)
    if stopped and not source.camera:
        raise KeyboardInterrupt
    return run


@torch.inference_mode()
def _detect_batch(model: nn.Module, batch: list[Frame], recorder: FrameRecorder, device: torch.device) -> None:
    output = model([image_to_tensor(frame.image).to(device) for frame in batch])
    for frame, detections in zip(batch, output.detections):
        recorder.add(frame, detections.to("cpu"))


def _batches(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    while batch := list(islice(frames, size)):
        yield batch


def _speed(frames: int, started: float) -> dict[str, float]:
    return {"frames_per_second": frames / max(time.perf_counter() - started, 1e-9)}


def _report_end(run: VideoRun, source: VideoSource, on_event: EventCallback) -> None:
    """A warning for a file that ended early or was stopped: what was kept."""
    kept = " and ".join(str(path) for path in (run.video, run.frames_file) if path is not None)
    if run.ended_early:
        on_event(
            Notice(
                f"{run.source}: the video ended early, at frame {run.frames_read} of the {source.info.num_frames} "
                f"its header announces (truncated or damaged); the {run.frames_processed} frames processed are kept "
                f"in {kept}; re-download or re-encode the file for the rest"
            )
        )
    if run.stopped and not source.camera:
        on_event(Notice(f"{run.source}: stopped by Ctrl-C after {run.frames_processed} frames; kept {kept}"))
