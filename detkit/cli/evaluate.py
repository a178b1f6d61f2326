"""``detkit eval``: COCO metrics of a model on a dataset, or of a results file without a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from detkit.cli.common import console, reports_errors
from detkit.cli.console import note_line
from detkit.cli.options import AllowOutsideImages


@reports_errors
def eval_command(
    coco: Annotated[Path, typer.Option("--coco", "--data", help="Ground truth: a COCO instances json, Pascal VOC folder or YOLO folder/data.yaml.")],
    images: Annotated[Optional[Path], typer.Option(help="Image folder of --coco (default: <split>/ beside annotations/, else beside the json, or the VOC/YOLO layout's).")] = None,
    split: Annotated[Optional[str], typer.Option(help="Split of a VOC/YOLO dataset (default: test, else val).")] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Checkpoint to evaluate (default: the last `detkit train`'s best.pt).")] = None,
    results: Annotated[Optional[Path], typer.Option(help="Evaluate this COCO results json instead of running a model.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write the metrics json here (default: metrics.json beside the weights or results).")] = None,
    backend: Annotated[str, typer.Option(help="auto (faster-coco-eval when installed), pycocotools or faster_coco_eval.")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a test-time config value of the checkpoint: KEY=VALUE (repeatable).")] = None,
    svd_rank: Annotated[Optional[int], typer.Option(help="Truncated-SVD rank for the box head's FC layers (0 = off; default: the checkpoint's).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 4,
    score_thresh: Annotated[float, typer.Option(help="Detections scoring below this are not scored (COCO uses all; keep it low).")] = 0.05,
    allow_outside_images: AllowOutsideImages = False,
) -> None:
    """Print the 12 COCO numbers and per-class AP, and write them as json."""
    import time

    from detkit.cli.options import apply_path_policy, check_range
    from detkit.cli.progress import RichProgress
    from detkit.cli.tables import metrics_table, per_class_table, proposal_run_line
    from detkit.evaluation.coco_eval import evaluate_coco
    from detkit.io import atomic_write_json

    check_range("--score-thresh", score_thresh, low=0.0, high=1.0)
    check_range("--batch-size", batch_size, low=1)
    check_range("--svd-rank", svd_rank, low=0)
    apply_path_policy(allow_outside_images)
    given = coco
    mask_metrics = None
    if results is not None:
        coco, images = _ground_truth(coco, split, images, classes=None)
        target = out or results.with_name(results.stem + "_metrics.json")
        _refuse_overwriting(target, [given, coco, results])
        metrics = evaluate_coco(coco, results, backend=backend, image_dir=images)
    else:
        from detkit.engine.device import resolve_device
        from detkit.engine.evaluate import dataset_for_checkpoint, iou_types_of, predict_dataset, score_detections
        from detkit.engine.predict import load_detector
        from detkit.engine.proposals import warm_proposal_cache
        from detkit.modeling.stages import record_stages

        torch_device = resolve_device(device)
        model, checkpoint = load_detector(weights, torch_device, score_thresh=score_thresh, svd_rank=svd_rank, overrides=set_)
        if weights is None:
            console.print(f"weights: {checkpoint.source} (the last `detkit train`, from runs/latest.json)")
        coco, images = _ground_truth(coco, split, images, classes=checkpoint.class_names)
        target = out or Path(checkpoint.source).with_name(Path(checkpoint.source).stem + "_metrics.json")
        _refuse_overwriting(target, [given, coco, Path(checkpoint.source)])
        dataset = dataset_for_checkpoint(checkpoint, coco, images)
        with RichProgress(console) as progress:
            warm = warm_proposal_cache(model, [dataset.image_path(i) for i in range(len(dataset))], on_event=progress)
            started = time.perf_counter()
            with record_stages(torch_device) as recorder:
                detections = predict_dataset(model, dataset, device=torch_device, batch_size=batch_size, on_event=progress)
        if warm is not None:
            console.print(proposal_run_line(warm))
        console.print(_timing_line(model, len(dataset), time.perf_counter() - started, recorder.seconds))
        scored = score_detections(dataset, detections, iou_types_of(detections), backend=backend)
        metrics, mask_metrics = scored["bbox"], scored.get("segm")

    for note in metrics.notes:
        console.print(note_line(note))
    console.print(f"COCO {metrics.iou_type}: {metrics.num_images} images, {metrics.num_detections} detections, scored by {metrics.backend}")
    console.print(metrics_table(metrics.stats, title=f"COCO {metrics.iou_type}"))
    if metrics.per_class_ap:
        console.print(per_class_table(metrics.per_class_ap, metrics.per_class_ap50, title="per-class AP"))
    report = metrics.to_dict()
    if mask_metrics is not None:  # a mask model: the instance-mask numbers next to the box ones
        console.print(metrics_table(mask_metrics.stats, title="COCO segm"))
        console.print(per_class_table(mask_metrics.per_class_ap, mask_metrics.per_class_ap50, title="per-class mask AP"))
        report["segm"] = mask_metrics.to_dict()
    atomic_write_json(target, report, indent=2)
    console.print(f"metrics written to {target}")


def _refuse_overwriting(target: Path, inputs: list[Path]) -> None:
    """``--out`` must not be the ground truth, the results or the weights being read."""
    from detkit.errors import DataError
    from detkit.io import input_replaced_by

    replaced = input_replaced_by(target, inputs)
    if replaced is not None:
        raise DataError(f"--out {target}: is the input {replaced}, which writing the metrics would replace; choose another --out")


def _ground_truth(path: Path, split: str | None, images: Path | None, classes) -> tuple[Path, Path]:
    """COCO json + image folder of ``path`` (see ``resolve_dataset``: a VOC or YOLO split is converted
    once into the dataset cache). VOC names classes per object, so its category ids follow the
    model's class order (``classes``) and detections and truth agree; a YOLO data.yaml fixes its own."""
    from detkit.data.formats import default_splits, detect_format, evaluation_split, resolve_dataset

    fmt = detect_format(path)
    chosen = split or evaluation_split(path)
    source = resolve_dataset(path, chosen, images, classes=classes if fmt == "voc" else None)
    notes = list(source.notes)
    if fmt != "coco" and split is None and chosen == default_splits(path)[0]:
        notes.append(f"{path} has no test or val split: scoring its training split '{chosen}' (a fit to the training "
                     "data, not a measure of accuracy on new images); pass --split to choose")
    for note in notes:
        console.print(note_line(note))
    return source.annotations, source.images


