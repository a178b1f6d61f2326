"""The YOLO-style single-shot detector on the common trunk (YOLOX's head and assignment, Ge et al. 2021):
the builder, its recipes and its row facts (``SPEC``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from torch import nn

from detkit.config import (
    BackboneConfig,
    DataConfig,
    ExperimentConfig,
    LossWeights,
    ModelConfig,
    SolverConfig,
    YOLOConfig,
)
from detkit.config.overrides import check_config
from detkit.errors import ConfigError
from detkit.modeling.backbones import build_trunk
from detkit.modeling.scaling import scaled_channels, scaled_depth
from detkit.modeling.yolo import C2fPANNeck, DecoupledHead, LetterboxTransform, PANNeck, YOLODetector
from detkit.pipelines.box_heads import check_num_classes
from detkit.pipelines.faster_rcnn import faster_rcnn_synthetic
from detkit.pipelines.spec import PipelineSpec

# The head predicts at strides 8, 16 and 32: trunk stages 3, 4 and 5.
TRUNK_STAGES = (3, 4, 5)
CSP_DEPTH = 3  # bottlenecks per CSP / C2f block of the neck at depth_multiple 1.0 (YOLOX-l, YOLOv8-l)

# model.yolo.neck -> (trunk channels, output channels, blocks per fusion) -> neck
NECKS: dict[str, Callable[[list[int], list[int], int], nn.Module]] = {"csp_pan": PANNeck, "c2f_pan": C2fPANNeck}


def build_yolo(cfg: ModelConfig) -> YOLODetector:
    check_num_classes(cfg)
    yolo = cfg.yolo
    check_config(yolo, "model.yolo")  # a config built in code was never parsed: its sides must suit the strides
    trunk, taps = build_trunk(cfg.backbone, TRUNK_STAGES)
    neck_channels = [scaled_channels(c, yolo.width_multiple) for c in yolo.neck_channels]
    neck = NECKS[yolo.neck]([tap.channels for tap in taps], neck_channels, scaled_depth(CSP_DEPTH, yolo.depth_multiple))
    head = DecoupledHead(
        neck_channels, cfg.num_classes, scaled_channels(yolo.head_channels, yolo.width_multiple), yolo.head_convs
    )
    transform = LetterboxTransform(
        yolo.image_size,
        yolo.train_sizes,
        yolo.letterbox,
        cfg.transform.image_mean,
        cfg.transform.image_std,
        size_divisible=max(tap.stride for tap in taps),
    )
    return YOLODetector(transform, trunk, [tap.stride for tap in taps], neck, head, yolo)


def input_size(long_side: int) -> tuple[str, ...]:
    """The letterbox side: YOLO runs on squares of the longer side (a multiple of the coarsest stride)."""
    if long_side % 32:
        raise ConfigError(f"--image-size {long_side}: yolo needs a multiple of 32 (e.g. {32 * round(long_side / 32)})")
    return (f"model.yolo.image_size={long_side}", f"model.yolo.train_sizes=[{long_side}]")


# ---------------------------------------------------------------------------------------------
# Presets

# YOLOX weighs its IoU loss 5 times the objectness and class terms (Ge et al. 2021, section 2.1).
YOLO_LOSS_WEIGHTS = LossWeights(loss_box=5.0)


def yolo() -> ExperimentConfig:
    """A YOLOv8-n-sized detector from scratch at 640 px: the CSP trunk (``csp_n``), YOLOv8's C2f PAN neck
    (width 0.25, depth 0.33) and YOLOX's decoupled head, trained as ``yolo_mobilenet``."""
    return replace(
        yolo_mobilenet(),
        name="yolo",
        model=ModelConfig(
            pipeline="yolo",
            backbone=BackboneConfig(name="csp_n", fpn=False),
            yolo=YOLOConfig(
                image_size=640,
                train_sizes=(512, 576, 640, 704),
                neck="c2f_pan",
                width_multiple=0.25,
                depth_multiple=0.33,
            ),
        ),
    )


def yolo_mobilenet() -> ExperimentConfig:
    """A YOLOX-s-sized single-shot detector (width 0.5, depth 0.33) on ImageNet MobileNetV2 at 640 px:
    mosaic, flip and colour jitter, AdamW, EMA weights, mosaic off for the last 15% of epochs."""
    return ExperimentConfig(
        name="yolo_mobilenet",
        model=ModelConfig(
            pipeline="yolo",
            backbone=BackboneConfig(name="mobilenet_v2", pretrained=True, fpn=False),
            yolo=YOLOConfig(image_size=640, train_sizes=(512, 576, 640, 704)),
        ),
        data=DataConfig(batch_size=16, color_jitter=0.3, mosaic_prob=1.0, mosaic_off_epochs=15),
        solver=SolverConfig(
            optimizer="adamw",
            lr=1e-3,
            weight_decay=0.05,
            epochs=100,
            schedule="cosine",
            warmup_iters=500,
            ema_decay=0.9998,
            ema_ramp_steps=2000,
            loss_weights=YOLO_LOSS_WEIGHTS,
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


SPEC = PipelineSpec(
    name="yolo",
    build=build_yolo,
    proposals="dense",
    score_thresh_key="model.yolo.score_thresh",
    input_size=input_size,
    full_load=("model.yolo.score_thresh=0",),  # every candidate reaches NMS, as on a busy image
    presets=(yolo, yolo_mobilenet, yolo_synthetic),
    dense_network="trunk",
)
