"""``detkit detect IMAGES...``: run a trained detector on image files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from detkit.cli.common import console, reports_errors


@reports_errors
def detect_command(
    images: Annotated[list[str], typer.Argument(help="Image files, folders or quoted glob patterns.")],
    weights: Annotated[Optional[Path], typer.Option(help="Checkpoint (default: the last `detkit train`'s best.pt), or a torchvision detection .pth.")] = None,
    score_thresh: Annotated[float, typer.Option(help="Drop detections scoring below this (0 to 1).")] = 0.5,
    out: Annotated[Path, typer.Option(help="Folder for annotated images, detections.jsonl (written as images are done) and detections.json.")] = Path("detections"),
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a test-time config value of the checkpoint: KEY=VALUE (repeatable).")] = None,
    svd_rank: Annotated[Optional[int], typer.Option(help="Truncated-SVD rank for the box head's FC layers (0 = off; default: the checkpoint's).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 1,
    save_images: Annotated[bool, typer.Option(help="Write annotated copies of the images.")] = True,
    quiet: Annotated[bool, typer.Option(help="No per-image tables.")] = False,
) -> None:
    """Detect objects: a table per image, annotated images and COCO results (json lines as it goes, a json at the end) in --out."""
    from detkit.cli.options import check_range
    from detkit.cli.progress import RichProgress
    from detkit.cli.tables import detections_table, proposal_run_line
    from detkit.engine.detect_outputs import DetectionWriter
    from detkit.engine.device import resolve_device
    from detkit.engine.predict import detect_images, find_images, load_detector
    from detkit.engine.proposals import warm_proposal_cache

    check_range("--score-thresh", score_thresh, low=0.0, high=1.0)
    check_range("--batch-size", batch_size, low=1)
    check_range("--svd-rank", svd_rank, low=0)
    paths = find_images(images)
    torch_device = resolve_device(device)
    model, checkpoint = load_detector(weights, torch_device, score_thresh=score_thresh, svd_rank=svd_rank, overrides=set_)
    if weights is None:
        console.print(f"weights: {checkpoint.source} (the last `detkit train`, from runs/latest.json)")
    writer = DetectionWriter(out, paths, checkpoint.class_names, checkpoint.category_ids, save_images=save_images,
                             read_also=(Path(checkpoint.source),))
    try:
        with RichProgress(console) as progress:
            warm = warm_proposal_cache(model, paths, on_event=progress)
            if warm is not None:
                progress.console.print(proposal_run_line(warm))
            for item in detect_images(model, paths, torch_device, batch_size=batch_size, on_event=progress):
                if not quiet:
                    progress.console.print(detections_table(f"{item.path.name}: {len(item.detections)} detections", item.detections, checkpoint.class_names))
                writer.add(item)
    except BaseException:
        writer.abort()  # detections.jsonl keeps every image done so far
        raise
    results = writer.close()
    console.print(f"{len(writer.results)} detections in {len(paths)} images; results: {results}"
                  + (f"; {writer.images_written} annotated images in {out}" if writer.images_written else ""))
