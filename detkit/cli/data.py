"""``detkit data ...``: dataset commands."""

from __future__ import annotations

import os
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
    generate_with_progress(out, num_train=num_train, num_val=num_val, size=size, seed=seed, force=force)


def generate_with_progress(root: Path, *, num_train: int = 1000, num_val: int = 200, size: int = 128, seed: int = 0, force: bool = False) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from detkit.data.synthetic import generate_synthetic_coco, synthetic_dataset_ready

    params = dict(num_train=num_train, num_val=num_val, image_size=(size, size), seed=seed)
    if not force and synthetic_dataset_ready(root, **params):
        console.print(f"synthetic dataset ready at {root}")
        return
    if num_train < 1 or num_val < 1 or size < 32:
        from detkit.errors import ConfigError

        raise ConfigError("synthetic dataset needs --num-train >= 1, --num-val >= 1 and --size >= 32")
    columns = (TextColumn("generating synthetic dataset", markup=False), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("synth", total=num_train + num_val)
        generate_synthetic_coco(root, **params, progress=lambda done, total: progress.update(task, completed=done))
    console.print(f"wrote {num_train} train and {num_val} val images to {root}")


@app.command("convert")
@reports_errors
def convert_command(
    source: Annotated[Path, typer.Argument(help="COCO instances json, Pascal VOC folder, or YOLO folder/data.yaml.")],
    out: Annotated[Path, typer.Argument(help="Output folder (or a .json file for one COCO split).")],
    to: Annotated[str, typer.Option(help="Target format: coco, voc or yolo.")],
    split: Annotated[Optional[str], typer.Option(help="Convert only this split (VOC/YOLO); for a COCO file, the name its split gets.")] = None,
    images: Annotated[Optional[Path], typer.Option(help="Image folder (COCO: default <split>/ beside annotations/, else beside the json; VOC: default JPEGImages/).")] = None,
    classes: Annotated[Optional[str], typer.Option(help="VOC class names in label order, comma-separated (default: sorted).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if an earlier `detkit data convert` wrote it (only once the new output is complete).")] = False,
    allow_outside_images: AllowOutsideImages = False,
) -> None:
    """Convert a dataset between COCO, Pascal VOC and YOLO. Images are referenced from COCO output and
    hard-linked (copied across file systems) into VOC and YOLO output."""
    from detkit.cli.data_check import render_conversion
    from detkit.data.formats import convert_dataset

    apply_path_policy(allow_outside_images)
    class_names = [name.strip() for name in classes.split(",")] if classes is not None else None
    report = convert_dataset(source, out, to.lower(), split=split, images=images, classes=class_names, replace=overwrite)
    render_conversion(console, report)


@app.command("check")
@reports_errors
def check_command(
    annotations: Annotated[Path, typer.Argument(help="COCO instances json, Pascal VOC folder, or YOLO folder/data.yaml.")],
    images: Annotated[Optional[Path], typer.Option(help="Image folder (COCO: default <split>/ beside annotations/, else beside the json).")] = None,
    split: Annotated[Optional[str], typer.Option(help="Split of a VOC or YOLO dataset (default: its train split).")] = None,
    fix: Annotated[Optional[Path], typer.Option(help="Write a cleaned COCO json here and report what changed.")] = None,
    allow_outside_images: AllowOutsideImages = False,
) -> None:
    """Decode every image and check every record; exit 2 when errors are found (warnings alone exit 0).
    With --fix, the exit code is that of the cleaned file."""
    from detkit.cli.data_check import image_progress, render_check, render_fix
    from detkit.data.check import check_coco, check_dataset
    from detkit.data.coco_fields import read_coco_json
    from detkit.data.fix import fix_dataset
    from detkit.data.formats import default_splits, detect_format, resolve_dataset
    from detkit.errors import DataError
    from detkit.io import same_file

    apply_path_policy(allow_outside_images)
    if fix is not None and os.path.lexists(fix) and same_file(fix, annotations):
        raise DataError(f"--fix {fix}: is the file being checked; write the cleaned copy to another path (the original stays as it is)")
    if detect_format(annotations) != "coco":
        split = split or default_splits(annotations)[0]
        console.print(f"checking split '{split}' of {annotations}")
    source = resolve_dataset(annotations, split, images)
    for note in source.notes:
        console.print(note_line(note))
    with image_progress(console) as progress:
        report = check_dataset(source.annotations, source.images, progress=progress)
    render_check(console, report, suggest_fix=fix is None)
    if fix is not None:
        result = fix_dataset(source.annotations, report.images, fix, image_dir=source.images)
        after = check_coco(read_coco_json(fix), fix, source.images, images=report.images)
        render_fix(console, result, after)
        report = after
    if report.errors:
        raise typer.Exit(2)
