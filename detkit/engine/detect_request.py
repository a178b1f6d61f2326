"""What ``detkit detect`` asks for (``DetectRequest``) and what it did (``DetectSummary``).

Images go first, in batches: each image's detections are announced as an ``ImageDetected`` event
as soon as its batch is done (the CLI prints its table) and streamed to ``detections.jsonl``
(``detect_outputs``). Then each video file, then the camera, frame by frame (``detect_video``).

Every video is opened and its first frame decoded, and the camera opened, before the model is
loaded or anything is written: an unreadable one is an error that leaves nothing behind.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from detkit.checkpoint import Checkpoint
from detkit.data.image_files import InputFiles, find_inputs
from detkit.data.video import VideoSource, open_camera, open_video, probe_video
from detkit.engine.detect_outputs import DetectionWriter, VideoKey
from detkit.engine.detect_timing import DetectTiming
from detkit.engine.detect_video import VideoRun, detect_video
from detkit.engine.events import EventCallback, ImageDetected, Notice, ignore_events
from detkit.engine.predict import ModelChoice, detect_images, load_chosen
from detkit.engine.proposals import ProposalRun, warm_proposal_cache


@dataclass(frozen=True)
class DetectRequest:
    images: tuple[str, ...]  # files, folders or glob patterns: images and videos
    model: ModelChoice = field(default_factory=lambda: ModelChoice(score_thresh=0.5))
    out: Path = Path("detections")
    save_images: bool = True  # annotated copies of the images, annotated videos
    stride: int = 1  # every stride-th video frame is processed
    camera: int | None = None  # a camera index (cv2.VideoCapture(index)), read after the files
    workers: int = 0  # processes decoding images ahead of the model (data.prefetch); 0: inline


@dataclass(frozen=True)
class DetectSummary:
    num_images: int
    num_detections: int  # in the images
    results: Path | None  # detections.json; None when there were no images
    out: Path
    images_written: int
    proposals: ProposalRun | None  # the selective-search pass before the model ran
    videos: tuple[VideoRun, ...] = ()  # the video files in order, then the camera
    timing: DetectTiming | None = None  # where the images' time went; None when there were no images
    threads: int = 1  # the CPU threads the model ran on


def run_detection(request: DetectRequest, on_event: EventCallback = ignore_events) -> DetectSummary:
    inputs = find_inputs(list(request.images)) if request.images else InputFiles([], [])
    with ExitStack() as stack:
        camera = None if request.camera is None else stack.enter_context(open_camera(request.camera))
        for path in inputs.videos:
            probe_video(path)
        model, checkpoint, device = load_chosen(request.model, on_event)
        timing = DetectTiming()
        writer = DetectionWriter(
            request.out,
            inputs.images,
            checkpoint.class_names,
            checkpoint.category_ids,
            save_images=request.save_images,
            read_also=(Path(checkpoint.source),),
            videos=inputs.videos,
            cameras=() if request.camera is None else (request.camera,),
            timing=timing,
        )
        runs: list[VideoRun] = []
        warm = None
        try:
            if inputs.images:
                started = time.perf_counter()
                warm = _detect_images(model, checkpoint, device, inputs.images, writer, timing, request, on_event)
                writer.finish_images()
                timing.wall_seconds = time.perf_counter() - started
            for path in inputs.videos:
                with open_video(path) as source:
                    runs.append(_detect_source(model, device, source, path, writer, request, on_event))
            if camera is not None and request.camera is not None:
                runs.append(_detect_source(model, device, camera, request.camera, writer, request, on_event))
        except BaseException:
            writer.abort()  # detections.jsonl keeps every image done so far, each video what it recorded
            raise
        results = writer.close()
    return DetectSummary(
        len(inputs.images),
        len(writer.results),
        results,
        request.out,
        writer.images_written,
        warm,
        tuple(runs),
        timing if inputs.images else None,
        torch.get_num_threads(),
    )


def _detect_images(
    model: nn.Module,
    checkpoint: Checkpoint,
    device: torch.device,
    paths: list[Path],
    writer: DetectionWriter,
    timing: DetectTiming,
    request: DetectRequest,
    on_event: EventCallback,
) -> ProposalRun | None:
    warm = warm_proposal_cache(checkpoint.config.model, paths, on_event=on_event)
    images = detect_images(
        model,
        paths,
        device,
        batch_size=request.model.batch_size,
        workers=request.workers,
        timing=timing,
        on_event=on_event,
    )
    for item in images:
        on_event(ImageDetected(item.path, item.detections, checkpoint.class_names))
        writer.add(item)
    return warm


def _detect_source(
    model: nn.Module,
    device: torch.device,
    source: VideoSource,
    key: VideoKey,
    writer: DetectionWriter,
    request: DetectRequest,
    on_event: EventCallback,
) -> VideoRun:
    info = source.info
    if not info.fps_declared:
        on_event(Notice(f"{info.name}: declares no frame rate; its annotated video is written at {info.fps:g} fps"))
    recorder = writer.record_video(key, info.name, (info.height, info.width), info.fps / request.stride)
    return detect_video(
        model,
        source,
        recorder,
        device,
        batch_size=request.model.batch_size,
        stride=request.stride,
        on_event=on_event,
    )
