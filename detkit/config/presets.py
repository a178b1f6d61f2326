"""Presets: plain functions returning an ``ExperimentConfig``. A variant derives from one base with ``replace``.

``<pipeline>`` is the paper-style configuration for real data (ImageNet backbone, 800 px images);
``<pipeline>_synthetic`` trains from scratch on the embedded synthetic dataset in minutes on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from detkit.config.schema import (
    AnchorConfig, BackboneConfig, DataConfig, EvalConfig, ExperimentConfig, LossWeights, MaskHeadConfig, ModelConfig, RCNNConfig,
    RoIHeadsConfig, RPNConfig,
    SolverConfig, TransformConfig, YOLOConfig,
)
from detkit.config.schema import PIPELINE_NAMES  # the CLI and the engine import it from here too
from detkit.errors import ConfigError

SYNTHETIC_ROOT = "datasets/synthetic"


def faster_rcnn() -> ExperimentConfig:
    """Faster R-CNN R50-FPN as in torchvision's reference recipe (scaled to batch 2 per device)."""
    return ExperimentConfig(
        name="faster_rcnn",
        model=ModelConfig(pipeline="faster_rcnn", backbone=BackboneConfig(name="resnet50", pretrained=True, norm="frozen_bn", trainable_stages=3)),
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
                name="mobilenet_v2", pretrained=True, norm="frozen_bn", fpn_channels=128, trainable_stages=4, returned_stages=(3, 4, 5)
            ),
            transform=TransformConfig(min_size=(384, 448, 512), max_size=683),
            anchors=AnchorConfig(sizes=((32, 45), (64, 90), (128, 181), (256, 362)), aspect_ratios=((0.5, 1.0, 2.0),) * 4),
            rpn=RPNConfig(pre_nms_topk_train=1000, post_nms_topk_train=1000, pre_nms_topk_test=500, post_nms_topk_test=500),
            roi_heads=RoIHeadsConfig(representation_size=512, batch_size_per_image=256),
        ),
        data=DataConfig(batch_size=4),
        # SGD at 0.01 wrecks the pretrained depthwise trunk (train AP50 0.035 after 80 steps on 8 coco128
        # images); AdamW at 1e-4 fits them (0.725).
        solver=SolverConfig(optimizer="adamw", lr=1e-4, weight_decay=1e-4, epochs=24, schedule="cosine", warmup_iters=100),
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
            rpn=RPNConfig(pre_nms_topk_train=600, post_nms_topk_train=300, pre_nms_topk_test=300, post_nms_topk_test=150),
            # Objects are 13-58 px: a 56 px RoI pools from P4, a 14 px one from P2 (the anchors' scale too).
            roi_heads=RoIHeadsConfig(representation_size=256, batch_size_per_image=64, aligned=True, canonical_scale=56),
        ),
        data=DataConfig(
            train_annotations=f"{SYNTHETIC_ROOT}/annotations/instances_train.json", train_images=f"{SYNTHETIC_ROOT}/train",
            val_annotations=f"{SYNTHETIC_ROOT}/annotations/instances_val.json", val_images=f"{SYNTHETIC_ROOT}/val",
            batch_size=8,
        ),
        # AdamW learns ~2x faster than SGD(0.04) per step from scratch here (AP50 0.28 vs 0.155 after 250 steps).
        solver=SolverConfig(optimizer="adamw", lr=0.002, weight_decay=0.05, epochs=8, schedule="cosine", warmup_iters=100),
        eval=EvalConfig(every_epochs=1),
    )


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
    pooler="roi_pool", representation_size=4096, batch_size_per_image=64, positive_fraction=0.25, bg_iou_thresh_lo=0.1,
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


def rcnn() -> ExperimentConfig:
    """R-CNN as in the paper: ImageNet CNN on 227 px warped regions with 16 px context, fine-tuned
    (SGD 0.001), SVMs with hard negatives, ridge box regression, NMS 0.3. VGG16 stands in for AlexNet."""
    return ExperimentConfig(
        name="rcnn",
        model=ModelConfig(
            pipeline="rcnn",
            backbone=BackboneConfig(name="vgg16", pretrained=True, fpn=False, returned_stages=(5,), trainable_stages=3),
            rcnn=RCNNConfig(finetune_iters=20000),
        ),
        data=DataConfig(batch_size=2),
        solver=SolverConfig(lr=0.001, weight_decay=5e-4, warmup_iters=0, schedule="step", step_epochs=(1,)),
    )


