"""The box-head stage every two-stage pipeline shares: RoI pooler, two-FC head, predictor."""

from __future__ import annotations

from detkit.config import ModelConfig
from detkit.errors import ConfigError
from detkit.modeling.backbones import Backbone
from detkit.modeling.box_head import BoxPredictor, MLPBoxHead
from detkit.modeling.mask_head import MaskBranch, MaskHead
from detkit.modeling.poolers import RoIPooler
from detkit.modeling.roi_heads import RoIHeads


def check_num_classes(cfg: ModelConfig) -> None:
    if cfg.num_classes <= 0:
        raise ConfigError("model.num_classes must be positive; it is normally taken from the training data")


def build_box_heads(cfg: ModelConfig, backbone: Backbone, mask_branch: MaskBranch | None = None) -> RoIHeads:
    """RoI pooler + two-FC box head + predictor over the backbone's pooled levels (+ a mask branch)."""
    heads = cfg.roi_heads
    pooler = _pooler(cfg, backbone, heads.pooler_resolution)
    box_head = MLPBoxHead(backbone.out_channels * heads.pooler_resolution**2, heads.representation_size)
    return RoIHeads(pooler, box_head, BoxPredictor(heads.representation_size, cfg.num_classes), heads, mask_branch)


def build_mask_branch(cfg: ModelConfig, backbone: Backbone) -> MaskBranch:
    """Mask R-CNN's branch: the same kind of pooler as the box head (RoIAlign or RoIPool) at the mask resolution."""
    mask = cfg.mask
    head = MaskHead(backbone.out_channels, mask.conv_channels, mask.num_convs)
    return MaskBranch(_pooler(cfg, backbone, mask.pooler_resolution), head, cfg.num_classes, mask.conv_channels)


def _pooler(cfg: ModelConfig, backbone: Backbone, resolution: int) -> RoIPooler:
    heads = cfg.roi_heads
    pooled_strides = [s for n, s in zip(backbone.feature_names, backbone.strides) if n in backbone.pooled_feature_names]
    return RoIPooler(
        heads.pooler, resolution, pooled_strides, heads.sampling_ratio, heads.aligned, heads.canonical_scale
    )
