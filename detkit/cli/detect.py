"""``detkit detect IMAGES...``: run a trained detector on image files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from detkit.cli.common import console, reports_errors
from detkit.cli.options import CheckpointOverrides, DeviceOption, SvdRankOption


@reports_errors
def detect_command(
    images: Annotated[list[str], typer.Argument(help="Image files, folders or quoted glob patterns.")],
    weights: Annotated[
        Optional[Path],
        typer.Option(help="Checkpoint (default: the last `detkit train`'s best.pt), or a torchvision detection .pth."),
    ] = None,
    score_thresh: Annotated[float, typer.Option(help="Drop detections scoring below this (0 to 1).")] = 0.5,
    out: Annotated[
        Path,
        typer.Option(
            help="Folder for annotated images, detections.jsonl (written as images are done) and detections.json."
        ),
    ] = Path("detections"),
    device: DeviceOption = "auto",
    set_: CheckpointOverrides = None,
    svd_rank: SvdRankOption = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 1,
    save_images: Annotated[bool, typer.Option(help="Write annotated copies of the images.")] = True,
    quiet: Annotated[bool, typer.Option(help="No per-image tables.")] = False,
) -> None:
    # The help text is one line: Typer would show a line break of the docstring in the command list.
    """Detect objects: a table per image, annotated images and COCO results (json lines as it goes, a json at \
the end) in --out."""
    from detkit.cli.options import model_choice
    from detkit.cli.progress import RichProgress
    from detkit.cli.tables import detections_table, proposal_run_line
    from detkit.engine.detect_request import DetectRequest, run_detection
    from detkit.engine.events import ImageDetected

    model = model_choice(weights, device, set_, svd_rank, batch_size, score_thresh)
    request = DetectRequest(tuple(images), model, out, save_images)
    with RichProgress(console) as progress:

        def on_event(event: object) -> None:
            if isinstance(event, ImageDetected):
                if not quiet:
                    title = f"{event.path.name}: {len(event.detections)} detections"
                    progress.console.print(detections_table(title, event.detections, event.class_names))
            else:
                progress(event)

        summary = run_detection(request, on_event=on_event)
    if summary.proposals is not None:
        console.print(proposal_run_line(summary.proposals))
    console.print(
        f"{summary.num_detections} detections in {summary.num_images} images; results: {summary.results}"
        + (f"; {summary.images_written} annotated images in {summary.out}" if summary.images_written else "")
    )
