"""``detkit train``: train a pipeline; with no arguments, Faster R-CNN on the embedded synthetic dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from detkit.cli.common import console, reports_errors
from detkit.cli.options import AllowOutsideImages, ThreadsOption, apply_path_policy, apply_threads

DATA, MODEL, SCHEDULE, RUNTIME, OUTPUT = "Data", "Model", "Schedule", "Runtime", "Output"

# Options that are shortcuts for config keys: option (parameter) name -> dotted key (the schema's
# Flag metadata says the same from the other side; tests/config keeps the two equal).
OPTION_KEYS = {
    "epochs": "solver.epochs",
    "batch_size": "data.batch_size",
    "device": "device",
    "output": "output_dir",
    "name": "name",
    "seed": "seed",
    "amp": "solver.amp",
    "amp_dtype": "solver.amp_dtype",
    "channels_last": "solver.channels_last",
    "accumulate": "solver.accumulate_steps",
    "workers": "data.num_workers",
    "devices": "runtime.devices",
    "deterministic": "runtime.deterministic",
    "sync_bn": "runtime.sync_bn",
    "checkpoint_every": "runtime.checkpoint_every_steps",
}


@reports_errors
def train_command(
    data: Annotated[
        Optional[Path],
        typer.Option(
            help="COCO instances json, Pascal VOC folder or YOLO folder/data.yaml to train on "
            "(default: the synthetic dataset).",
            rich_help_panel=DATA,
        ),
    ] = None,
    images: Annotated[
        Optional[Path],
        typer.Option(
            help="Image folder of --data (default: <split>/ beside annotations/, else beside the json, "
            "or the VOC/YOLO layout's).",
            rich_help_panel=DATA,
        ),
    ] = None,
    val_data: Annotated[
        Optional[Path],
        typer.Option(
            help="Dataset to validate on (default: --data; for VOC/YOLO its validation split).", rich_help_panel=DATA
        ),
    ] = None,
    val_images: Annotated[
        Optional[Path], typer.Option(help="Image folder of --val-data.", rich_help_panel=DATA)
    ] = None,
    split: Annotated[
        Optional[str], typer.Option(help="Training split of a VOC/YOLO --data (default: train).", rich_help_panel=DATA)
    ] = None,
    val_split: Annotated[
        Optional[str],
        typer.Option(help="Validation split of a VOC/YOLO dataset (default: val, else test).", rich_help_panel=DATA),
    ] = None,
    workers: Annotated[
        Optional[int], typer.Option(help="Data-loader processes per training process.", rich_help_panel=DATA)
    ] = None,
    allow_outside_images: AllowOutsideImages = False,
    pipeline: Annotated[
        Optional[str],
        typer.Option(help="rcnn, fast_rcnn, faster_rcnn (default), mask_rcnn or yolo.", rich_help_panel=MODEL),
    ] = None,
    preset: Annotated[
        Optional[str],
        typer.Option(
            help="Start from this preset (one of the pipeline's) instead of its default.", rich_help_panel=MODEL
        ),
    ] = None,
    weights: Annotated[
        Optional[Path],
        typer.Option(
            help="Start a new run from a trained checkpoint (fine-tuning): its model settings are kept; "
            "layers whose shape differs (another class count) start fresh.",
            rich_help_panel=MODEL,
        ),
    ] = None,
    config: Annotated[
        Optional[Path], typer.Option(help="YAML/JSON file of config overrides.", rich_help_panel=MODEL)
    ] = None,
    set_: Annotated[
        Optional[list[str]],
        typer.Option("--set", help="Override one config value: KEY=VALUE (repeatable).", rich_help_panel=MODEL),
    ] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Number of epochs.", rich_help_panel=SCHEDULE)] = None,
    batch_size: Annotated[
        Optional[int], typer.Option(help="Images per step per process.", rich_help_panel=SCHEDULE)
    ] = None,
    accumulate: Annotated[
        Optional[int],
        typer.Option(help="Batches whose gradients are summed per optimizer step.", rich_help_panel=SCHEDULE),
    ] = None,
    seed: Annotated[
        Optional[int],
        typer.Option(
            help="Seed of every random draw (weights, data order, augmentation, sampling).", rich_help_panel=SCHEDULE
        ),
    ] = None,
    resume: Annotated[
        Optional[Path],
        typer.Option(
            help="Resume a run directory (or its last.pt) with the run's own config; "
            "other options given are applied on top.",
            rich_help_panel=SCHEDULE,
        ),
    ] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N.", rich_help_panel=RUNTIME)] = None,
    devices: Annotated[
        Optional[int],
        typer.Option(
            help="Data-parallel processes on this machine: one per GPU, or CPU processes sharing the cores. "
            "Across machines, use torchrun (see README).",
            rich_help_panel=RUNTIME,
        ),
    ] = None,
    amp: Annotated[
        Optional[bool],
        typer.Option("--amp/--no-amp", help="Mixed precision (autocast to --amp-dtype).", rich_help_panel=RUNTIME),
    ] = None,
    amp_dtype: Annotated[
        Optional[str], typer.Option(help="bf16 or fp16 (fp16 adds a gradient scaler).", rich_help_panel=RUNTIME)
    ] = None,
    channels_last: Annotated[
        Optional[bool],
        typer.Option(
            "--channels-last/--no-channels-last",
            help="NHWC memory format for the convolutions.",
            rich_help_panel=RUNTIME,
        ),
    ] = None,
    threads: ThreadsOption = None,
    sync_bn: Annotated[
        Optional[bool],
        typer.Option(
            "--sync-bn/--no-sync-bn", help="BatchNorm statistics over all processes (CUDA).", rich_help_panel=RUNTIME
        ),
    ] = None,
    deterministic: Annotated[
        Optional[bool],
        typer.Option(
            "--deterministic/--no-deterministic",
            help="Deterministic kernels: a killed and resumed run ends with an uninterrupted run's weights.",
            rich_help_panel=RUNTIME,
        ),
    ] = None,
    output: Annotated[
        Optional[Path], typer.Option(help="Folder for run directories (default: runs).", rich_help_panel=OUTPUT)
    ] = None,
    name: Annotated[
        Optional[str], typer.Option(help="Run name (a suffix is added when taken).", rich_help_panel=OUTPUT)
    ] = None,
    checkpoint_every: Annotated[
        Optional[int],
        typer.Option(help="Also write last.pt every N optimizer steps (0: at epoch ends).", rich_help_panel=OUTPUT),
    ] = None,
) -> None:
    """Train a detector and write checkpoints, a metrics log and training curves to runs/NAME."""
    from detkit.cli.progress import RichProgress
    from detkit.cli.tables import metrics_table
    from detkit.engine.train_request import TrainData, TrainRequest, run_training

    apply_path_policy(allow_outside_images)
    apply_threads(threads)
    given = {
        "epochs": epochs,
        "batch_size": batch_size,
        "device": device,
        "output": str(output) if output else None,
        "name": name,
        "seed": seed,
        "amp": amp,
        "amp_dtype": amp_dtype,
        "channels_last": channels_last,
        "accumulate": accumulate,
        "workers": workers,
        "devices": devices,
        "deterministic": deterministic,
        "sync_bn": sync_bn,
        "checkpoint_every": checkpoint_every,
    }
    request = TrainRequest(
        pipeline=pipeline,
        preset=preset,
        data=TrainData(data, images, val_data, val_images, split, val_split),
        config_file=config,
        overrides=tuple(set_ or ()),
        resume=resume,
        weights=weights,
        options={OPTION_KEYS[option]: value for option, value in given.items() if value is not None},
    )
    with RichProgress(console) as progress:
        result = run_training(request, on_event=progress)
    if result is not None:  # None on a torchrun worker: rank 0 reports
        console.print(f"done in {result.seconds / 60:.1f} min; best checkpoint: {result.best_checkpoint}")
        if result.metrics:
            console.print(metrics_table(result.metrics, title="best validation (COCO bbox)"))
