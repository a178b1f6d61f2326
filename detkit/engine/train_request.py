"""What ``detkit train`` asks for (``TrainRequest``) and the run it becomes (``run_training``).

Precedence, lowest first: the starting config (a resumed run's own ``config.json``; a fine-tuned
checkpoint's model settings; else a preset: ``--preset``, or the pipeline's default, its synthetic
one without ``--data``), then ``--data`` and its splits, then ``--config``, then each ``--set``,
then the options that are shortcuts for config keys (``--epochs``, ``--device``...). A resumed run
keeps its model, so options that would choose another one are refused rather than ignored, and so
is a ``--preset`` of another pipeline than ``--pipeline``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from detkit.config import ExperimentConfig
from detkit.config.overrides import apply_overrides, load_config_file, update_config
from detkit.config.synthetic import SYNTHETIC_ROOT
from detkit.data.formats import CocoSource, default_splits, resolve_dataset
from detkit.data.synthetic import generate_synthetic_coco, synthetic_dataset_ready
from detkit.engine.distributed import rank_from_environment
from detkit.engine.events import (
    EventCallback,
    Notice,
    StageAdvanced,
    StageFinished,
    StageStarted,
    TrainingStarted,
    ignore_events,
)
from detkit.engine.fine_tune import fine_tune_config
from detkit.engine.precision import check_runtime
from detkit.engine.runs import TrainResult, run_config
from detkit.engine.train import train
from detkit.errors import ConfigError
from detkit.pipelines import preset, preset_for


@dataclass(frozen=True)
class TrainData:
    """``--data`` (a COCO json, VOC folder or YOLO folder/data.yaml), its image folder and splits, and
    what to validate on (default: the same dataset's validation split)."""

    data: Path | None = None
    images: Path | None = None
    val_data: Path | None = None
    val_images: Path | None = None
    split: str | None = None
    val_split: str | None = None


@dataclass(frozen=True)
class TrainRequest:
    """A ``detkit train`` invocation. ``options`` maps dotted config keys to the values of the options
    given (``{"solver.epochs": 3}``); options not given are absent."""

    pipeline: str | None = None
    preset: str | None = None
    data: TrainData = field(default_factory=TrainData)
    config_file: Path | None = None
    overrides: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    resume: Path | None = None
    weights: Path | None = None


def resolve_config(request: TrainRequest, on_event: EventCallback = ignore_events) -> ExperimentConfig:
    """The run's config, checked (``check_runtime``) before anything slow; notes go to ``on_event``."""
    cfg: ExperimentConfig = _starting_config(request)
    if request.data.data is not None:
        train_source, val_source = _training_sources(request.data, on_event)
        cfg = replace(
            cfg,
            data=replace(
                cfg.data,
                train_annotations=str(train_source.annotations),
                train_images=str(train_source.images),
                val_annotations=str(val_source.annotations),
                val_images=str(val_source.images),
            ),
        )
    if request.config_file is not None:
        cfg = load_config_file(cfg, request.config_file)
    cfg = apply_overrides(cfg, list(request.overrides))
    cfg = update_config(cfg, _nested(request.options))
    check_runtime(cfg)
    return cfg


def run_training(request: TrainRequest, on_event: EventCallback = ignore_events) -> TrainResult | None:
    """Resolve, make the embedded dataset if the config trains on it, and train; None on a torchrun
    worker (rank 0 reports the run)."""
    launched = rank_from_environment()
    talk = on_event if launched is None or launched.is_main else ignore_events
    cfg = resolve_config(request, talk)
    if request.data.data is None and request.resume is None:
        ensure_synthetic_data(cfg, talk)
    processes = launched.world_size if launched is not None else cfg.runtime.devices
    talk(TrainingStarted(cfg.model.pipeline, cfg.name, cfg.data.train_annotations, processes, torch.get_num_threads()))
    result = train(cfg, resume_from=request.resume, on_event=talk)
    return result if launched is None or launched.is_main else None


def _starting_config(request: TrainRequest) -> ExperimentConfig:
    if request.resume is not None:
        cfg = run_config(request.resume)  # a resumed run continues with the config it was started with
        _refuse_model_choice_on_resume(cfg, request)
        return cfg
    if request.weights is not None:
        return fine_tune_config(request.weights, request.pipeline, request.preset)
    return preset(preset_for(request.pipeline, request.preset, synthetic=request.data.data is None))


def _refuse_model_choice_on_resume(cfg: ExperimentConfig, request: TrainRequest) -> None:
    """A resumed run keeps its model: options that would pick another one are errors, not silently ignored."""
    resume = request.resume
    if request.weights is not None:
        raise ConfigError(
            f"--resume {resume} continues from its own last.pt; drop --weights (or start a new run with it)"
        )
    if request.preset is not None:
        raise ConfigError(f"--resume {resume} continues with the run's own config; drop --preset {request.preset}")
    if request.pipeline is not None and request.pipeline != cfg.model.pipeline:
        raise ConfigError(
            f"--resume {resume} continues a {cfg.model.pipeline} run; drop --pipeline {request.pipeline}, "
            f"or start a new run to train {request.pipeline}"
        )


def _training_sources(data: TrainData, on_event: EventCallback) -> tuple[CocoSource, CocoSource]:
    """COCO json + image folder for training and validation; a VOC or YOLO dataset is converted once
    into detkit's cache (see ``detkit data convert``) and its notes said."""
    assert data.data is not None
    train_split, default_val_split = default_splits(data.data)
    train_set = resolve_dataset(data.data, data.split or train_split, data.images)
    if data.val_data is None:
        val_set = resolve_dataset(data.data, data.val_split or default_val_split, data.images)
    else:
        val_set = resolve_dataset(data.val_data, data.val_split or default_splits(data.val_data)[1], data.val_images)
    for note in dict.fromkeys(train_set.notes + val_set.notes):
        on_event(Notice(note, level="note"))
    return train_set, val_set


def _nested(options: Mapping[str, Any]) -> dict[str, Any]:
    """``{"solver.epochs": 3}`` -> ``{"solver": {"epochs": 3}}``."""
    nested: dict[str, Any] = {}
    for key, value in options.items():
        *parents, leaf = key.split(".")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return nested


def ensure_synthetic_data(cfg: ExperimentConfig, on_event: EventCallback = ignore_events) -> None:
    """Generate the default synthetic dataset when the config trains on it and it is not there yet.

    Only at the synthetic presets' own location: data a --config or --set points elsewhere is the
    user's, never written to (it once was regenerated over, when its parameters differed).
    """
    root = Path(cfg.data.train_annotations).parent.parent
    if root.resolve() != Path(SYNTHETIC_ROOT).resolve() or synthetic_dataset_ready(root):
        return
    make_synthetic_data(root, on_event=on_event)


def make_synthetic_data(
    root: Path,
    *,
    num_train: int = 1000,
    num_val: int = 200,
    size: int = 128,
    seed: int = 0,
    force: bool = False,
    on_event: EventCallback = ignore_events,
) -> bool:
    """Write the synthetic shapes dataset at ``root`` unless an identical one is there (or ``force``);
    returns whether it was written. Progress goes to ``on_event`` as the ``synth`` stage."""
    params: dict[str, Any] = {"num_train": num_train, "num_val": num_val, "image_size": (size, size), "seed": seed}
    if not force and synthetic_dataset_ready(root, **params):
        return False
    if num_train < 1 or num_val < 1 or size < 32:
        raise ConfigError("synthetic dataset needs --num-train >= 1, --num-val >= 1 and --size >= 32")
    on_event(StageStarted("synth", total=num_train + num_val, description="generating synthetic dataset"))
    generate_synthetic_coco(root, **params, progress=lambda done, total: on_event(StageAdvanced("synth", done)))
    on_event(StageFinished("synth"))
    return True
