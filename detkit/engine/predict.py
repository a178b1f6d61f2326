"""Detection on image files: find them, run a trained detector in batches, return per-image results."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn

from detkit.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint
from detkit.config.overrides import apply_overrides
from detkit.data.images import image_to_tensor, read_image_rgb
from detkit.engine.device import resolve_device
from detkit.engine.events import EventCallback, Notice, StageAdvanced, StageFinished, StageStarted, ignore_events
from detkit.engine.runs import latest_checkpoint
from detkit.errors import ConfigError
from detkit.modeling.box_head import MLPBoxHead
from detkit.pipelines import PIPELINES, pipeline
from detkit.structures import Detections


@dataclass
class ImageDetections:
    path: Path
    image_id: int  # 1-based position in the input list: the id written to the results json
    image: np.ndarray  # uint8 [H, W, 3] RGB as read
    detections: Detections


@dataclass(frozen=True)
class ModelChoice:
    """Which trained model a command runs, and how: its checkpoint (None: the last ``detkit train``'s,
    named by ``runs/latest.json``), device, test-time ``--set`` overrides, SVD rank, score threshold
    and images per forward pass."""

    weights: Path | None = None
    device: str = "auto"
    overrides: tuple[str, ...] = ()
    svd_rank: int | None = None
    score_thresh: float | None = None
    batch_size: int = 1


def load_chosen(
    choice: ModelChoice, on_event: EventCallback = ignore_events
) -> tuple[nn.Module, Checkpoint, torch.device]:
    """``load_detector`` of ``choice`` on its device; says which checkpoint ``runs/latest.json`` gave."""
    device = resolve_device(choice.device)
    model, checkpoint = load_detector(
        choice.weights,
        device,
        score_thresh=choice.score_thresh,
        svd_rank=choice.svd_rank,
        overrides=list(choice.overrides),
    )
    if choice.weights is None:
        on_event(Notice(f"{checkpoint.source} (the last `detkit train`, from runs/latest.json)", level="weights"))
    return model, checkpoint, device


def load_detector(
    weights: str | Path | None,
    device: torch.device,
    score_thresh: float | None = None,
    svd_rank: int | None = None,
    overrides: list[str] | None = None,
) -> tuple[nn.Module, Checkpoint]:
    """The model in a checkpoint (default: the latest ``detkit train``), in eval mode on ``device``.

    ``overrides`` (``key=value``) change the checkpoint's config before the model is built: test-time
    settings such as ``model.rcnn.box_regression=false`` or ``model.roi_heads.nms_thresh=0.6``;
    ``score_thresh`` is one of them, at the pipeline's own key (``PipelineSpec.score_thresh_key``).
    ``svd_rank`` (default: the checkpoint's ``model.roi_heads.svd_rank``) > 0 factorizes the box
    head's FC layers by truncated SVD (Fast R-CNN section 3.1): faster, slightly less accurate.
    """
    checkpoint = load_checkpoint(weights if weights is not None else latest_checkpoint())
    spec = pipeline(checkpoint.pipeline)
    assignments = [
        *(overrides or []),
        *([f"{spec.score_thresh_key}={score_thresh}"] if score_thresh is not None else []),
    ]
    if assignments:
        checkpoint = replace(checkpoint, config=apply_overrides(checkpoint.config, assignments))
    model = model_from_checkpoint(checkpoint)
    rank = checkpoint.config.model.roi_heads.svd_rank if svd_rank is None else svd_rank
    if rank > 0:
        if not spec.svd_box_head:
            raise ConfigError(
                f"--svd-rank {rank}: truncated SVD applies to the FC box head of "
                f"{', '.join(name for name, s in PIPELINES.items() if s.svd_box_head)} models"
            )
        cast(MLPBoxHead, model.get_submodule("roi_heads.box_head")).truncate(rank)
    return model.to(device).eval(), checkpoint


@torch.inference_mode()
def detect_images(
    model: nn.Module,
    paths: list[Path],
    device: torch.device,
    *,
    batch_size: int = 1,
    on_event: EventCallback = ignore_events,
) -> Iterator[ImageDetections]:
    """Yield each image's detections (original frame, on the CPU) as soon as its batch is done."""
    on_event(StageStarted("predict", total=len(paths)))
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        images = [read_image_rgb(p) for p in chunk]
        output = model([image_to_tensor(img).to(device) for img in images])
        for offset, (path, image, dets) in enumerate(zip(chunk, images, output.detections)):
            yield ImageDetections(path, start + offset + 1, image, dets.to("cpu"))
        on_event(StageAdvanced("predict", completed=start + len(chunk)))
    on_event(StageFinished("predict"))
