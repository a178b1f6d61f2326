"""What ``detkit eval`` asks for (``EvalRequest``) and what it found (``EvalReport``), and what both
ways of answering share: the ground truth they read and the metrics json they write.

Nothing here imports torch: scoring a results file (``evaluate_results``) needs no model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from detkit.data.formats import default_splits, detect_format, evaluation_split, resolve_dataset
from detkit.errors import DataError
from detkit.evaluation.coco_eval import CocoMetrics
from detkit.io import atomic_write_json, input_replaced_by

if TYPE_CHECKING:
    from detkit.engine.predict import ModelChoice
    from detkit.engine.proposals import ProposalRun


@dataclass(frozen=True)
class EvalRequest:
    """A ``detkit eval`` invocation: the ground truth (``data``, its ``images`` and VOC/YOLO ``split``),
    and a model (``model``: default the last ``detkit train``'s, score threshold 0.05, 4 images per
    pass) or a ``results`` json, scored as ``iou_type`` (None: what its records carry) by ``workers``
    processes (None: one; 0: as many as help, ``evaluation.parallel.default_workers``)."""

    data: Path
    images: Path | None = None
    split: str | None = None
    model: ModelChoice | None = None
    results: Path | None = None
    out: Path | None = None
    backend: str = "auto"
    iou_type: str | None = None
    workers: int | None = None


@dataclass(frozen=True)
class EvalTiming:
    """Test time of a model run: per image in ms, by stage (``modeling/stages``), and what the pipeline
    counted (selective-search cache use, R-CNN's cost formula)."""

    num_images: int
    seconds: float
    stage_ms: dict[str, float]
    lines: tuple[str, ...] = ()
    threads: int = 1  # the CPU threads the model ran on

    @property
    def ms_per_image(self) -> float:
        return 1000 * self.seconds / max(self.num_images, 1)


@dataclass(frozen=True)
class EvalReport:
    """The metrics (box metrics; a results file with masks only: mask metrics), a mask model's mask
    metrics, where they were written, and for a results file the seconds of each scoring step."""

    metrics: CocoMetrics
    mask_metrics: CocoMetrics | None
    written: Path
    timing: EvalTiming | None = None  # None when a results file was scored
    proposals: ProposalRun | None = None  # the selective-search pass before a model ran
    notes: tuple[str, ...] = field(default_factory=tuple)
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds, in the order they ran


def ground_truth(
    path: Path,
    split: str | None,
    images: Path | None,
    classes: list[str] | None,
) -> tuple[Path, Path, tuple[str, ...]]:
    """COCO json, image folder and notes of ``path`` (see ``resolve_dataset``: a VOC or YOLO split is
    converted once into the dataset cache). VOC names classes per object, so its category ids follow
    the model's class order (``classes``) and detections and truth agree; a YOLO data.yaml fixes its own."""
    fmt = detect_format(path)
    chosen = split or evaluation_split(path)
    source = resolve_dataset(path, chosen, images, classes=classes if fmt == "voc" else None)
    notes = list(source.notes)
    if fmt != "coco" and split is None and chosen == default_splits(path)[0]:
        notes.append(
            f"{path} has no test or val split: scoring its training split '{chosen}' (a fit to the training "
            "data, not a measure of accuracy on new images); pass --split to choose"
        )
    return source.annotations, source.images, tuple(notes)


def refuse_overwriting(target: Path, inputs: list[Path]) -> None:
    """``--out`` must not be the ground truth, the results or the weights being read."""
    replaced = input_replaced_by(target, list(inputs))
    if replaced is not None:
        raise DataError(
            f"--out {target}: is the input {replaced}, which writing the metrics would replace; choose another --out"
        )


def write_report(report: EvalReport) -> EvalReport:
    """Write the metrics json of ``report`` atomically (a mask model's mask metrics under "segm")."""
    document = report.metrics.to_dict()
    if report.mask_metrics is not None:
        document["segm"] = report.mask_metrics.to_dict()
    atomic_write_json(report.written, document, indent=2)
    return report