def _timing_line(model, num_images: int, seconds: float, stage_seconds: dict[str, float]) -> str:
    """Per-image test time, split into the model's stages (what is left is image reading and batching);
    for a selective-search model, how many proposal sets came from the cache; for R-CNN, its cost formula."""
    from detkit.modeling.stages import STAGE_ORDER

    per_image = {name: 1000 * stage_seconds[name] / max(num_images, 1) for name in STAGE_ORDER if name in stage_seconds}
    total_ms = 1000 * seconds / max(num_images, 1)
    parts = [f"{name} {ms:.1f}" for name, ms in per_image.items()]
    parts.append(f"image reading and the rest {total_ms - sum(per_image.values()):.1f}")
    line = f"{num_images} images in {seconds:.1f} s: {total_ms:.1f} ms per image = " + " + ".join(parts) + " ms"
    tally = getattr(getattr(model, "proposal_generator", None), "tally", None)
    if tally is not None and tally.images:
        line += f"\n  proposals: {tally.computed} computed here, {tally.images - tally.computed} read from the cache"
    rcnn = getattr(model, "tally", None)
    if rcnn is not None and rcnn.images:
        regions = rcnn.regions / rcnn.images
        cnn_ms = per_image.get("backbone", 0.0) + per_image.get("preprocess", 0.0)
        line += f"\n  R-CNN per image: {regions:.0f} regions x {cnn_ms / max(regions, 1):.2f} ms (warp + CNN) per region = {cnn_ms:.1f} ms"
    return line
