"""``detkit eval``: a model run over the ground truth's images and scored, or a results json scored
alone (no model). The ground truth may be a COCO json, a Pascal VOC folder or a YOLO dataset
(converted once into the dataset cache). The metrics json is written atomically, never over an input.

Importing this imports no torch: a results file is scored by ``evaluate_results``, and the model
path (``evaluate_model``: torch, the pipelines) is imported only when a model runs.
"""

from __future__ import annotations

from detkit.engine.evaluate_report import EvalReport, EvalRequest, EvalTiming
from detkit.engine.evaluate_results import score_results_file
from detkit.engine.events import EventCallback, ignore_events
from detkit.errors import ConfigError

__all__ = ["EvalReport", "EvalRequest", "EvalTiming", "run_evaluation"]


def run_evaluation(request: EvalRequest, on_event: EventCallback = ignore_events) -> EvalReport:
    """Score a model (or a results file) on the ground truth and write the metrics json."""
    if request.results is not None:
        return score_results_file(request)
    if request.iou_type is not None:
        raise ConfigError(
            f"--iou-type {request.iou_type} applies to --results; a model is scored on what it predicts "
            "(boxes, and masks for a mask model): drop --iou-type"
        )
    if request.workers is not None:
        raise ConfigError(
            f"--workers {request.workers} applies to --results; a model's detections are scored in its own "
            "process: drop --workers"
        )
    from detkit.engine.evaluate_model import evaluate_model

    return evaluate_model(request, on_event)
