"""The YOLO-style single-shot detector on the common trunk (YOLOX's head and assignment, Ge et al. 2021)."""

from __future__ import annotations

from detkit.config import ModelConfig
from detkit.errors import ConfigError
from detkit.modeling.backbones import build_trunk
from detkit.modeling.yolo import DecoupledHead, LetterboxTransform, PANNeck, YOLODetector
from detkit.modeling.yolo.blocks import scaled_channels, scaled_depth
from detkit.pipelines.box_heads import check_num_classes

# The head predicts at strides 8, 16 and 32: trunk stages 3, 4 and 5.
TRUNK_STAGES = (3, 4, 5)
CSP_DEPTH = 3  # bottlenecks per CSP block at depth_multiple 1.0 (YOLOX-l)


def build_yolo(cfg: ModelConfig) -> YOLODetector:
    check_num_classes(cfg)
    yolo = cfg.yolo
    _check(cfg)
    trunk, taps = build_trunk(cfg.backbone, TRUNK_STAGES)
    neck_channels = [scaled_channels(c, yolo.width_multiple) for c in yolo.neck_channels]
    neck = PANNeck([tap.channels for tap in taps], neck_channels, scaled_depth(CSP_DEPTH, yolo.depth_multiple))
    head = DecoupledHead(neck_channels, cfg.num_classes, scaled_channels(yolo.head_channels, yolo.width_multiple), yolo.head_convs)
    transform = LetterboxTransform(
        yolo.image_size, yolo.train_sizes, yolo.letterbox, cfg.transform.image_mean, cfg.transform.image_std,
        size_divisible=max(tap.stride for tap in taps),
    )
    return YOLODetector(transform, trunk, [tap.stride for tap in taps], neck, head, yolo)


def _check(cfg: ModelConfig) -> None:
    yolo = cfg.yolo
    for name, side in [("image_size", yolo.image_size), *((f"train_sizes[{i}]", s) for i, s in enumerate(yolo.train_sizes))]:
        if side < 32 or side % 32:
            raise ConfigError(f"model.yolo.{name}={side} must be a positive multiple of 32 (the coarsest stride)")
    if yolo.width_multiple <= 0 or yolo.depth_multiple <= 0:
        raise ConfigError("model.yolo.width_multiple and depth_multiple must be positive (YOLOX-s is 0.5 and 0.33)")
