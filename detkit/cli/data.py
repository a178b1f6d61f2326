"""``detkit data ...``: dataset commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from detkit.cli.common import console, reports_errors
from detkit.cli.console import note_line
from detkit.cli.options import AllowOutsideImages, apply_path_policy

app = typer.Typer(help="Create, convert and check datasets.", no_args_is_help=True)

DEFAULT_ROOT = Path("datasets/synthetic")


@app.command("synth")
@reports_errors
def synth_command(
    out: Annotated[Path, typer.Option(help="Folder to write the dataset into.")] = DEFAULT_ROOT,
    num_train: Annotated[int, typer.Option(help="Training images.")] = 1000,
    num_val: Annotated[int, typer.Option(help="Validation images.")] = 200,
    size: Annotated[int, typer.Option(help="Image height and width in pixels.")] = 128,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives byte-identical files.")] = 0,
    force: Annotated[bool, typer.Option(help="Regenerate even when a matching dataset exists.")] = False,
) -> None:
    """Write the deterministic synthetic shapes dataset (COCO json with masks, train and val splits)."""
    from detkit.cli.progress import RichProgress
    from detkit.engine.train_request import make_synthetic_data

    with RichProgress(console) as progress:
        written = make_synthetic_data(
            out, num_train=num_train, num_val=num_val, size=size, seed=seed, force=force, on_event=progress
        )
    console.print(
        f"wrote {num_train} train and {num_val} val images to {out}" if written else f"synthetic dataset ready at {out}"
    )


@app.command("convert")
@reports_errors
def convert_command(
    source: Annotated[Path, typer.Argument(help="COCO instances json, Pascal VOC folder, or YOLO folder/data.yaml.")],
    out: Annotated[Path, typer.Argument(help="Output folder (or a .json file for one COCO split).")],
    to: Annotated[str, typer.Option(help="Target format: coco, voc or yolo.")],
    split: Annotated[
        Optional[str],
        typer.Option(help="Convert only this split (VOC/YOLO); for a COCO file, the name its split gets."),
    ] = None,
    images: Annotated[
        Optional[Path],
        typer.Option(
            help="Image folder (COCO: default <split>/ beside annotations/, else beside the json; "
            "VOC: default JPEGImages/)."
        ),
    ] = None,
    classes: Annotated[
        Optional[str], typer.Option(help="VOC class names in label order, comma-separated (default: sorted).")
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Replace OUT if an earlier `detkit data convert` wrote it (only once the new output is complete)."
        ),
    ] = False,
    allow_outside_images: AllowOutsideImages = False,
) -> None:
    """Convert a dataset between COCO, Pascal VOC and YOLO. Images are referenced from COCO output and
    hard-linked (copied across file systems) into VOC and YOLO output."""
    from detkit.cli.data_check import render_conversion
    from detkit.data.formats import convert_dataset

    apply_path_policy(allow_outside_images)
    class_names = [name.strip() for name in classes.split(",")] if classes is not None else None
    report = convert_dataset(
        source, out, to.lower(), split=split, images=images, classes=class_names, replace=overwrite
    )
    render_conversion(console, report)


@app.command("check")
@reports_errors
def check_command(
    annotations: Annotated[
        Path, typer.Argument(help="COCO instances json, Pascal VOC folder, or YOLO folder/data.yaml.")
    ],
    images: Annotated[
        Optional[Path],
        typer.Option(help="Image folder (COCO: default <split>/ beside annotations/, else beside the json)."),
    ] = None,
    split: Annotated[
        Optional[str], typer.Option(help="Split of a VOC or YOLO dataset (default: its train split).")
    ] = None,
    fix: Annotated[Optional[Path], typer.Option(help="Write a cleaned COCO json here and report what changed.")] = None,
    allow_outside_images: AllowOutsideImages = False,
) -> None:
    """Decode every image and check every record; exit 2 when errors are found (warnings alone exit 0).
    With --fix, the exit code is that of the cleaned file."""
    from detkit.cli.data_check import image_progress, render_check, render_fix
    from detkit.engine.dataset_check import check_and_fix

    apply_path_policy(allow_outside_images)
    with image_progress(console) as progress:
        outcome = check_and_fix(annotations, images, split, fix, progress=progress)
    if outcome.split is not None:
        console.print(f"checking split '{outcome.split}' of {annotations}")
    for note in outcome.notes:
        console.print(note_line(note))
    render_check(console, outcome.report, suggest_fix=fix is None)
    if outcome.fix is not None and outcome.after is not None:
        render_fix(console, outcome.fix, outcome.after)
    if outcome.has_errors:
        raise typer.Exit(2)
