"""Mask R-CNN (He et al., ICCV 2017): Faster R-CNN with a mask branch passed to its RoI heads."""

from __future__ import annotations

from dataclasses import replace

from detkit.config import ExperimentConfig, MaskHeadConfig, ModelConfig
from detkit.modeling.backbones import build_backbone
from detkit.modeling.transform import ImageTransform
from detkit.modeling.two_stage import TwoStageDetector
from detkit.pipelines.box_heads import build_box_heads, build_mask_branch, check_num_classes
from detkit.pipelines.faster_rcnn import (
    TWO_STAGE_FULL_LOAD,
    build_rpn,
    faster_rcnn,
    faster_rcnn_mobilenet,
    faster_rcnn_synthetic,
)
from detkit.pipelines.spec import PipelineSpec, resize_to


def build_mask_rcnn(cfg: ModelConfig) -> TwoStageDetector:
    check_num_classes(cfg)
    backbone = build_backbone(cfg.backbone)
    heads = build_box_heads(cfg, backbone, build_mask_branch(cfg, backbone))
    return TwoStageDetector(ImageTransform(cfg.transform), backbone, build_rpn(cfg, backbone), heads)


# ---------------------------------------------------------------------------------------------
# Presets


def mask_rcnn() -> ExperimentConfig:
    """Mask R-CNN R50-FPN (torchvision's recipe): RoIAlign 7x7 boxes, 14x14 -> 28x28 masks."""
    base = faster_rcnn()
    return replace(
        base,
        name="mask_rcnn",
        model=replace(base.model, pipeline="mask_rcnn", roi_heads=replace(base.model.roi_heads, aligned=True)),
    )


def mask_rcnn_mobilenet() -> ExperimentConfig:
    """Mask R-CNN for real data on a CPU: ``faster_rcnn_mobilenet`` (ImageNet MobileNetV2-FPN, 512 px,
    AdamW) with aligned RoIAlign and a 128-channel mask branch (14x14 -> 28x28 masks)."""
    base = faster_rcnn_mobilenet()
    return replace(
        base,
        name="mask_rcnn_mobilenet",
        model=replace(
            base.model,
            pipeline="mask_rcnn",
            roi_heads=replace(base.model.roi_heads, aligned=True),
            # 256 channels at 14x14 would cost more per RoI than the box head; the FPN carries 128.
            mask=MaskHeadConfig(conv_channels=128),
        ),
    )


def mask_rcnn_synthetic() -> ExperimentConfig:
    """The synthetic Faster R-CNN with a (narrower, 64-channel) mask branch: trains on the shapes' masks."""
    base = faster_rcnn_synthetic()
    return replace(
        base,
        name="mask_rcnn_synthetic",
        model=replace(base.model, pipeline="mask_rcnn", mask=MaskHeadConfig(conv_channels=64)),
    )


SPEC = PipelineSpec(
    name="mask_rcnn",
    build=build_mask_rcnn,
    proposals="rpn",
    score_thresh_key="model.roi_heads.score_thresh",
    input_size=resize_to,
    full_load=TWO_STAGE_FULL_LOAD,
    presets=(mask_rcnn, mask_rcnn_mobilenet, mask_rcnn_synthetic),
    masks=True,
    svd_box_head=True,
    torchvision={"resnet50_fpn": "maskrcnn_resnet50_fpn", "resnet50_fpn_v2": "maskrcnn_resnet50_fpn_v2"},
)
