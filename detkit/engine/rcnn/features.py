"""R-CNN's feature cache: the CNN features of every ground-truth box and proposal of a dataset, once.

Written as float16 shards of ``SHARD_IMAGES`` images (``shard-00000.pt`` ...) in a folder named by
the cache key, so an interrupted extraction resumes at its first missing shard and features of
another CNN, dataset or proposal setting are never read. Everything the SVM and regression stages
need per region is stored beside its feature: the fields of ``RegionSet``
(``detkit/pipelines/rcnn/features.py``, where each image's regions are computed).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from detkit.data.coco import CocoDetection
from detkit.io import atomic_write
from detkit.pipelines.rcnn.features import SHARD_IMAGES, RegionSet, image_regions
from detkit.pipelines.rcnn.model import RCNNDetector

__all__ = ["SHARD_IMAGES", "read_feature_shards", "shard_bytes", "write_feature_shards"]


def _no_progress(done: int) -> None:
    """The default ``on_progress``: nobody is told."""


@torch.no_grad()
def write_feature_shards(
    model: RCNNDetector,
    dataset: CocoDetection,
    folder: Path,
    on_progress: Callable[[int], None] = _no_progress,
    rank: int = 0,
    world_size: int = 1,
) -> None:
    """Compute and write the features of every region of ``dataset`` (non-crowd ground truths + the
    proposals its targets carry) in the missing shards that are this process's: shard ``s`` belongs to
    rank ``s % world_size``; existing shards are kept (an interrupted extraction resumes)."""
    model.eval()
    for shard_index, start in enumerate(range(0, len(dataset), SHARD_IMAGES)):
        stop = min(start + SHARD_IMAGES, len(dataset))
        shard = _shard_path(folder, shard_index)
        if shard_index % world_size == rank and not shard.is_file():
            merged = RegionSet.concat([_regions_of(model, dataset, index) for index in range(start, stop)])
            atomic_write(shard, partial(torch.save, dict(merged.__dict__)))
        on_progress(stop)


def read_feature_shards(folder: Path, num_images: int) -> RegionSet:
    """Every shard of a dataset of ``num_images`` images, concatenated in image order."""
    shards = [_shard_path(folder, index) for index in range(-(-num_images // SHARD_IMAGES))]
    missing = [shard.name for shard in shards if not shard.is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: feature shards {missing[:3]} missing; extract features first")
    return RegionSet.concat([RegionSet(**torch.load(shard, weights_only=True)) for shard in shards])


def shard_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.glob("shard-*.pt"))


def _shard_path(folder: Path, index: int) -> Path:
    return folder / f"shard-{index:05d}.pt"


def _regions_of(model: RCNNDetector, dataset: CocoDetection, index: int) -> RegionSet:
    image, target = dataset[index]
    target = target.without_crowd()
    if target.proposals is None:
        raise ValueError("write_feature_shards needs a dataset that attaches proposals (CocoDetection(proposals=...))")
    return image_regions(model, image, target.boxes, target.labels, target.proposals, index)
