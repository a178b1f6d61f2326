"""``detkit detect IMAGES_OR_VIDEOS...``: run a trained detector on image files, video files and a camera."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from detkit.cli.common import console, reports_errors
from detkit.cli.options import CheckpointOverrides, DeviceOption, SvdRankOption, ThreadsOption, check_range

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from detkit.engine.detect_request import DetectRequest, DetectSummary
    from detkit.engine.detect_timing import DetectTiming
    from detkit.engine.detect_video import VideoRun


@reports_errors
def detect_command(
    images: Annotated[
        Optional[list[str]],
        typer.Argument(help="Image or video files (mp4, avi, mkv, mov, webm...), folders or quoted glob patterns."),
    ] = None,
    weights: Annotated[
        Optional[Path],
        typer.Option(help="Checkpoint (default: the last `detkit train`'s best.pt), or a torchvision detection .pth."),
    ] = None,
    score_thresh: Annotated[float, typer.Option(help="Drop detections scoring below this (0 to 1).")] = 0.5,
    out: Annotated[
        Path,
        typer.Option(
            help="Folder for annotated images, detections.jsonl (written as images are done) and detections.json; "
            "for each video <name>.mp4 (annotated) and <name>.jsonl (a line per frame, written as frames are done)."
        ),
    ] = Path("detections"),
    device: DeviceOption = "auto",
    set_: CheckpointOverrides = None,
    svd_rank: SvdRankOption = None,
    batch_size: Annotated[int, typer.Option(help="Images or video frames per forward pass.")] = 1,
    stride: Annotated[
        int,
        typer.Option(help="Process every N-th video frame; the annotated video holds those, at the source fps / N."),
    ] = 1,
    source: Annotated[
        Optional[int],
        typer.Option(help="Read camera N (cv2.VideoCapture(N)) after any files; Ctrl-C stops it, keeping its outputs."),
    ] = None,
    save_images: Annotated[bool, typer.Option(help="Write annotated copies of the images and videos.")] = True,
    workers: Annotated[
        Optional[int],
        typer.Option(help="Processes decoding images ahead of the model (default: 1 with 4 or more cores, else 0)."),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No per-image tables.")] = False,
    threads: ThreadsOption = None,
) -> None:
    # The help text is one line: Typer would show a line break of the docstring in the command list.
    """Detect objects in images, videos or a camera: a table per image, annotated images and videos, json lines as \
it goes and COCO results in --out."""
    from detkit.cli.options import model_choice
    from detkit.cli.progress import RichProgress
    from detkit.cli.tables import detections_table, proposal_run_line
    from detkit.engine.detect_request import DetectRequest, run_detection
    from detkit.engine.detect_video import STAGE
    from detkit.engine.events import ImageDetected, StageAdvanced, StageFinished, StageStarted
    from detkit.errors import ConfigError

    model = model_choice(weights, device, set_, svd_rank, batch_size, score_thresh, threads)
    check_range("--stride", stride, low=1)
    check_range("--source", source, low=0)
    check_range("--workers", workers, low=0)
    if not images and source is None:
        raise ConfigError("nothing to detect in: pass image or video files, folders or glob patterns, or --source N")
    request = DetectRequest(
        tuple(images or ()), model, out, save_images, stride, source, default_workers() if workers is None else workers
    )
    with RichProgress(console) as progress:
        frames = _FrameBar(progress.progress)

        def on_event(event: object) -> None:
            if isinstance(event, ImageDetected):
                if not quiet:
                    title = f"{event.path.name}: {len(event.detections)} detections"
                    progress.console.print(detections_table(title, event.detections, event.class_names))
            elif isinstance(event, (StageStarted, StageAdvanced, StageFinished)) and event.stage == STAGE:
                frames(event)
            else:
                progress(event)

        summary = run_detection(request, on_event=on_event)
    if summary.proposals is not None:
        console.print(proposal_run_line(summary.proposals))
    for run in summary.videos:
        console.print(video_line(run, summary.threads))
    if summary.results is not None:
        console.print(_images_line(summary))
    if summary.timing is not None and summary.timing.images:
        console.print(speed_line(summary.timing, request))


class _FrameBar:
    """The ``video`` stage as a bar: frames done of the total (``?`` when the source does not say) and frames/s."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def __call__(self, event: Any) -> None:
        from detkit.cli.console import printable
        from detkit.engine.events import StageAdvanced, StageStarted

        if isinstance(event, StageStarted):
            name = Path(event.description).name or event.description  # the file name, or "camera N"
            self.task = self.progress.add_task(printable(name), total=event.total or None, info="")
        elif self.task is not None and isinstance(event, StageAdvanced):
            speed = event.info.get("frames_per_second", 0.0)
            self.progress.update(self.task, completed=event.completed, info=f"{speed:.1f} frames/s")
        elif self.task is not None:  # finished
            self.progress.remove_task(self.task)
            self.task = None


def video_line(run: VideoRun, threads: int) -> str:
    """One video's last line: frames, time, frames/s on ``threads`` CPU threads and where its outputs are."""
    from detkit.cli.tables import threads_phrase

    every = f" (every {_ordinal(run.stride)} of {run.frames_read})" if run.stride > 1 else ""
    stopped = ", stopped by Ctrl-C" if run.stopped else ""
    written = f"annotated video {run.video}; " if run.video is not None else ""
    return (
        f"{run.source}: {run.frames_processed} frames{every} in {run.seconds:.1f} s, "
        f"{run.frames_per_second:.1f} frames/s ({threads_phrase(threads)}){stopped}; {written}per-frame detections "
        f"{run.frames_file}"
    )


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def default_workers() -> int:
    """One decoding process beside the model when there are cores to spare for it. On 2 cores a worker
    took the model's (32 coco128 photos, a 160 px yolo, 1 torch thread: 5.18 images/s with one against
    5.36 inline), so it is not the default there."""
    import os

    return 1 if (os.cpu_count() or 1) >= 4 else 0


def speed_line(timing: DetectTiming, request: DetectRequest) -> str:
    """Per-image milliseconds of every phase (``engine.detect_timing``) and the images' throughput."""
    from detkit.engine.detect_timing import PHASES

    where = {"decode": f" in {request.workers} worker{'s' if request.workers > 1 else ''}" if request.workers else ""}
    where["draw"] = " in a thread"
    phases = [p for p in PHASES if p != "draw" or request.save_images]
    parts = ", ".join(f"{phase} {timing.ms_per_image(phase):.1f}{where.get(phase, '')}" for phase in phases)
    return (
        f"Speed: {parts} ms per image; {timing.images_per_second:.3g} images/s over {timing.images} images "
        f"at batch {request.model.batch_size}"
    )


def _images_line(summary: DetectSummary) -> str:
    from detkit.cli.tables import threads_phrase

    counts = f"{summary.num_detections} detections in {summary.num_images} images ({threads_phrase(summary.threads)})"
    return f"{counts}; results: {summary.results}" + (
        f"; {summary.images_written} annotated images in {summary.out}" if summary.images_written else ""
    )
