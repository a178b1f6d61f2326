"""Starting a fresh training run from a trained checkpoint's weights (``detkit train --weights``).

The checkpoint's model settings are kept (the tensors only fit the architecture they were trained
in); its weights are copied into the new model tensor by tensor, by name. Tensors whose shape
differs start fresh: the class-dependent layers when the new data has another number of classes
(the class logits and per-class box deltas of the R-CNN heads, YOLO's class branch, the per-class
mask predictor). A checkpoint of another pipeline is refused: a YOLO trunk and an R-CNN trunk share
no layer names, so nothing would transfer and the run would silently start from scratch.

A tensor that does transfer must hold what the model's does (``check_weight_values``): floating-point
values, all finite, where the model has floating-point weights. ``load_state_dict`` would cast int8 or
bool values silently, and a NaN weight would make every loss of the new run NaN.

The checkpoint chooses no location (see checkpoint.py): the new run's data, output folder and name
come from this command's options, never from the config of the run that wrote the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from detkit.checkpoint import Checkpoint, load_checkpoint
from detkit.config import ExperimentConfig
from detkit.engine.events import EventCallback, Notice
from detkit.errors import CheckpointError, ConfigError
from detkit.modeling.state_checks import check_weight_values


@dataclass(frozen=True)
class TransferReport:
    """What ``load_initial_weights`` copied: tensors taken from the checkpoint, and the model's own
    tensors that start fresh (their names)."""

    loaded: int
    fresh: tuple[str, ...]
    checkpoint_classes: int

    def describe(self, path: str, num_classes: int) -> str:
        total = self.loaded + len(self.fresh)
        text = f"started from {path}: {self.loaded} of {total} tensors"
        if self.fresh:
            why = (
                f" (it has {self.checkpoint_classes} classes, this data {num_classes})"
                if self.checkpoint_classes != num_classes
                else ""
            )
            shown = ", ".join(self.fresh[:4]) + (", ..." if len(self.fresh) > 4 else "")
            text += f"; {len(self.fresh)} start fresh{why}: {shown}"
        return text


def fine_tune_config(weights: Path, pipeline: str | None, preset: str | None) -> ExperimentConfig:
    """The config of a run that starts from ``weights``: the checkpoint's own, its class count left
    to the new data, and ImageNet loading off (the checkpoint brings the trunk)."""
    if preset is not None:
        raise ConfigError(
            "--weights and --preset both choose the model; drop --preset (the checkpoint's settings are used)"
        )
    checkpoint = load_checkpoint(weights)
    check_same_pipeline(checkpoint, pipeline or checkpoint.pipeline)
    cfg = checkpoint.config
    backbone = replace(cfg.model.backbone, pretrained=False)
    return replace(cfg, model=replace(cfg.model, num_classes=0, backbone=backbone, init_weights=str(weights)))


def check_same_pipeline(checkpoint: Checkpoint, pipeline: str) -> None:
    if checkpoint.pipeline != pipeline:
        raise CheckpointError(
            f"{checkpoint.source}: holds a {checkpoint.pipeline} model, not {pipeline}; fine-tune it with "
            f"--pipeline {checkpoint.pipeline} (or drop --pipeline), or pass a {pipeline} checkpoint"
        )


def load_initial_weights(model: nn.Module, cfg: ExperimentConfig) -> TransferReport:
    """Copy the tensors of ``cfg.model.init_weights`` whose name and shape match into ``model``, once
    ``check_weight_values`` passed them."""
    checkpoint = load_checkpoint(cfg.model.init_weights)
    check_same_pipeline(checkpoint, cfg.model.pipeline)
    own = model.state_dict()
    fitting = {name: tensor for name, tensor in checkpoint.model_state.items() if _fits(own.get(name), tensor)}
    if not fitting:
        raise CheckpointError(
            f"{checkpoint.source}: none of its tensors fit the model configured now; drop the model.* overrides "
            "(a fine-tuned run keeps the checkpoint's architecture)"
        )
    check_weight_values(fitting, own, checkpoint.source)
    model.load_state_dict(fitting, strict=False)
    fresh = tuple(name for name in own if name not in fitting)
    return TransferReport(len(fitting), fresh, checkpoint.config.model.num_classes)


def start_from_checkpoint(model: nn.Module, cfg: ExperimentConfig, on_event: EventCallback) -> None:
    """``load_initial_weights``, then say what was copied and what starts fresh."""
    report = load_initial_weights(model, cfg)
    on_event(Notice(report.describe(cfg.model.init_weights, cfg.model.num_classes), level="info"))


def _fits(own: torch.Tensor | None, theirs: object) -> bool:
    return own is not None and isinstance(theirs, torch.Tensor) and own.shape == theirs.shape
