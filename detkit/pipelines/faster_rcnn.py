"""Faster R-CNN (Ren et al., NeurIPS 2015): the two-stage detector with an RPN as proposal source."""

from __future__ import annotations

from detkit.config import ModelConfig
from detkit.errors import ConfigError
from detkit.modeling.anchors import AnchorGenerator
from detkit.modeling.backbones import build_backbone
from detkit.modeling.box_head import BoxPredictor, MLPBoxHead
from detkit.modeling.poolers import RoIPooler
from detkit.modeling.roi_heads import RoIHeads
from detkit.modeling.rpn import RegionProposalNetwork, RPNHead
from detkit.modeling.transform import ImageTransform
from detkit.modeling.two_stage import TwoStageDetector


def build_faster_rcnn(cfg: ModelConfig) -> TwoStageDetector:
    if cfg.num_classes <= 0:
        raise ConfigError("model.num_classes must be positive; it is normally taken from the training data")
    backbone = build_backbone(cfg.backbone)
    anchor_generator = AnchorGenerator(cfg.anchors.sizes, cfg.anchors.aspect_ratios)
    if len(cfg.anchors.sizes) != len(backbone.feature_names):
        raise ConfigError(
            f"model.anchors.sizes has {len(cfg.anchors.sizes)} levels but the backbone gives "
            f"{len(backbone.feature_names)} feature maps {backbone.feature_names}; give one tuple of sizes per level"
        )
    num_anchors = anchor_generator.num_anchors_per_location
    if len(set(num_anchors)) != 1:
        raise ConfigError(f"every level needs the same number of anchors per location, got {num_anchors}")
    rpn = RegionProposalNetwork(anchor_generator, RPNHead(backbone.out_channels, num_anchors[0]), cfg.rpn)
    return TwoStageDetector(ImageTransform(cfg.transform), backbone, rpn, build_box_heads(cfg, backbone))


def build_box_heads(cfg: ModelConfig, backbone) -> RoIHeads:
    """RoI pooler + two-FC box head + predictor over the backbone's pooled levels."""
    heads = cfg.roi_heads
    pooled_strides = [s for n, s in zip(backbone.feature_names, backbone.strides) if n in backbone.pooled_feature_names]
    pooler = RoIPooler(
        heads.pooler, heads.pooler_resolution, pooled_strides, heads.sampling_ratio, heads.aligned, heads.canonical_scale
    )
    box_head = MLPBoxHead(backbone.out_channels * heads.pooler_resolution**2, heads.representation_size)
    return RoIHeads(pooler, box_head, BoxPredictor(heads.representation_size, cfg.num_classes), heads)
