"""The box-head stage every two-stage pipeline shares: RoI pooler, two-FC head, predictor."""

from __future__ import annotations

from detkit.config import ModelConfig
from detkit.errors import ConfigError
from detkit.modeling.box_head import BoxPredictor, MLPBoxHead
from detkit.modeling.poolers import RoIPooler
from detkit.modeling.roi_heads import RoIHeads


def check_num_classes(cfg: ModelConfig) -> None:
    if cfg.num_classes <= 0:
        raise ConfigError("model.num_classes must be positive; it is normally taken from the training data")


def build_box_heads(cfg: ModelConfig, backbone) -> RoIHeads:
    """RoI pooler + two-FC box head + predictor over the backbone's pooled levels."""
    heads = cfg.roi_heads
    pooled_strides = [s for n, s in zip(backbone.feature_names, backbone.strides) if n in backbone.pooled_feature_names]
    pooler = RoIPooler(
        heads.pooler, heads.pooler_resolution, pooled_strides, heads.sampling_ratio, heads.aligned, heads.canonical_scale
    )
    box_head = MLPBoxHead(backbone.out_channels * heads.pooler_resolution**2, heads.representation_size)
    return RoIHeads(pooler, box_head, BoxPredictor(heads.representation_size, cfg.num_classes), heads)
