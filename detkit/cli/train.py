"""``detkit train``: train a pipeline; with no arguments, Faster R-CNN on the embedded synthetic dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from detkit.cli.common import console, reports_errors
from detkit.cli.console import note_line, styled
from detkit.cli.options import AllowOutsideImages, apply_path_policy


@reports_errors
def train_command(
    pipeline: Annotated[Optional[str], typer.Option(help="rcnn, fast_rcnn, faster_rcnn (default), mask_rcnn or yolo.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="COCO instances json, Pascal VOC folder or YOLO folder/data.yaml to train on (default: the synthetic dataset).")] = None,
    images: Annotated[Optional[Path], typer.Option(help="Image folder of --data (default: <split>/ beside annotations/, else beside the json, or the VOC/YOLO layout's).")] = None,
    val_data: Annotated[Optional[Path], typer.Option(help="Dataset to validate on (default: --data; for VOC/YOLO its validation split).")] = None,
    val_images: Annotated[Optional[Path], typer.Option(help="Image folder of --val-data.")] = None,
    split: Annotated[Optional[str], typer.Option(help="Training split of a VOC/YOLO --data (default: train).")] = None,
    val_split: Annotated[Optional[str], typer.Option(help="Validation split of a VOC/YOLO dataset (default: val, else test).")] = None,
    preset: Annotated[Optional[str], typer.Option(help="Start from this preset instead of the pipeline's default.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML/JSON file of config overrides.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override one config value: KEY=VALUE (repeatable).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Number of epochs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Images per step.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Folder for run directories (default: runs).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run name (a suffix is added when taken).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Resume a run directory (or its last.pt) with the run's own config; other options given are applied on top.")] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Start a new run from a trained checkpoint (fine-tuning): its model settings are kept; layers whose shape differs (another class count) start fresh.")] = None,
    devices: Annotated[Optional[int], typer.Option(help="Data-parallel processes on this machine: one per GPU, or CPU processes sharing the cores. Across machines, use torchrun (see README).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of every random draw (weights, data order, augmentation, sampling).")] = None,
    deterministic: Annotated[Optional[bool], typer.Option("--deterministic/--no-deterministic", help="Deterministic kernels: a killed and resumed run ends with an uninterrupted run's weights.")] = None,
    amp: Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="Mixed precision (autocast to --amp-dtype).")] = None,
    amp_dtype: Annotated[Optional[str], typer.Option(help="bf16 or fp16 (fp16 adds a gradient scaler).")] = None,
    channels_last: Annotated[Optional[bool], typer.Option("--channels-last/--no-channels-last", help="NHWC memory format for the convolutions.")] = None,
    accumulate: Annotated[Optional[int], typer.Option(help="Batches whose gradients are summed per optimizer step.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Data-loader processes per training process.")] = None,
    sync_bn: Annotated[Optional[bool], typer.Option("--sync-bn/--no-sync-bn", help="BatchNorm statistics over all processes (CUDA).")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(help="Also write last.pt every N optimizer steps (0: at epoch ends).")] = None,
    allow_outside_images: AllowOutsideImages = False,
) -> None:
    """Train a detector and write checkpoints, a metrics log and training curves to runs/NAME."""
    from dataclasses import replace

    from detkit.cli.progress import RichProgress
    from detkit.cli.tables import metrics_table
    from detkit.config.overrides import apply_overrides, load_config_file
    from detkit.config.presets import default_preset
    from detkit.config.presets import preset as load_preset

    apply_path_policy(allow_outside_images)
    if resume is not None:
        from detkit.engine.runs import run_config

        cfg = run_config(resume)  # a resumed run continues with the config it was started with
        _refuse_model_choice_on_resume(cfg, resume, pipeline, preset, weights)
    elif weights is not None:
        from detkit.engine.fine_tune import fine_tune_config

        cfg = fine_tune_config(weights, pipeline, preset)
    else:
        cfg = load_preset(preset or default_preset(pipeline or "faster_rcnn", synthetic=data is None))
    if data is not None:
        train_source, val_source = _training_sources(data, images, val_data, val_images, split, val_split)
        cfg = replace(cfg, data=replace(
            cfg.data, train_annotations=str(train_source.annotations), train_images=str(train_source.images),
            val_annotations=str(val_source.annotations), val_images=str(val_source.images),
        ))
    if config is not None:
        cfg = load_config_file(cfg, config)
    cfg = apply_overrides(cfg, list(set_ or []))
    cfg = _apply_options(
        cfg, epochs=epochs, batch_size=batch_size, device=device, output=str(output) if output else None, name=name,
        seed=seed, amp=amp, amp_dtype=amp_dtype, channels_last=channels_last, accumulate=accumulate, workers=workers,
        devices=devices, deterministic=deterministic, sync_bn=sync_bn, checkpoint_every=checkpoint_every,
    )
    from detkit.engine.precision import check_runtime

    check_runtime(cfg)  # before anything slow: a bad option fails at once
    if data is None and resume is None:
        _ensure_synthetic_data(cfg)

    from detkit.engine.distributed import rank_from_environment
    from detkit.engine.train import train

    launched = rank_from_environment()
    if launched is not None and not launched.is_main:  # a torchrun worker: rank 0 does the talking
        train(cfg, resume_from=resume)
        return
    processes = launched.world_size if launched is not None else cfg.runtime.devices
    across = f" x {processes} processes" if processes > 1 else ""
    console.print(styled("training ", (cfg.model.pipeline, "bold"), f" ({cfg.name}) on {cfg.data.train_annotations}{across}"))
    with RichProgress(console) as progress:
        result = train(cfg, resume_from=resume, on_event=progress)
    console.print(f"done in {result.seconds / 60:.1f} min; best checkpoint: {result.best_checkpoint}")
    if result.metrics:
        console.print(metrics_table(result.metrics, title="best validation (COCO bbox)"))


def _refuse_model_choice_on_resume(cfg, resume: Path, pipeline, preset, weights) -> None:
    """A resumed run keeps its model: options that would pick another one are errors, not silently ignored."""
    from detkit.errors import ConfigError

    if weights is not None:
        raise ConfigError(f"--resume {resume} continues from its own last.pt; drop --weights (or start a new run with it)")
    if preset is not None:
        raise ConfigError(f"--resume {resume} continues with the run's own config; drop --preset {preset}")
    if pipeline is not None and pipeline != cfg.model.pipeline:
        raise ConfigError(
            f"--resume {resume} continues a {cfg.model.pipeline} run; drop --pipeline {pipeline}, or start a new run to train {pipeline}"
        )


def _training_sources(data: Path, images, val_data, val_images, split, val_split):
    """COCO json + image folder for training and validation; a VOC or YOLO dataset is converted once
    into detkit's cache (see ``detkit data convert``) and its notes printed."""
    from detkit.data.formats import default_splits, resolve_dataset

    train_split, default_val_split = default_splits(data)
    train = resolve_dataset(data, split or train_split, images)
    if val_data is None:
        val = resolve_dataset(data, val_split or default_val_split, images)
    else:
        val = resolve_dataset(val_data, val_split or default_splits(val_data)[1], val_images)
    for note in dict.fromkeys(train.notes + val.notes):
        console.print(note_line(note))
    return train, val


