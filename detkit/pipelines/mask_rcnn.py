"""Mask R-CNN (He et al., ICCV 2017): Faster R-CNN with a mask branch passed to its RoI heads."""

from __future__ import annotations

from detkit.config import ModelConfig
from detkit.modeling.backbones import build_backbone
from detkit.modeling.transform import ImageTransform
from detkit.modeling.two_stage import TwoStageDetector
from detkit.pipelines.box_heads import build_box_heads, build_mask_branch, check_num_classes
from detkit.pipelines.faster_rcnn import build_rpn


def build_mask_rcnn(cfg: ModelConfig) -> TwoStageDetector:
    check_num_classes(cfg)
    backbone = build_backbone(cfg.backbone)
    heads = build_box_heads(cfg, backbone, build_mask_branch(cfg, backbone))
    return TwoStageDetector(ImageTransform(cfg.transform), backbone, build_rpn(cfg, backbone), heads)
