"""Faster R-CNN (Ren et al., NeurIPS 2015): the two-stage detector with an RPN as proposal source.

The builder, the recipes (torchvision's R50-FPN reference, a CPU-friendly MobileNetV2-FPN, and a
small model for the synthetic shapes) and the pipeline's row facts (``SPEC``).
"""

from __future__ import annotations

from dataclasses import replace

from detkit.config import (
    AnchorConfig,
    BackboneConfig,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    ModelConfig,
    RoIHeadsConfig,
    RPNConfig,
    SolverConfig,
    TransformConfig,
)
from detkit.config.synthetic import synthetic_data
from detkit.errors import ConfigError
from detkit.modeling.anchors import AnchorGenerator
from detkit.modeling.backbones import Backbone, build_backbone
from detkit.modeling.rpn import RegionProposalNetwork, RPNHead
from detkit.modeling.transform import ImageTransform
from detkit.modeling.two_stage import TwoStageDetector
from detkit.pipelines.box_heads import build_box_heads, check_num_classes
from detkit.pipelines.spec import PipelineSpec, resize_to


def build_faster_rcnn(cfg: ModelConfig) -> TwoStageDetector:
    check_num_classes(cfg)
    backbone = build_backbone(cfg.backbone)
    return TwoStageDetector(
        ImageTransform(cfg.transform), backbone, build_rpn(cfg, backbone), build_box_heads(cfg, backbone)
    )


def build_rpn(cfg: ModelConfig, backbone: Backbone) -> RegionProposalNetwork:
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
    head = RPNHead(backbone.out_channels, num_anchors[0], cfg.rpn.head_convs)
    return RegionProposalNetwork(anchor_generator, head, cfg.rpn)


# ---------------------------------------------------------------------------------------------
# Presets


def faster_rcnn() -> ExperimentConfig:
    """Faster R-CNN R50-FPN as in torchvision's reference recipe (scaled to batch 2 per device)."""
    return ExperimentConfig(
        name="faster_rcnn",
        model=ModelConfig(
            pipeline="faster_rcnn",
            backbone=BackboneConfig(name="resnet50", pretrained=True, norm="frozen_bn", trainable_stages=3),
        ),
        solver=SolverConfig(lr=0.0025, epochs=12, schedule="step", step_epochs=(8, 11)),
    )


def faster_rcnn_mobilenet() -> ExperimentConfig:
    """A CPU-friendly Faster R-CNN: ImageNet MobileNetV2 + FPN at 512 px."""
    base = faster_rcnn()
    return replace(
        base,
        name="faster_rcnn_mobilenet",
        model=replace(
            base.model,
            # P3-P5 + pool: at 512 px the stride-4 level's 3x3 FPN/RPN convs would cost more than the trunk.
            backbone=BackboneConfig(
                name="mobilenet_v2",
                pretrained=True,
                norm="frozen_bn",
                fpn_channels=128,
                trainable_stages=4,
                returned_stages=(3, 4, 5),
            ),
            transform=TransformConfig(min_size=(384, 448, 512), max_size=683),
            anchors=AnchorConfig(
                sizes=((32, 45), (64, 90), (128, 181), (256, 362)), aspect_ratios=((0.5, 1.0, 2.0),) * 4
            ),
            rpn=RPNConfig(
                pre_nms_topk_train=1000, post_nms_topk_train=1000, pre_nms_topk_test=500, post_nms_topk_test=500
            ),
            # 64 RoIs per image, not 256: a photo holds a handful of objects, so 256 are mostly background
            # and the classifier learns "background" first. On 32 coco128 photos (train = val, 96 steps)
            # 64 gave AP50 0.103 against 0.032 with 256 (0.065 against 0.013 at lr 1e-4).
            roi_heads=RoIHeadsConfig(representation_size=512, batch_size_per_image=64),
        ),
        data=DataConfig(batch_size=4),
        # AdamW. SGD at 0.01 wrecks the pretrained depthwise trunk, and so does AdamW at 1e-3 on it (AP50
        # 0.001 in the run above): the trunk learns at 1e-4 (trunk_lr_factor), the layers built fresh on it at
        # 1e-3, which they need (Adam moves a weight about lr per step): 0.103 against 0.065 at 1e-4 everywhere.
        solver=SolverConfig(
            optimizer="adamw",
            lr=1e-3,
            trunk_lr_factor=0.1,
            weight_decay=1e-4,
            epochs=24,
            schedule="cosine",
            warmup_iters=100,
        ),
    )


def faster_rcnn_synthetic() -> ExperimentConfig:
    """Small Faster R-CNN trained from scratch on the 128 px synthetic shapes (the default ``detkit train``)."""
    return ExperimentConfig(
        name="faster_rcnn_synthetic",
        model=ModelConfig(
            pipeline="faster_rcnn",
            backbone=BackboneConfig(name="resnet18", fpn_channels=64, fpn_extra_pool=False, norm="bn"),
            transform=TransformConfig(min_size=(112, 128, 144), max_size=256),
            anchors=AnchorConfig(sizes=((16,), (32,), (64,), (128,)), aspect_ratios=((0.5, 1.0, 2.0),) * 4),
            rpn=RPNConfig(
                pre_nms_topk_train=600, post_nms_topk_train=300, pre_nms_topk_test=300, post_nms_topk_test=150
            ),
            # Objects are 13-58 px: a 56 px RoI pools from P4, a 14 px one from P2 (the anchors' scale too).
            roi_heads=RoIHeadsConfig(
                representation_size=256, batch_size_per_image=64, aligned=True, canonical_scale=56
            ),
        ),
        data=synthetic_data(batch_size=8),
        # AdamW learns ~2x faster than SGD(0.04) per step from scratch here (AP50 0.28 vs 0.155 after 250 steps).
        solver=SolverConfig(
            optimizer="adamw", lr=0.002, weight_decay=0.05, epochs=8, schedule="cosine", warmup_iters=100
        ),
        eval=EvalConfig(every_epochs=1),
    )


# An untrained RPN's proposals collapse under NMS and untrained scores fall below the threshold:
# these give the box head its 1000 RoIs and NMS its candidates, as a trained model on a busy image.
TWO_STAGE_FULL_LOAD = ("model.rpn.nms_thresh=1.0", "model.roi_heads.score_thresh=0")

SPEC = PipelineSpec(
    name="faster_rcnn",
    build=build_faster_rcnn,
    proposals="rpn",
    score_thresh_key="model.roi_heads.score_thresh",
    input_size=resize_to,
    full_load=TWO_STAGE_FULL_LOAD,
    presets=(faster_rcnn, faster_rcnn_mobilenet, faster_rcnn_synthetic),
    svd_box_head=True,
    torchvision={
        "resnet50_fpn": "fasterrcnn_resnet50_fpn",
        "mobilenet_v3_large_fpn": "fasterrcnn_mobilenet_v3_large_fpn",
        "resnet50_fpn_v2": "fasterrcnn_resnet50_fpn_v2",
    },
)
