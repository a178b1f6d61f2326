"""Fast R-CNN (Girshick, ICCV 2015): the two-stage detector fed with selective-search proposals.

One shared feature map (the trunk's stride-16 stage, as the paper's conv5; an FPN when
``model.backbone.fpn``), RoIPool 7x7, two FC layers, softmax over K+1 classes and class-specific
box deltas. Only the proposal source differs from Faster R-CNN.
"""

from __future__ import annotations

from detkit.config import ModelConfig
from detkit.modeling.backbones import build_backbone
from detkit.modeling.precomputed_proposals import PrecomputedProposals
from detkit.modeling.transform import ImageTransform
from detkit.modeling.two_stage import TwoStageDetector
from detkit.pipelines.box_heads import build_box_heads, check_num_classes


def build_fast_rcnn(cfg: ModelConfig) -> TwoStageDetector:
    check_num_classes(cfg)
    backbone = build_backbone(cfg.backbone)
    return TwoStageDetector(ImageTransform(cfg.transform), backbone, PrecomputedProposals(cfg.proposals), build_box_heads(cfg, backbone))
