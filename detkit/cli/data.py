"""``detkit data ...``: dataset commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from detkit.cli.common import console, reports_errors

app = typer.Typer(help="Create and inspect datasets.", no_args_is_help=True)

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
    columns = (TextColumn("generating synthetic dataset"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("synth", total=num_train + num_val)
        generate_synthetic_coco(root, **params, progress=lambda done, total: progress.update(task, completed=done))
    console.print(f"wrote {num_train} train and {num_val} val images to {root}")
