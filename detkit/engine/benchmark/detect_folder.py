"""``detkit benchmark --detect DIR``: the whole ``detkit detect`` over a folder of images, timed, and
beside it Ultralytics' ``predict`` on the same folder when ``--compare ultralytics`` asks for it.

A run is the command's work end to end, in this process: load the checkpoint, find, read and decode
every image, detect, draw the annotated copies and write them and the detections files into a fresh
folder. Not timed: starting Python and importing the libraries (each command pays that once per
invocation, whatever the folder holds).

Runs alternate (detkit, Ultralytics, detkit, ...) after an untimed warm-up run of each, so drift in
the machine's load falls on both; the figure is images per second of the median run. Both run on
the CPU threads this process has (Ultralytics' own ``select_device`` would switch to
``cpu_count - 1``: ``ultralytics_compare.predict_folder`` holds it to ours).

Without ``--weights`` detkit runs its ``yolo`` preset with seeded random weights and 80 classes, and
the peer YOLOv8n built from its config, also random: the two of matched size (see
``ultralytics_compare``). Random weights score few boxes above the threshold, so drawing and NMS see
a light load in both; a checkpoint is timed as it is.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from detkit.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from detkit.data.image_files import find_inputs
from detkit.engine.benchmark.ultralytics_compare import PEER_CONFIG, matched_yolo_config, predict_folder
from detkit.engine.detect_request import DetectRequest, run_detection
from detkit.engine.device import resolve_device
from detkit.engine.events import EventCallback, Notice, ignore_events
from detkit.engine.predict import ModelChoice
from detkit.errors import ConfigError
from detkit.pipelines import PIPELINES

DEFAULT_SIDE = 640  # the random yolo's input side, and Ultralytics' predict default
PEER_SCORE_THRESH = 0.25  # Ultralytics' predict default; detkit's side is given the same


@dataclass(frozen=True)
class FolderBenchmarkRequest:
    """What ``detkit benchmark --detect DIR`` was asked for."""

    folder: Path
    weights: Path | None = None  # a detkit checkpoint; None: the yolo preset with seeded random weights
    side: int | None = None  # the random yolo's (and the peer's) input side; None: 640
    runs: int = 3
    warmup: int = 1
    max_seconds: float = 120.0  # per tool: no timed run starts after it (at least one always runs)
    batch_size: int = 1
    workers: int = 0
    save_images: bool = True
    score_thresh: float = PEER_SCORE_THRESH
    compare_ultralytics: bool = False
    device: str = "cpu"  # "cpu", "cuda" or "cuda:N": both tools run there


@dataclass
class FolderRuns:
    """One tool's timed runs over the folder: seconds per run, in order, and detections in the last."""

    tool: str
    seconds: list[float] = field(default_factory=list)
    detections: int = 0

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    def images_per_second(self, images: int) -> float:
        return images / self.median_seconds

    def to_dict(self, images: int) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "seconds": self.seconds,
            "median_seconds": self.median_seconds,
            "images_per_second": self.images_per_second(images),
            "detections": self.detections,
        }


@dataclass
class FolderBenchmark:
    """detkit's detect over a folder (and the peer's predict over it), images per second."""

    folder: str
    images: int
    threads: int
    weights: str  # the checkpoint's path, or "random yolo (csp_n, 80 classes)"
    side: int | None  # the input side both ran at; None: the checkpoint's own (no peer)
    save_images: bool
    detkit: FolderRuns
    peer: FolderRuns | None = None
    peer_name: str = ""

    @property
    def ratio(self) -> float | None:
        """detkit's images/s over the peer's (above 1.0: detkit is faster)."""
        if self.peer is None:
            return None
        return self.detkit.images_per_second(self.images) / self.peer.images_per_second(self.images)

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "images": self.images,
            "threads": self.threads,
            "weights": self.weights,
            "side": self.side,
            "save_images": self.save_images,
            "detkit": self.detkit.to_dict(self.images),
            "peer": None if self.peer is None else {"name": self.peer_name, **self.peer.to_dict(self.images)},
            "ratio": self.ratio,
        }