# Command-line options that are shortcuts for config keys: option name -> dotted key.
OPTION_KEYS = {
    "epochs": "solver.epochs", "batch_size": "data.batch_size", "device": "device", "output": "output_dir", "name": "name",
    "seed": "seed", "amp": "solver.amp", "amp_dtype": "solver.amp_dtype", "channels_last": "solver.channels_last",
    "accumulate": "solver.accumulate_steps", "workers": "data.num_workers", "devices": "runtime.devices",
    "deterministic": "runtime.deterministic", "sync_bn": "runtime.sync_bn", "checkpoint_every": "runtime.checkpoint_every_steps",
}


def _apply_options(cfg, **options):
    """``cfg`` with the options that were given (None = not given: the config decides), type-checked like --set."""
    from detkit.config.overrides import update_config

    nested: dict = {}
    for option, value in options.items():
        if value is None:
            continue
        *parents, leaf = OPTION_KEYS[option].split(".")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return update_config(cfg, nested)


def _ensure_synthetic_data(cfg) -> None:
    """Generate the default synthetic dataset when the config trains on it and it is not there yet.

    Only at the synthetic presets' own location: data a --config or --set points elsewhere is the
    user's, never written to (it once was regenerated over, when its parameters differed).
    """
    from detkit.cli.data import generate_with_progress
    from detkit.config.presets import SYNTHETIC_ROOT

    root = Path(cfg.data.train_annotations).parent.parent
    if root.resolve() == Path(SYNTHETIC_ROOT).resolve():
        generate_with_progress(root)
