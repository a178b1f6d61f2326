"""What ``detkit eval`` asks for (``EvalRequest``) and what it found (``EvalReport``).

Either a model is run over the ground truth's images and scored, or a results json is scored alone
(no model). The ground truth may be a COCO json, a Pascal VOC folder or a YOLO dataset (converted
once into the dataset cache). The metrics json is written atomically, never over an input.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from detkit.data.formats import default_splits, detect_format, evaluation_split, resolve_dataset
from detkit.engine.evaluate import dataset_for_checkpoint, iou_types_of, predict_dataset, score_detections
from detkit.engine.events import EventCallback, ignore_events
from detkit.engine.predict import ModelChoice, load_chosen
from detkit.engine.proposals import ProposalRun, warm_proposal_cache
from detkit.errors import DataError
from detkit.evaluation.coco_eval import CocoMetrics, evaluate_coco
from detkit.io import atomic_write_json, input_replaced_by
from detkit.modeling.stages import STAGE_ORDER, record_stages
from detkit.pipelines import pipeline


@dataclass(frozen=True)
class EvalRequest:
    """A ``detkit eval`` invocation: the ground truth (``data``, its ``images`` and VOC/YOLO ``split``),
    and a model (``weights``: default the last ``detkit train``'s) or a ``results`` json."""

    data: Path
    images: Path | None = None
    split: str | None = None
    model: ModelChoice = field(default_factory=lambda: ModelChoice(score_thresh=0.05, batch_size=4))
    results: Path | None = None
    out: Path | None = None
    backend: str = "auto"


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
    metrics: CocoMetrics
    mask_metrics: CocoMetrics | None
    written: Path
    timing: EvalTiming | None = None  # None when a results file was scored
    proposals: ProposalRun | None = None  # the selective-search pass before a model ran
    notes: tuple[str, ...] = field(default_factory=tuple)


def run_evaluation(request: EvalRequest, on_event: EventCallback = ignore_events) -> EvalReport:
    """Score a model (or a results file) on the ground truth and write the metrics json."""
    if request.results is not None:
        annotations, images, notes = ground_truth(request.data, request.split, request.images, classes=None)
        target = request.out or request.results.with_name(request.results.stem + "_metrics.json")
        _refuse_overwriting(target, [request.data, annotations, request.results])
        metrics = evaluate_coco(annotations, request.results, backend=request.backend, image_dir=images)
        return _written(EvalReport(metrics, None, target, notes=notes + metrics.notes))
    return _evaluate_model(request, on_event)


def _evaluate_model(request: EvalRequest, on_event: EventCallback) -> EvalReport:
    model, checkpoint, device = load_chosen(request.model, on_event)
    annotations, images, notes = ground_truth(
        request.data, request.split, request.images, classes=checkpoint.class_names
    )
    target = request.out or Path(checkpoint.source).with_name(Path(checkpoint.source).stem + "_metrics.json")
    _refuse_overwriting(target, [request.data, annotations, Path(checkpoint.source)])
    dataset = dataset_for_checkpoint(checkpoint, annotations, images)
    warm = warm_proposal_cache(
        checkpoint.config.model, [dataset.image_path(i) for i in range(len(dataset))], on_event=on_event
    )
    started = time.perf_counter()
    with record_stages(device) as recorder:
        detections = predict_dataset(
            model, dataset, device=device, batch_size=request.model.batch_size, on_event=on_event
        )
    timing = _timing(checkpoint.pipeline, model, len(dataset), time.perf_counter() - started, recorder.seconds)
    scored = score_detections(dataset, detections, iou_types_of(detections), backend=request.backend)
    metrics = scored["bbox"]
    report = EvalReport(metrics, scored.get("segm"), target, timing, warm, notes + metrics.notes)
    return _written(report)


def _written(report: EvalReport) -> EvalReport:
    document = report.metrics.to_dict()
    if report.mask_metrics is not None:  # a mask model: the instance-mask numbers next to the box ones
        document["segm"] = report.mask_metrics.to_dict()
    atomic_write_json(report.written, document, indent=2)
    return report


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


def _refuse_overwriting(target: Path, inputs: list[Path]) -> None:
    """``--out`` must not be the ground truth, the results or the weights being read."""
    replaced = input_replaced_by(target, list(inputs))
    if replaced is not None:
        raise DataError(
            f"--out {target}: is the input {replaced}, which writing the metrics would replace; choose another --out"
        )


def _timing(
    pipeline_name: str, model: torch.nn.Module, num_images: int, seconds: float, stage_seconds: dict[str, float]
) -> EvalTiming:
    """The stage split per image, and the pipeline's own counts (``PipelineSpec.proposal_tally`` and
    ``cost_breakdown``) as lines."""
    spec = pipeline(pipeline_name)
    stage_ms = {name: 1000 * stage_seconds[name] / max(num_images, 1) for name in STAGE_ORDER if name in stage_seconds}
    lines = []
    tally = spec.proposal_tally(model) if spec.proposal_tally is not None else None
    if tally is not None and tally.images:
        lines.append(f"proposals: {tally.computed} computed here, {tally.images - tally.computed} read from the cache")
    cost = spec.cost_breakdown(model, stage_ms) if spec.cost_breakdown is not None else None
    if cost:
        lines.append(cost)
    return EvalTiming(num_images, seconds, stage_ms, tuple(lines), torch.get_num_threads())