def benchmark_detect_folder(
    request: FolderBenchmarkRequest, on_event: EventCallback = ignore_events
) -> FolderBenchmark:
    """Time ``detkit detect`` (and, when asked, Ultralytics' predict) over ``request.folder``, alternating."""
    images = _folder_images(request.folder)
    if request.compare_ultralytics and request.weights is not None:
        raise ConfigError(
            "--detect with --compare ultralytics times detkit's random-weight yolo against a random YOLOv8n "
            "of matched size; drop --weights (a checkpoint has no Ultralytics twin to pair it with)"
        )
    side = request.side or DEFAULT_SIDE
    resolve_device(request.device)  # a device this machine lacks is refused before anything runs
    with tempfile.TemporaryDirectory(prefix="detkit-benchmark-detect-") as scratch:
        weights = request.weights or _random_yolo_checkpoint(Path(scratch), side, request.score_thresh)
        tools: dict[str, Callable[[Path], int]] = {"detkit": _detkit_run(request, weights)}
        if request.compare_ultralytics:
            tools["peer"] = _peer_run(request, side)
        runs = _alternate(tools, Path(scratch), request, on_event)
    return FolderBenchmark(
        folder=str(request.folder),
        images=len(images),
        threads=torch.get_num_threads(),
        weights=str(request.weights) if request.weights else "random yolo (csp_n, 80 classes)",
        side=None if request.weights else side,
        save_images=request.save_images,
        detkit=runs["detkit"],
        peer=runs.get("peer"),
        peer_name=PEER_CONFIG.removesuffix(".yaml") if request.compare_ultralytics else "",
    )


def _folder_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ConfigError(f"--detect {folder}: not a folder; pass a folder of images")
    inputs = find_inputs([str(folder)])  # a folder with neither images nor videos is a DataError naming it
    if not inputs.images:
        raise ConfigError(f"--detect {folder}: holds videos but no images; pass a folder of images")
    if inputs.videos:
        raise ConfigError(f"--detect {folder}: holds videos too; pass a folder of images only")
    return inputs.images


def _random_yolo_checkpoint(scratch: Path, side: int, score_thresh: float) -> Path:
    """The ``yolo`` preset at ``side`` with seeded random weights and 80 classes, as a checkpoint file."""
    config = matched_yolo_config(side, score_thresh)
    torch.manual_seed(0)
    model = PIPELINES["yolo"].build(config.model)
    classes = config.model.num_classes
    path = scratch / "random_yolo.pt"
    save_checkpoint(
        path, Checkpoint(config, model.state_dict(), [f"class{i}" for i in range(classes)], list(range(1, classes + 1)))
    )
    return path


def _detkit_run(request: FolderBenchmarkRequest, weights: Path) -> Callable[[Path], int]:
    """One ``detkit detect`` over the folder into ``out``; returns its detections' count."""
    if request.weights is not None:
        load_checkpoint(weights)  # a bad file fails here, once, before anything is timed
    threads, score, batch = torch.get_num_threads(), request.score_thresh, request.batch_size
    choice = ModelChoice(weights, request.device, score_thresh=score, batch_size=batch, threads=threads)

    def run(out: Path) -> int:
        detect = DetectRequest((str(request.folder),), choice, out, request.save_images, workers=request.workers)
        return run_detection(detect).num_detections

    return run


def _peer_run(request: FolderBenchmarkRequest, side: int) -> Callable[[Path], int]:
    def run(out: Path) -> int:
        return predict_folder(
            request.folder,
            out,
            side=side,
            score_thresh=request.score_thresh,
            batch_size=request.batch_size,
            save_images=request.save_images,
            threads=torch.get_num_threads(),
            device=request.device,
        )

    return run


def _alternate(
    tools: dict[str, Callable[[Path], int]], scratch: Path, request: FolderBenchmarkRequest, on_event: EventCallback
) -> dict[str, FolderRuns]:
    """``request.warmup`` untimed runs of each tool, then timed runs taking turns, each into a fresh folder
    (removed after it: a run's outputs are what it costs, not what the benchmark keeps)."""
    runs = {name: FolderRuns(name) for name in tools}
    for index in range(request.warmup + request.runs):
        timed = index >= request.warmup
        if timed and index > request.warmup and _spent(runs, request.max_seconds):
            break
        for name, tool in tools.items():
            out = scratch / f"{name}-{index}"
            on_event(Notice(f"--detect: {name} run {index + 1 - request.warmup if timed else 'warm-up'}", level="info"))
            start = time.perf_counter()
            detections = tool(out)
            seconds = time.perf_counter() - start
            shutil.rmtree(out, ignore_errors=True)
            if timed:
                runs[name].seconds.append(seconds)
                runs[name].detections = detections
    return runs


def _spent(runs: dict[str, FolderRuns], max_seconds: float) -> bool:
    return any(sum(tool.seconds) > max_seconds for tool in runs.values())
