"""The box-head stage every two-stage pipeline shares: RoI pooler, box head (two FCs or convs + FC), predictor."""

from __future__ import annotations

from detkit.config import ModelConfig
from detkit.errors import ConfigError
from detkit.modeling.backbones import Backbone
from detkit.modeling.box_head import BoxPredictor, MLPBoxHead
from detkit.modeling.conv_box_head import ConvFCBoxHead
from detkit.modeling.mask_head import MaskBranch, MaskHead
from detkit.modeling.poolers import RoIPooler
from detkit.modeling.roi_heads import BoxHead, RoIHeads


def check_num_classes(cfg: ModelConfig) -> None:
    if cfg.num_classes <= 0:
        raise ConfigError("model.num_classes must be positive; it is normally taken from the training data")


def build_box_heads(cfg: ModelConfig, backbone: Backbone, mask_branch: MaskBranch | None = None) -> RoIHeads:
    """RoI pooler + box head + predictor over the backbone's pooled levels (+ a mask branch)."""
    heads = cfg.roi_heads
    pooler = _pooler(cfg, backbone, heads.pooler_resolution)
    predictor = BoxPredictor(heads.representation_size, cfg.num_classes)
    return RoIHeads(pooler, _box_head(cfg, backbone), predictor, heads, mask_branch)


def _box_head(cfg: ModelConfig, backbone: Backbone) -> BoxHead:
    """Fast R-CNN's two FC layers, or ``box_head_convs`` convs and one FC layer."""
    heads = cfg.roi_heads
    if heads.box_head_convs == 0:
        if heads.box_head_norm != "none":
            raise ConfigError(
                f"model.roi_heads.box_head_norm={heads.box_head_norm} normalizes the box head's convs, and "
                "model.roi_heads.box_head_convs=0 gives it none; set box_head_convs > 0 or box_head_norm=none"
            )
        return MLPBoxHead(backbone.out_channels * heads.pooler_resolution**2, heads.representation_size)
    return ConvFCBoxHead(
        backbone.out_channels,
        heads.pooler_resolution,
        heads.box_head_convs,
        heads.box_head_conv_channels,
        heads.representation_size,
        heads.box_head_norm,
    )


def build_mask_branch(cfg: ModelConfig, backbone: Backbone) -> MaskBranch:
    """Mask R-CNN's branch: the same kind of pooler as the box head (RoIAlign or RoIPool) at the mask resolution."""
    mask = cfg.mask
    head = MaskHead(backbone.out_channels, mask.conv_channels, mask.num_convs, mask.norm)
    return MaskBranch(_pooler(cfg, backbone, mask.pooler_resolution), head, cfg.num_classes, mask.conv_channels)


def _pooler(cfg: ModelConfig, backbone: Backbone, resolution: int) -> RoIPooler:
    heads = cfg.roi_heads
    pooled_strides = [s for n, s in zip(backbone.feature_names, backbone.strides) if n in backbone.pooled_feature_names]
    return RoIPooler(
        heads.pooler, resolution, pooled_strides, heads.sampling_ratio, heads.aligned, heads.canonical_scale
    )
