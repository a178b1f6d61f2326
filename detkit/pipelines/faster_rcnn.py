"""Faster R-CNN (Ren et al., NeurIPS 2015): the two-stage detector with an RPN as proposal source."""

from __future__ import annotations

from detkit.config import ModelConfig
from detkit.errors import ConfigError
from detkit.modeling.anchors import AnchorGenerator
from detkit.modeling.backbones import build_backbone
from detkit.modeling.rpn import RegionProposalNetwork, RPNHead
from detkit.modeling.transform import ImageTransform
from detkit.modeling.two_stage import TwoStageDetector
from detkit.pipelines.box_heads import build_box_heads, check_num_classes


def build_faster_rcnn(cfg: ModelConfig) -> TwoStageDetector:
    check_num_classes(cfg)
    backbone = build_backbone(cfg.backbone)
    return TwoStageDetector(ImageTransform(cfg.transform), backbone, build_rpn(cfg, backbone), build_box_heads(cfg, backbone))


def build_rpn(cfg: ModelConfig, backbone) -> RegionProposalNetwork:
    """The RPN over every level the backbone returns, one tuple of anchor sizes per level."""
    anchor_generator = AnchorGenerator(cfg.anchors.sizes, cfg.anchors.aspect_ratios)
    if len(cfg.anchors.sizes) != len(backbone.feature_names):
        raise ConfigError(
            f"model.anchors.sizes has {len(cfg.anchors.sizes)} levels but the backbone gives "
            f"{len(backbone.feature_names)} feature maps {backbone.feature_names}; give one tuple of sizes per level"
        )
    num_anchors = anchor_generator.num_anchors_per_location
    if len(set(num_anchors)) != 1:
        raise ConfigError(f"every level needs the same number of anchors per location, got {num_anchors}")
    return RegionProposalNetwork(anchor_generator, RPNHead(backbone.out_channels, num_anchors[0]), cfg.rpn)
