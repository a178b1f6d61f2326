"""Pretrained detectors by name: torchvision's COCO detectors that map onto a detkit pipeline.

``resolve_weights("fasterrcnn_resnet50_fpn_v2")`` is the local copy of torchvision's published file
(downloaded once into torchvision's cache by ``detkit.download``: hash-checked, atomic, offline-aware);
any other string is a path and is returned as one. ``detkit.checkpoint.load_checkpoint`` resolves
every name it is given this way, so a name works wherever a checkpoint does: ``detect``, ``eval``,
``benchmark --weights``, ``train --weights`` (fine-tuning) and ``detkit.load``.

Each entry's facts (COCO val2017 box/mask AP, GFLOPs, parameters, file size) are torchvision's weight
metadata, as torchvision states them; detkit did not measure them. Reading an enum's metadata or URL
never downloads.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from detkit.download import cached_path, fetch_weights

if TYPE_CHECKING:
    from torchvision.models import WeightsEnum


@dataclass(frozen=True)
class PretrainedModel:
    """One downloadable detector: where its file is and what torchvision's metadata says of it."""

    name: str  # the name users type: torchvision's builder name
    pipeline: str  # the detkit pipeline it loads as
    backbone: str  # trunk and neck, e.g. "resnet50_fpn"
    url: str  # the published file; its name carries the SHA-256 prefix the download is checked against
    box_ap: float | None  # COCO val2017 box AP (0-100), torchvision's figure
    mask_ap: float | None  # COCO val2017 mask AP, for Mask R-CNN
    gflops: float | None  # per image at the model's test size, torchvision's figure
    params: int | None
    file_mib: float | None  # torchvision's "_file_size" (MB as it reports it)

    @property
    def file_name(self) -> str:
        return Path(self.url).name

    @property
    def cached(self) -> bool:
        """Whether the file is already in torchvision's cache on this machine (no download needed)."""
        return cached_path(self.url).is_file()


# name -> (pipeline, backbone, the torchvision weights enum member that describes it)
_TORCHVISION_DETECTORS = {
    "fasterrcnn_resnet50_fpn": ("faster_rcnn", "resnet50_fpn", "FasterRCNN_ResNet50_FPN_Weights"),
    "fasterrcnn_resnet50_fpn_v2": ("faster_rcnn", "resnet50_fpn_v2", "FasterRCNN_ResNet50_FPN_V2_Weights"),
    "fasterrcnn_mobilenet_v3_large_fpn": (
        "faster_rcnn",
        "mobilenet_v3_large_fpn",
        "FasterRCNN_MobileNet_V3_Large_FPN_Weights",
    ),
    "fasterrcnn_mobilenet_v3_large_320_fpn": (
        "faster_rcnn",
        "mobilenet_v3_large_320_fpn",
        "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights",
    ),
    "maskrcnn_resnet50_fpn": ("mask_rcnn", "resnet50_fpn", "MaskRCNN_ResNet50_FPN_Weights"),
    "maskrcnn_resnet50_fpn_v2": ("mask_rcnn", "resnet50_fpn_v2", "MaskRCNN_ResNet50_FPN_V2_Weights"),
}


@functools.cache
def pretrained_models() -> dict[str, PretrainedModel]:
    """Every name detkit can download, in the order ``detkit models`` lists them."""
    import torchvision.models.detection as detection

    models = {}
    for name, (pipeline, backbone, enum_name) in _TORCHVISION_DETECTORS.items():
        weights: WeightsEnum = getattr(detection, enum_name).COCO_V1
        models[name] = _from_torchvision(name, pipeline, backbone, weights)
    return models


def _from_torchvision(name: str, pipeline: str, backbone: str, weights: WeightsEnum) -> PretrainedModel:
    meta = weights.meta
    coco = meta.get("_metrics", {}).get("COCO-val2017", {})
    return PretrainedModel(
        name=name,
        pipeline=pipeline,
        backbone=backbone,
        url=weights.url,
        box_ap=coco.get("box_map"),
        mask_ap=coco.get("mask_map"),
        gflops=meta.get("_ops"),
        params=meta.get("num_params"),
        file_mib=meta.get("_file_size"),
    )


def resolve_weights(weights: str | Path) -> Path:
    """A path for ``weights``: an existing file as it is; a pretrained name's local copy (torchvision's
    cache, else ``weights/`` in the current folder, else a download into the cache); anything else
    unchanged (the checkpoint reader then says it was not found)."""
    path = Path(weights)
    if path.exists() or str(weights) not in pretrained_models():
        return path
    model = pretrained_models()[str(weights)]
    beside = Path.cwd() / "weights" / model.file_name  # a copy placed by hand, as for ImageNet trunks
    if beside.is_file() and not model.cached:
        return beside
    return fetch_weights(model.url, what=f"torchvision's COCO weights for {model.name}")


def looks_like_a_name(weights: str | Path) -> bool:
    """No folder and no suffix: what a user types for a model name, not a file."""
    text = str(weights)
    return "/" not in text and "\\" not in text and not Path(text).suffix
