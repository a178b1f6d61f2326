"""The models a benchmark times: a pipeline's paper preset with seeded random weights, or a checkpoint.

Random weights make every stage's *cost* real but not every stage's *load*: an untrained RPN's
proposals collapse under NMS, and untrained scores fall below the detection thresholds, so the box
head, NMS and mask head would see far less than a trained model gives them. ``FULL_LOAD`` sets those
thresholds so each stage always gets its configured maximum (1000 RoIs, 100 detections with masks,
1000 NMS candidates), the load of a trained model on a busy image; a checkpoint is timed as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from detkit.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint
from detkit.config import ExperimentConfig
from detkit.config.overrides import apply_overrides
from detkit.config.presets import PIPELINE_NAMES, preset
from detkit.errors import ConfigError
from detkit.pipelines import PIPELINES, SELECTIVE_SEARCH_PIPELINES, STAGED_PIPELINES

COCO_CLASSES = 80
FULL_LOAD: dict[str, tuple[str, ...]] = {
    "rcnn": (),  # untrained SVMs score every region 0.5: every region and class already reaches NMS
    "fast_rcnn": ("model.roi_heads.score_thresh=0",),
    "faster_rcnn": ("model.rpn.nms_thresh=1.0", "model.roi_heads.score_thresh=0"),
    "mask_rcnn": ("model.rpn.nms_thresh=1.0", "model.roi_heads.score_thresh=0"),
    "yolo": ("model.yolo.score_thresh=0",),
}
# Selective search must run in every timed call: a proposal read from the disk cache costs nothing.
UNCACHED_PROPOSALS = "model.proposals.cache=false"


@dataclass
class BenchmarkModel:
    """One row of a benchmark: a detector in eval mode and where it came from."""

    name: str
    pipeline: str
    model: nn.Module
    config: ExperimentConfig
    weights: str  # a checkpoint path, or "random"
    checkpoint: Checkpoint | None = None


def input_size_overrides(pipeline: str, long_side: int) -> list[str]:
    """Settings that make ``pipeline`` run on images whose longer side is ``long_side`` pixels, as given:
    4:3 images of ``(3 * long_side // 4, long_side)`` go through without resampling."""
    if pipeline == "yolo":
        if long_side % 32:
            raise ConfigError(f"--image-size {long_side}: yolo needs a multiple of 32 (e.g. {32 * round(long_side / 32)})")
        return [f"model.yolo.image_size={long_side}", f"model.yolo.train_sizes=[{long_side}]"]
    if pipeline == "rcnn":
        return []  # R-CNN warps each region to its fixed crop size whatever the image's size
    return [f"model.transform.min_size=[{3 * long_side // 4}]", f"model.transform.max_size={long_side}"]


def preset_config(pipeline: str, backbone: str | None, long_side: int, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """``pipeline``'s paper preset without ImageNet weights, on ``backbone`` (None: the preset's own),
    sized for ``long_side`` images, with the full-load thresholds and then ``overrides`` applied."""
    if pipeline not in PIPELINE_NAMES:
        raise ConfigError(f"unknown pipeline {pipeline!r}; choose from all, {', '.join(PIPELINE_NAMES)}")
    assignments = [
        "model.backbone.pretrained=false", *input_size_overrides(pipeline, long_side), *FULL_LOAD[pipeline],
        *_uncached(pipeline),
    ]
    if backbone is not None:
        assignments.append(f"model.backbone.name={backbone}")
    return apply_overrides(preset(pipeline), [*assignments, *overrides])


def random_model(
    pipeline: str, backbone: str | None, long_side: int, num_classes: int = COCO_CLASSES, overrides: list[str] | tuple[str, ...] = (),
    seed: int = 0,
) -> BenchmarkModel:
    cfg = preset_config(pipeline, backbone, long_side, overrides)
    cfg = replace(cfg, model=replace(cfg.model, num_classes=num_classes))
    torch.manual_seed(seed)
    model = PIPELINES[pipeline](cfg.model).eval()
    return BenchmarkModel(name=pipeline, pipeline=pipeline, model=model, config=cfg, weights="random")


def checkpoint_model(path: str | Path, long_side: int | None, overrides: list[str] | tuple[str, ...] = ()) -> BenchmarkModel:
    """A trained model as its checkpoint configured it; ``long_side`` (when given) resizes its input."""
    checkpoint = load_checkpoint(path)
    pipeline = checkpoint.pipeline
    assignments = [*(input_size_overrides(pipeline, long_side) if long_side else []), *_uncached(pipeline), *overrides]
    checkpoint = replace(checkpoint, config=apply_overrides(checkpoint.config, assignments))
    model = model_from_checkpoint(checkpoint).eval()
    return BenchmarkModel(
        name=Path(path).stem if Path(path).stem not in ("best", "last") else f"{Path(path).parent.name}/{Path(path).stem}",
        pipeline=pipeline, model=model, config=checkpoint.config, weights=str(path), checkpoint=checkpoint,
    )


def uses_selective_search(pipeline: str) -> bool:
    """Fast R-CNN and R-CNN take their regions from selective search (the rest propose their own)."""
    return pipeline in SELECTIVE_SEARCH_PIPELINES | STAGED_PIPELINES


def _uncached(pipeline: str) -> list[str]:
    return [UNCACHED_PROPOSALS] if uses_selective_search(pipeline) else []
