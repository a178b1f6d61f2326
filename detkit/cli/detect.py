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
    score_thresh: Annotated[float, typer.Option(help="Drop detections scoring below this.")] = 0.5,
    out: Annotated[Path, typer.Option(help="Folder for annotated images and detections.json.")] = Path("detections"),
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a test-time config value of the checkpoint: KEY=VALUE (repeatable).")] = None,
    svd_rank: Annotated[Optional[int], typer.Option(help="Truncated-SVD rank for the box head's FC layers (0 = off; default: the checkpoint's).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 1,
    save_images: Annotated[bool, typer.Option(help="Write annotated copies of the images.")] = True,
    quiet: Annotated[bool, typer.Option(help="No per-image tables.")] = False,
) -> None:
    """Detect objects: a table per image, annotated images and a COCO results json in --out."""
    from detkit.cli.progress import RichProgress
    from detkit.cli.tables import detections_table, proposal_run_line
    from detkit.engine.device import resolve_device
    from detkit.engine.drawing import draw_detections, save_image_rgb
    from detkit.engine.predict import detect_images, find_images, load_detector
    from detkit.engine.proposals import warm_proposal_cache
    from detkit.evaluation.results import detections_to_coco_results, write_results_json

    paths = find_images(images)
    torch_device = resolve_device(device)
    model, checkpoint = load_detector(weights, torch_device, score_thresh=score_thresh, svd_rank=svd_rank, overrides=set_)
    results, written, used_names = [], 0, set()
    with RichProgress(console) as progress:
        warm = warm_proposal_cache(model, paths, on_event=progress)
        if warm is not None:
            progress.console.print(proposal_run_line(warm))
        for item in detect_images(model, paths, torch_device, batch_size=batch_size, on_event=progress):
            if not quiet:
                progress.console.print(detections_table(f"{item.path.name}: {len(item.detections)} detections", item.detections, checkpoint.class_names))
            for record in detections_to_coco_results([item.detections], [item.image_id], checkpoint.category_ids):
                results.append({**record, "file_name": str(item.path)})
            if save_images:
                annotated = draw_detections(item.image, item.detections, checkpoint.class_names)
                save_image_rgb(out / _output_name(item.path, used_names), annotated)
                written += 1
    write_results_json(out / "detections.json", results)
    console.print(f"{len(results)} detections in {len(paths)} images; results: {out / 'detections.json'}"
                  + (f"; {written} annotated images in {out}" if written else ""))


def _output_name(path: Path, used: set[str]) -> str:
    """The annotated copy's file name: the input's, made unique when two inputs share a name."""
    suffix = path.suffix.lower() if path.suffix.lower() in (".png", ".jpg", ".jpeg") else ".png"
    name, index = f"{path.stem}{suffix}", 1
    while name in used:
        index += 1
        name = f"{path.stem}_{index}{suffix}"
    used.add(name)
    return name