def rcnn_synthetic() -> ExperimentConfig:
    """Small R-CNN on the synthetic shapes: ResNet-18 from scratch on 64 px regions, fine-tuned first
    (without ImageNet weights the CNN's features mean nothing until it is)."""
    base = faster_rcnn_synthetic()
    return replace(
        base,
        name="rcnn_synthetic",
        model=ModelConfig(
            pipeline="rcnn",
            backbone=BackboneConfig(name="resnet18", fpn=False, returned_stages=(5,), norm="bn"),
            # 5 px of context in a 64 px crop is the paper's proportion (16 in 227).
            rcnn=RCNNConfig(crop_size=64, context_padding=5, finetune_iters=600, feature_batch_size=256),
        ),
        data=replace(base.data, batch_size=4),
        solver=SolverConfig(optimizer="adamw", lr=0.002, weight_decay=0.05, warmup_iters=50, schedule="cosine"),
    )


def mask_rcnn() -> ExperimentConfig:
    """Mask R-CNN R50-FPN (torchvision's recipe): RoIAlign 7x7 boxes, 14x14 -> 28x28 masks."""
    base = faster_rcnn()
    return replace(
        base, name="mask_rcnn",
        model=replace(base.model, pipeline="mask_rcnn", roi_heads=replace(base.model.roi_heads, aligned=True)),
    )


def mask_rcnn_synthetic() -> ExperimentConfig:
    """The synthetic Faster R-CNN with a (narrower, 64-channel) mask branch: trains on the shapes' masks."""
    base = faster_rcnn_synthetic()
    return replace(
        base, name="mask_rcnn_synthetic",
        model=replace(base.model, pipeline="mask_rcnn", mask=MaskHeadConfig(conv_channels=64)),
    )


# YOLOX weighs its IoU loss 5 times the objectness and class terms (Ge et al. 2021, section 2.1).
YOLO_LOSS_WEIGHTS = LossWeights(loss_box=5.0)


def yolo() -> ExperimentConfig:
    """A YOLOX-s-sized single-shot detector (width 0.5, depth 0.33) on ImageNet MobileNetV2 at 640 px:
    mosaic, flip and colour jitter, AdamW, EMA weights, mosaic off for the last 15% of epochs."""
    return ExperimentConfig(
        name="yolo",
        model=ModelConfig(
            pipeline="yolo",
            backbone=BackboneConfig(name="mobilenet_v2", pretrained=True, fpn=False),
            yolo=YOLOConfig(image_size=640, train_sizes=(512, 576, 640, 704)),
        ),
        data=DataConfig(batch_size=16, color_jitter=0.3, mosaic_prob=1.0, mosaic_off_epochs=15),
        solver=SolverConfig(
            optimizer="adamw", lr=1e-3, weight_decay=0.05, epochs=100, schedule="cosine", warmup_iters=500,
            ema_decay=0.9998, ema_ramp_steps=2000, loss_weights=YOLO_LOSS_WEIGHTS,
        ),
    )


def yolo_synthetic() -> ExperimentConfig:
    """A narrow YOLO (width 0.25) on ResNet-18 from scratch at 160 px: the synthetic Faster R-CNN's trunk."""
    base = faster_rcnn_synthetic()
    return replace(
        base,
        name="yolo_synthetic",
        model=ModelConfig(
            pipeline="yolo",
            backbone=BackboneConfig(name="resnet18", fpn=False, norm="bn"),
            yolo=YOLOConfig(image_size=160, train_sizes=(128, 160, 192), width_multiple=0.25),
        ),
        data=replace(base.data, batch_size=16, color_jitter=0.3, mosaic_prob=0.5, mosaic_off_epochs=2),
        # A run of ~1000 steps: the EMA must average over tens of steps, not YOLOX's thousands.
        solver=replace(base.solver, epochs=16, ema_decay=0.999, ema_ramp_steps=200, loss_weights=YOLO_LOSS_WEIGHTS),
    )


PRESETS: dict[str, Callable[[], ExperimentConfig]] = {
    "mask_rcnn": mask_rcnn,
    "mask_rcnn_synthetic": mask_rcnn_synthetic,
    "rcnn": rcnn,
    "rcnn_synthetic": rcnn_synthetic,
    "fast_rcnn": fast_rcnn,
    "fast_rcnn_synthetic": fast_rcnn_synthetic,
    "faster_rcnn": faster_rcnn,
    "faster_rcnn_mobilenet": faster_rcnn_mobilenet,
    "faster_rcnn_synthetic": faster_rcnn_synthetic,
    "yolo": yolo,
    "yolo_synthetic": yolo_synthetic,
}


def preset(name: str) -> ExperimentConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()


def default_preset(pipeline: str, synthetic: bool) -> str:
    """The preset ``detkit train --pipeline P`` starts from."""
    if pipeline not in PIPELINE_NAMES:
        raise ConfigError(f"unknown pipeline {pipeline!r}; choose one of {', '.join(PIPELINE_NAMES)}")
    name = f"{pipeline}_synthetic" if synthetic else pipeline
    if name not in PRESETS:
        available = sorted({name.removesuffix("_synthetic") for name in PRESETS if not name.endswith("_mobilenet")})
        raise ConfigError(f"pipeline {pipeline!r} is not implemented yet in this detkit; available: {', '.join(available)}")
    return name
