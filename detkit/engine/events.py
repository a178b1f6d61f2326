"""Progress events the engine emits; the CLI renders them (the engine itself never prints)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this module, and imports no torch until a command runs
    from detkit.structures import Detections


@dataclass
class StageStarted:
    stage: str  # "train", "eval", "predict", "data"
    total: int
    epoch: int = 0
    description: str = ""


@dataclass
class StageAdvanced:
    stage: str
    completed: int
    info: dict[str, float] = field(default_factory=dict)  # running losses, learning rate
    images: int = 0  # images processed so far in this stage, where steps are batches (training); else 0


@dataclass
class StageFinished:
    stage: str


@dataclass
class EpochFinished:
    epoch: int
    epochs: int
    train_losses: dict[str, float]
    metrics: dict[str, float]
    is_best: bool
    seconds: float
    images_per_second: float = 0.0  # training images (all processes) per second of the epoch's training loop


@dataclass
class TrainingStarted:
    """A training run is about to start: what it trains, its name, on what, in how many processes, and
    on how many CPU threads (of this process; CPU processes of a data-parallel run share the cores)."""

    pipeline: str
    name: str
    data: str
    processes: int = 1
    threads: int = 1


@dataclass
class ImageDetected:
    """One image's detections (``structures.Detections`` in its frame) and the model's class names."""

    path: Path
    detections: Detections
    class_names: list[str]


@dataclass
class Notice:
    """Something the user should know that does not stop the run (a skipped NaN step, dropped boxes)."""

    message: str
    level: str = "warning"


Event = StageStarted | StageAdvanced | StageFinished | EpochFinished | TrainingStarted | ImageDetected | Notice
EventCallback = Callable[[Event], None]


def ignore_events(_event: Event) -> None:
    """The default callback: no output."""
