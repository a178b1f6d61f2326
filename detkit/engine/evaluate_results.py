"""``detkit eval --results``: score a COCO results json against a ground truth, with no model.

This path imports no torch, torchvision or pipelines (a test holds it to that): scoring COCO val's
500,000 detections is json parsing and the evaluator's C++, and a second of torch import on top
would be pure waste.
"""

from __future__ import annotations

from detkit.engine.evaluate_report import EvalReport, EvalRequest, ground_truth, refuse_overwriting, write_report
from detkit.evaluation.coco_eval import evaluate_coco_types
from detkit.evaluation.steps import StepTimes


def score_results_file(request: EvalRequest) -> EvalReport:
    """The metrics of ``request.results`` on ``request.data``, written to ``request.out`` (default
    ``<results>_metrics.json``): box metrics, mask metrics, or both for records that carry both
    (``request.iou_type`` None), else the one type asked for."""
    if request.results is None:
        raise ValueError("score_results_file needs request.results")
    steps = StepTimes()
    with steps.step("find ground truth"):
        annotations, images, notes = ground_truth(request.data, request.split, request.images, classes=None)
    target = request.out or request.results.with_name(request.results.stem + "_metrics.json")
    refuse_overwriting(target, [request.data, annotations, request.results])
    scored = evaluate_coco_types(
        annotations,
        request.results,
        iou_types=(request.iou_type,) if request.iou_type is not None else None,
        backend=request.backend,
        image_dir=images,
        workers=1 if request.workers is None else request.workers,
        steps=steps,
    )
    metrics = scored["bbox"] if "bbox" in scored else scored["segm"]
    mask_metrics = scored["segm"] if "bbox" in scored and "segm" in scored else None
    report = EvalReport(metrics, mask_metrics, target, notes=notes + metrics.notes, steps=steps.seconds)
    with steps.step("write"):
        return write_report(report)
