"""The models a benchmark times: a pipeline's paper preset with seeded random weights, a checkpoint, or
an exported file (``detkit export``: ONNX run by onnxruntime, TorchScript by ``torch.jit``).

Random weights make every stage's *cost* real but not every stage's *load*: an untrained RPN's
proposals collapse under NMS, and untrained scores fall below the detection thresholds, so the box
head, NMS and mask head would see far less than a trained model gives them. Each pipeline's
``PipelineSpec.full_load`` sets those thresholds so each stage always gets its configured maximum
(1000 RoIs, 100 detections with masks, 1000 NMS candidates), the load of a trained model on a busy
image; a checkpoint is timed as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from detkit.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint
from detkit.config import ExperimentConfig
from detkit.config.overrides import apply_overrides
from detkit.engine.predict import load_exported
from detkit.errors import ConfigError
from detkit.pipelines import PIPELINES, pipeline, preset

COCO_CLASSES = 80
# Selective search must run in every timed call: a proposal read from the disk cache costs nothing.
UNCACHED_PROPOSALS = "model.proposals.cache=false"


@dataclass
class BenchmarkModel:
    """One row of a benchmark: a detector in eval mode and where it came from."""

    name: str
    pipeline: str
    model: nn.Module
    config: ExperimentConfig
    weights: str  # a checkpoint or exported file's path, or "random"
    checkpoint: Checkpoint | None = None
    runtime: str = "eager"  # "eager", or an exported file's: "onnxruntime", "torchscript"
    seed: int = 0  # of a random-weight model's build


def preset_config(
    pipeline_name: str, backbone: str | None, long_side: int, overrides: list[str] | tuple[str, ...] = ()
) -> ExperimentConfig:
    """``pipeline``'s paper preset without ImageNet weights, on ``backbone`` (None: the preset's own),
    sized for ``long_side`` images, with the full-load thresholds and then ``overrides`` applied."""
    if pipeline_name not in PIPELINES:
        raise ConfigError(f"unknown pipeline {pipeline_name!r}; choose from all, {', '.join(PIPELINES)}")
    spec = pipeline(pipeline_name)
    assignments = [
        "model.backbone.pretrained=false",
        *spec.input_size(long_side),
        *spec.full_load,
        *_uncached(spec.name),
    ]
    if backbone is not None:
        assignments.append(f"model.backbone.name={backbone}")
    cfg: ExperimentConfig = apply_overrides(preset(spec.presets[0].__name__), [*assignments, *overrides])
    return cfg


def random_model(
    pipeline_name: str,
    backbone: str | None,
    long_side: int,
    num_classes: int = COCO_CLASSES,
    overrides: list[str] | tuple[str, ...] = (),
    seed: int = 0,
) -> BenchmarkModel:
    cfg = preset_config(pipeline_name, backbone, long_side, overrides)
    cfg = replace(cfg, model=replace(cfg.model, num_classes=num_classes))
    torch.manual_seed(seed)
    model = pipeline(pipeline_name).build(cfg.model).eval()
    return BenchmarkModel(
        name=pipeline_name, pipeline=pipeline_name, model=model, config=cfg, weights="random", seed=seed
    )


def rebuilt_model(entry: BenchmarkModel) -> nn.Module:
    """``entry``'s eager model built again, with the weights it was built with and every layer it was
    built with: what training is timed on once the timed model's norms are folded into its convs."""
    if entry.checkpoint is not None:
        return model_from_checkpoint(entry.checkpoint)
    torch.manual_seed(entry.seed)
    return pipeline(entry.pipeline).build(entry.config.model)


def checkpoint_model(
    path: str | Path, long_side: int | None, overrides: list[str] | tuple[str, ...] = ()
) -> BenchmarkModel:
    """A trained model as its checkpoint configured it; ``long_side`` (when given) resizes its input."""
    checkpoint = load_checkpoint(path)
    spec = pipeline(checkpoint.pipeline)
    assignments = [*(spec.input_size(long_side) if long_side else []), *_uncached(spec.name), *overrides]
    checkpoint = replace(checkpoint, config=apply_overrides(checkpoint.config, assignments))
    model = model_from_checkpoint(checkpoint).eval()
    return BenchmarkModel(
        name=Path(path).stem
        if Path(path).stem not in ("best", "last")
        else f"{Path(path).parent.name}/{Path(path).stem}",
        pipeline=spec.name,
        model=model,
        config=checkpoint.config,
        weights=str(path),
        checkpoint=checkpoint,
    )


def exported_model(path: str | Path, device: torch.device) -> BenchmarkModel:
    """An exported file as its runtime runs it (on ``device``: onnxruntime's CUDA providers when present);
    it takes the benchmark's images as they are (a fixed-size file letterboxes them)."""
    model, checkpoint = load_exported(Path(path), device)
    return BenchmarkModel(
        name=Path(path).name,
        pipeline=checkpoint.pipeline,
        model=model,
        config=checkpoint.config,
        weights=str(path),
        checkpoint=checkpoint,
        runtime=model.runtime,
    )


def _uncached(pipeline_name: str) -> list[str]:
    return [UNCACHED_PROPOSALS] if pipeline(pipeline_name).uses_selective_search else []
