"""Detection on image files: find them, run a trained detector in batches, return per-image results."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from detkit.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint
from detkit.data.images import image_to_tensor, read_image_rgb
from detkit.engine.events import EventCallback, StageAdvanced, StageFinished, StageStarted, ignore_events
from detkit.engine.runs import latest_checkpoint
from detkit.config import RCNNConfig
from detkit.config.overrides import apply_overrides
from detkit.errors import ConfigError, DataError
from detkit.structures import Detections

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class ImageDetections:
    path: Path
    image_id: int  # 1-based position in the input list: the id written to the results json
    image: np.ndarray  # uint8 [H, W, 3] RGB as read
    detections: Detections


def find_images(inputs: list[str]) -> list[Path]:
    """Files, folders (their images, sorted) and glob patterns -> image paths, in order, without repeats."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file() or os.path.lexists(path):  # not a regular file: read_image_rgb says what it is
            found.append(path)
        elif any(ch in item for ch in "*?["):
            found.extend(sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).suffix.lower() in IMAGE_SUFFIXES))
        else:
            raise DataError(f"{item}: no such file or folder; pass image files, folders or quoted glob patterns")
    # realpath, not Path.resolve: it raises on a symlink loop (Python < 3.13); the loop is then a file
    # that cannot be read, named by read_image_rgb like any other.
    unique = list(dict.fromkeys(Path(os.path.realpath(p)) for p in found))
    if not unique:
        raise DataError(f"{' '.join(inputs)}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return unique


def load_detector(
    weights: str | Path | None, device: torch.device, score_thresh: float | None = None, svd_rank: int | None = None,
    overrides: list[str] | None = None,
) -> tuple[nn.Module, Checkpoint]:
    """The model in a checkpoint (default: the latest ``detkit train``), in eval mode on ``device``.

    ``overrides`` (``key=value``) change the checkpoint's config before the model is built: test-time
    settings such as ``model.rcnn.box_regression=false`` or ``model.roi_heads.nms_thresh=0.6``.
    ``svd_rank`` (default: the checkpoint's ``model.roi_heads.svd_rank``) > 0 factorizes the box
    head's FC layers by truncated SVD (Fast R-CNN section 3.1): faster, slightly less accurate.
    """
    checkpoint = load_checkpoint(weights if weights is not None else latest_checkpoint())
    if overrides:
        checkpoint = replace(checkpoint, config=apply_overrides(checkpoint.config, overrides))
    model = model_from_checkpoint(checkpoint)
    if score_thresh is not None:
        set_score_thresh(model, score_thresh)
    rank = checkpoint.config.model.roi_heads.svd_rank if svd_rank is None else svd_rank
    if rank > 0:
        truncate_box_head(model, rank)
    return model.to(device).eval(), checkpoint


def truncate_box_head(model: nn.Module, rank: int) -> None:
    heads = getattr(model, "roi_heads", None)
    if heads is None or not hasattr(heads.box_head, "truncate"):
        raise ConfigError(f"--svd-rank {rank}: truncated SVD applies to the FC box head of fast_rcnn, faster_rcnn and mask_rcnn models")
    heads.box_head.truncate(rank)


def set_score_thresh(model: nn.Module, score_thresh: float) -> None:
    """Lower or raise the final score threshold of a loaded detector."""
    heads = getattr(model, "roi_heads", None)
    if hasattr(model, "set_score_thresh"):
        model.set_score_thresh(score_thresh)
    elif heads is not None:
        heads.cfg = replace(heads.cfg, score_thresh=score_thresh)
    elif isinstance(getattr(model, "cfg", None), RCNNConfig):
        model.cfg = replace(model.cfg, score_thresh=score_thresh)


@torch.inference_mode()
def detect_images(
    model: nn.Module, paths: list[Path], device: torch.device, *, batch_size: int = 1,
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
