"""``detkit eval --weights``: run a trained model over the ground truth's images and score it."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from detkit.engine.evaluate import dataset_for_checkpoint, iou_types_of, predict_dataset, score_detections
from detkit.engine.evaluate_report import (
    EvalReport,
    EvalRequest,
    EvalTiming,
    ground_truth,
    refuse_overwriting,
    write_report,
)
from detkit.engine.events import EventCallback, ignore_events
from detkit.engine.predict import ModelChoice, load_chosen
from detkit.engine.proposals import warm_proposal_cache
from detkit.modeling.stages import STAGE_ORDER, record_stages
from detkit.pipelines import pipeline

DEFAULT_MODEL = ModelChoice(score_thresh=0.05, batch_size=4)  # COCO scores all detections; keep the threshold low


def evaluate_model(request: EvalRequest, on_event: EventCallback = ignore_events) -> EvalReport:
    """The metrics of ``request.model`` (default ``DEFAULT_MODEL``: the last ``detkit train``'s) on the
    ground truth, with its test time per image by stage, written beside the weights unless ``--out``."""
    choice = request.model or DEFAULT_MODEL
    model, checkpoint, device = load_chosen(choice, on_event)
    annotations, images, notes = ground_truth(
        request.data, request.split, request.images, classes=checkpoint.class_names
    )
    target = request.out or Path(checkpoint.source).with_name(Path(checkpoint.source).stem + "_metrics.json")
    refuse_overwriting(target, [request.data, annotations, Path(checkpoint.source)])
    dataset = dataset_for_checkpoint(checkpoint, annotations, images)
    warm = warm_proposal_cache(
        checkpoint.config.model, [dataset.image_path(i) for i in range(len(dataset))], on_event=on_event
    )
    started = time.perf_counter()
    with record_stages(device) as recorder:
        detections = predict_dataset(model, dataset, device=device, batch_size=choice.batch_size, on_event=on_event)
    timing = _timing(checkpoint.pipeline, model, len(dataset), time.perf_counter() - started, recorder.seconds)
    scored = score_detections(dataset, detections, iou_types_of(detections), backend=request.backend)
    metrics = scored["bbox"]
    return write_report(EvalReport(metrics, scored.get("segm"), target, timing, warm, notes + metrics.notes))


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
