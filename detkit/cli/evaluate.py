"""``detkit eval``: COCO metrics of a model on a dataset, or of a results file without a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from detkit.cli.common import console, reports_errors
from detkit.cli.console import note_line
from detkit.cli.options import AllowOutsideImages, CheckpointOverrides, DeviceOption, SvdRankOption, ThreadsOption


@reports_errors
def eval_command(
    coco: Annotated[
        Path,
        typer.Option(
            "--coco", "--data", help="Ground truth: a COCO instances json, Pascal VOC folder or YOLO folder/data.yaml."
        ),
    ],
    images: Annotated[
        Optional[Path],
        typer.Option(
            help="Image folder of --coco (default: <split>/ beside annotations/, else beside the json, "
            "or the VOC/YOLO layout's)."
        ),
    ] = None,
    split: Annotated[Optional[str], typer.Option(help="Split of a VOC/YOLO dataset (default: test, else val).")] = None,
    weights: Annotated[
        Optional[Path], typer.Option(help="Checkpoint to evaluate (default: the last `detkit train`'s best.pt).")
    ] = None,
    results: Annotated[
        Optional[Path], typer.Option(help="Evaluate this COCO results json instead of running a model.")
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option(help="Write the metrics json here (default: metrics.json beside the weights or results)."),
    ] = None,
    backend: Annotated[
        str, typer.Option(help="auto (faster-coco-eval when installed), pycocotools or faster_coco_eval.")
    ] = "auto",
    iou_type: Annotated[
        Optional[str],
        typer.Option(help="With --results: bbox or segm (default: what the records carry; both for boxes with masks)."),
    ] = None,
    workers: Annotated[
        Optional[int],
        typer.Option(
            help="With --results: processes scoring shares of the categories (default 1; 0: one per core, "
            "up to 8 and one per 100,000 detections). Pays only where cores are free."
        ),
    ] = None,
    timings: Annotated[
        bool, typer.Option("--timings", help="With --results: print the seconds of each scoring step.")
    ] = False,
    device: DeviceOption = "auto",
    set_: CheckpointOverrides = None,
    svd_rank: SvdRankOption = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 4,
    score_thresh: Annotated[
        float, typer.Option(help="Detections scoring below this are not scored (COCO uses all; keep it low).")
    ] = 0.05,
    threads: ThreadsOption = None,
    allow_outside_images: AllowOutsideImages = False,
) -> None:
    """Print the 12 COCO numbers and per-class AP, and write them as json."""
    from detkit.cli.options import apply_path_policy, check_range, model_choice
    from detkit.cli.progress import RichProgress
    from detkit.cli.tables import eval_timing_lines, metrics_table, per_class_table, proposal_run_line
    from detkit.engine.evaluate_request import EvalRequest, run_evaluation
    from detkit.errors import ConfigError, quoted

    apply_path_policy(allow_outside_images)
    if iou_type is not None and iou_type not in ("bbox", "segm"):
        raise ConfigError(f"--iou-type {quoted(iou_type)}: use bbox or segm")
    check_range("--workers", workers, low=0)
    # A results file needs no model: building the model options would import torch for nothing.
    model = (
        None
        if results is not None
        else model_choice(weights, device, set_, svd_rank, batch_size, score_thresh, threads)
    )
    request = EvalRequest(coco, images, split, model, results, out, backend, iou_type=iou_type, workers=workers)
    if results is not None:
        # Scoring a file reports no progress, and a live display's refresh thread would keep
        # scoring from forking its worker processes.
        report = run_evaluation(request)
    else:
        with RichProgress(console) as progress:
            report = run_evaluation(request, on_event=progress)
    if report.proposals is not None:
        console.print(proposal_run_line(report.proposals))
    if report.timing is not None:
        console.print(eval_timing_lines(report.timing))
    for note in report.notes:
        console.print(note_line(note))
    for metrics, label in ((report.metrics, "AP"), (report.mask_metrics, "mask AP")):
        if metrics is None:
            continue
        console.print(
            f"COCO {metrics.iou_type}: {metrics.num_images} images, {metrics.num_detections} detections, "
            f"scored by {metrics.backend}"
        )
        console.print(metrics_table(metrics.stats, title=f"COCO {metrics.iou_type}"))
        if metrics.per_class_ap:
            console.print(per_class_table(metrics.per_class_ap, metrics.per_class_ap50, title=f"per-class {label}"))
    if timings and report.steps:
        console.print(_steps_line(report.steps), soft_wrap=True)  # one line, to grep
    console.print(f"metrics written to {report.written}")


def _steps_line(steps: dict[str, float]) -> str:
    """``timings: parse results 2.10 s, validate results 0.21 s, ... = 9.84 s`` (the scoring steps, in order)."""
    parts = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in steps.items())
    return f"timings: {parts} = {sum(steps.values()):.2f} s"
