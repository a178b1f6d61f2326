"""Fast R-CNN (Girshick, ICCV 2015): the two-stage detector fed with selective-search proposals.

One shared feature map (the trunk's stride-16 stage, as the paper's conv5; an FPN when
``model.backbone.fpn``), RoIPool 7x7, two FC layers, softmax over K+1 classes and class-specific
box deltas. Only the proposal source differs from Faster R-CNN.
"""

from __future__ import annotations

from dataclasses import replace

from detkit.config import BackboneConfig, ExperimentConfig, ModelConfig, RoIHeadsConfig, SolverConfig, TransformConfig
from detkit.modeling.backbones import build_backbone
from detkit.modeling.precomputed_proposals import PrecomputedProposals
from detkit.modeling.transform import ImageTransform
from detkit.modeling.two_stage import TwoStageDetector
from detkit.pipelines.box_heads import build_box_heads, check_num_classes
from detkit.pipelines.faster_rcnn import faster_rcnn_mobilenet, faster_rcnn_synthetic
from detkit.pipelines.spec import PipelineSpec, resize_to, selective_search_tally


def build_fast_rcnn(cfg: ModelConfig) -> TwoStageDetector:
    check_num_classes(cfg)
    backbone = build_backbone(cfg.backbone)
    return TwoStageDetector(
        ImageTransform(cfg.transform), backbone, PrecomputedProposals(cfg.proposals), build_box_heads(cfg, backbone)
    )


# ---------------------------------------------------------------------------------------------
# Presets


def fast_rcnn() -> ExperimentConfig:
    """Fast R-CNN as in the paper (section 2.3): ImageNet VGG16 conv5 (stride 16), RoIPool 7x7, fc 4096,
    2 images x 64 RoIs (25% foreground, background IoU in [0.1, 0.5)), 600 px, SGD 0.001, conv1-2 frozen."""
    return ExperimentConfig(
        name="fast_rcnn",
        model=ModelConfig(
            pipeline="fast_rcnn",
            backbone=BackboneConfig(name="vgg16", pretrained=True, fpn=False, trainable_stages=3),
            transform=TransformConfig(min_size=(600,), max_size=1000, size_divisible=16),
            roi_heads=_FAST_RCNN_HEADS,
        ),
        solver=SolverConfig(lr=0.001, weight_decay=5e-4, epochs=16, schedule="step", step_epochs=(12,)),
    )


# The paper's RoI sampling (section 2.3) and head; the synthetic preset keeps the sampling, shrinks the head.
_FAST_RCNN_HEADS = RoIHeadsConfig(
    pooler="roi_pool",
    representation_size=4096,
    batch_size_per_image=64,
    positive_fraction=0.25,
    bg_iou_thresh_lo=0.1,
)


def fast_rcnn_mobilenet() -> ExperimentConfig:
    """Fast R-CNN for real data on a CPU: ``faster_rcnn_mobilenet``'s ImageNet MobileNetV2-FPN trunk, sizes
    and AdamW recipe, fed selective search's regions; the paper's RoI sampling with a 512-wide head."""
    base = faster_rcnn_mobilenet()
    return replace(
        base,
        name="fast_rcnn_mobilenet",
        model=ModelConfig(
            pipeline="fast_rcnn",
            backbone=base.model.backbone,
            transform=base.model.transform,
            roi_heads=replace(_FAST_RCNN_HEADS, representation_size=512),
        ),
    )


def fast_rcnn_synthetic() -> ExperimentConfig:
    """Small Fast R-CNN trained from scratch on the synthetic shapes: ResNet-18 to its stride-16 stage."""
    base = faster_rcnn_synthetic()
    return replace(
        base,
        name="fast_rcnn_synthetic",
        model=ModelConfig(
            pipeline="fast_rcnn",
            backbone=BackboneConfig(name="resnet18", fpn=False, norm="bn"),
            # Shapes are 13-58 px: at stride 16 a 128 px image leaves them 1-4 cells wide, too coarse for
            # a 7x7 RoIPool; upsampling to ~224 px gives them 2-7 cells.
            transform=TransformConfig(min_size=(192, 224, 256), max_size=512),
            roi_heads=replace(_FAST_RCNN_HEADS, representation_size=512),
        ),
    )


SPEC = PipelineSpec(
    name="fast_rcnn",
    build=build_fast_rcnn,
    proposals="selective_search",
    score_thresh_key="model.roi_heads.score_thresh",
    input_size=resize_to,
    full_load=("model.roi_heads.score_thresh=0",),  # selective search's regions do not depend on the weights
    presets=(fast_rcnn, fast_rcnn_mobilenet, fast_rcnn_synthetic),
    svd_box_head=True,
    proposal_tally=selective_search_tally,
)
