"""``detkit train``: train a pipeline; with no arguments, Faster R-CNN on the embedded synthetic dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from detkit.cli.common import console, reports_errors


@reports_errors
def train_command(
    pipeline: Annotated[str, typer.Option(help="rcnn, fast_rcnn, faster_rcnn, mask_rcnn or yolo.")] = "faster_rcnn",
    data: Annotated[Optional[Path], typer.Option(help="COCO instances json to train on (default: the synthetic dataset).")] = None,
    images: Annotated[Optional[Path], typer.Option(help="Image folder of --data (default: beside the json).")] = None,
    val_data: Annotated[Optional[Path], typer.Option(help="COCO json to validate on (default: --data).")] = None,
    val_images: Annotated[Optional[Path], typer.Option(help="Image folder of --val-data.")] = None,
    preset: Annotated[Optional[str], typer.Option(help="Start from this preset instead of the pipeline's default.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML/JSON file of config overrides.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override one config value: KEY=VALUE (repeatable).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Number of epochs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Images per step.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Folder for run directories (default: runs).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run name (a suffix is added when taken).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Resume a run directory (or its last.pt) with the run's own config; other options given are applied on top.")] = None,
) -> None:
    """Train a detector and write checkpoints, a metrics log and training curves to runs/NAME."""
    from dataclasses import replace

    from detkit.cli.progress import RichProgress
    from detkit.cli.tables import metrics_table
    from detkit.config.overrides import apply_overrides, load_config_file
    from detkit.config.presets import default_preset
    from detkit.config.presets import preset as load_preset

    if resume is not None:
        from detkit.engine.runs import run_config

        cfg = run_config(resume)  # a resumed run continues with the config it was started with
    else:
        cfg = load_preset(preset or default_preset(pipeline, synthetic=data is None))
    if data is not None:
        cfg = replace(cfg, data=replace(
            cfg.data, train_annotations=str(data), train_images=str(images or data.parent),
            val_annotations=str(val_data or data), val_images=str(val_images or (val_data.parent if val_data else images or data.parent)),
        ))
    if config is not None:
        cfg = load_config_file(cfg, config)
    cfg = apply_overrides(cfg, list(set_ or []))
    cfg = _apply_shortcuts(cfg, epochs=epochs, batch_size=batch_size, device=device, output=output, name=name)
    if data is None and resume is None:
        _ensure_synthetic_data(cfg)

    from detkit.engine.train import train

    console.print(f"training [bold]{cfg.model.pipeline}[/] ({cfg.name}) on {cfg.data.train_annotations}")
    with RichProgress(console) as progress:
        result = train(cfg, resume_from=resume, on_event=progress)
    console.print(f"done in {result.seconds / 60:.1f} min; best checkpoint: {result.best_checkpoint}")
    if result.metrics:
        console.print(metrics_table(result.metrics, title="best validation (COCO bbox)"))


def _apply_shortcuts(cfg, *, epochs, batch_size, device, output, name):
    from dataclasses import replace

    if epochs is not None:
        cfg = replace(cfg, solver=replace(cfg.solver, epochs=epochs))
    if batch_size is not None:
        cfg = replace(cfg, data=replace(cfg.data, batch_size=batch_size))
    if device is not None:
        cfg = replace(cfg, device=device)
    if output is not None:
        cfg = replace(cfg, output_dir=str(output))
    if name is not None:
        cfg = replace(cfg, name=name)
    return cfg


def _ensure_synthetic_data(cfg) -> None:
    """Generate the default synthetic dataset where the config expects it, unless it is already there."""
    from detkit.cli.data import generate_with_progress

    root = Path(cfg.data.train_annotations).parent.parent
    generate_with_progress(root)
