"""Tiny detectors with random weights, saved as checkpoints: what the export tests export.

Random heads score every box alike (an untrained classifier's softmax is uniform), which would make
matching eager and exported detections trivial; the classifiers here get large random weights, so
scores spread over (0, 1) and the order of detections means something.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from detkit.checkpoint import Checkpoint, save_checkpoint
from detkit.config import (
    AnchorConfig,
    BackboneConfig,
    ExperimentConfig,
    MaskHeadConfig,
    ModelConfig,
    ProposalConfig,
    RoIHeadsConfig,
    RPNConfig,
    TransformConfig,
    YOLOConfig,
)
from detkit.data.synthetic import CATEGORY_IDS as SYNTHETIC_IDS
from detkit.data.synthetic import CLASS_NAMES as SYNTHETIC_CLASSES
from detkit.pipelines import PIPELINES

# The synthetic dataset's classes, so that `detkit eval` can score the test models on it.
CLASS_NAMES = list(SYNTHETIC_CLASSES)
CATEGORY_IDS = list(SYNTHETIC_IDS)

# Two pyramid levels, narrow heads: small graphs, which export in seconds.
TWO_STAGE = ModelConfig(
    pipeline="faster_rcnn",
    num_classes=len(SYNTHETIC_CLASSES),
    backbone=BackboneConfig(name="resnet18", fpn_channels=16, fpn_extra_pool=False, returned_stages=(3, 4)),
    transform=TransformConfig(min_size=(64,), max_size=96),
    anchors=AnchorConfig(sizes=((16,), (32,)), aspect_ratios=((0.5, 1.0, 2.0),) * 2),
    rpn=RPNConfig(pre_nms_topk_test=100, post_nms_topk_test=50),
    roi_heads=RoIHeadsConfig(representation_size=32, detections_per_image=50),
)
CONFIGS = {
    "faster_rcnn": TWO_STAGE,
    "mask_rcnn": replace(TWO_STAGE, pipeline="mask_rcnn", mask=MaskHeadConfig(conv_channels=8, num_convs=1)),
    "fast_rcnn": replace(
        TWO_STAGE,
        pipeline="fast_rcnn",
        backbone=BackboneConfig(name="resnet18", fpn=False, returned_stages=(4,)),
        roi_heads=replace(TWO_STAGE.roi_heads, pooler="roi_pool"),
        proposals=ProposalConfig(topk=50),
    ),
    "yolo": ModelConfig(
        pipeline="yolo",
        num_classes=len(SYNTHETIC_CLASSES),
        backbone=BackboneConfig(name="resnet18", fpn=False),
        yolo=YOLOConfig(image_size=64, train_sizes=(64,), width_multiple=0.125, head_convs=1, detections_per_image=50),
    ),
}


def spread_scores(model: nn.Module) -> None:
    """He-initialised weights everywhere (PyTorch's default shrinks activations layer by layer, so a deep
    random net sends near-constant features to its heads) and no prior bias: scores differ between boxes."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                fan_in = (
                    module.weight[0].numel() if not isinstance(module, nn.ConvTranspose2d) else module.weight.shape[0]
                )
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.zero_()
        # Classifier logits of a few units, not tens: no score saturates at exactly 1.0 (ties).
        for name, parameter in model.named_parameters():
            if any(part in name for part in ("cls_score", "cls_preds", "obj_preds", "cls_logits", "bbox_pred")):
                parameter.mul_(0.2)


def save_tiny_checkpoint(path: Path, pipeline: str, **settings: object) -> Path:
    """A checkpoint of a random ``pipeline`` model (``settings`` replace fields of its ``ModelConfig``)."""
    model_cfg = replace(CONFIGS[pipeline], **settings)  # type: ignore[arg-type]
    torch.manual_seed(0)
    model = PIPELINES[pipeline].build(model_cfg)
    spread_scores(model)
    config = ExperimentConfig(name=pipeline, model=model_cfg)
    save_checkpoint(path, Checkpoint(config, model.state_dict(), list(CLASS_NAMES), list(CATEGORY_IDS)))
    return path
