"""The backbone every detector shares: a trunk, optionally topped by an FPN (Lin et al., CVPR 2017).

    images ``[N, 3, H, W]`` -> OrderedDict ``{name: [N, out_channels, ~H / stride, ~W / stride]}``,
    finest first, one entry per ``feature_names`` / ``strides``

With an FPN the levels are named ``p<s>`` after the trunk stage they come from (stride ``2**s``),
then ``pool`` (the stride-2 max-pool of the coarsest level) when ``fpn_extra_pool``. Without one the
single returned trunk stage comes out raw as ``c<s>``.

Defaults for ``returned_stages=()``:

    arch                with FPN (strides)                 without FPN
    resnet18/50         p2 p3 p4 p5 pool (4 8 16 32 64)    c4 (16)
    mobilenet_v2        p2 p3 p4 p5 pool (4 8 16 32 64)    c4 (16)
    mobilenet_v3_large  p5a p5 pool (32 32 64)             c4 (16)
    vgg16               p2 p3 p4 pool (4 8 16 32)          c4 (16)

mobilenet_v3_large's FPN default is torchvision's ``fasterrcnn_mobilenet_v3_large_fpn`` (both taps at
stride 32), so its weights load; ``returned_stages=(3, 4, 5)`` gives a conventional pyramid.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d

from detkit.config.schema import BackboneConfig
from detkit.errors import ConfigError
from detkit.modeling.backbones.fpn import FeaturePyramid
from detkit.modeling.backbones.pretrained import load_imagenet_weights
from detkit.modeling.backbones.trunks import TRUNKS, Tap, Trunk, TrunkSpec
from detkit.modeling.conv_blocks import CONV_NORMS

NORM_LAYERS = {"bn": nn.BatchNorm2d, "frozen_bn": FrozenBatchNorm2d}
POOL_LEVEL = "pool"


class Backbone(nn.Module):
    """Trunk (+ FPN). ``out_channels`` is the channel count of every returned map."""

    def __init__(
        self, body: Trunk, fpn: FeaturePyramid | None, feature_names: list[str], strides: list[int], out_channels: int
    ) -> None:
        super().__init__()
        self.body = body
        self.fpn = fpn
        self.feature_names = feature_names
        self.strides = strides
        self.out_channels = out_channels
        # The extra level has no trunk stage behind it; FPN section 4.2 pools RoIs from P2-P5 only.
        self.pooled_feature_names = [n for n in feature_names if n != POOL_LEVEL]

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        """``[N, 3, H, W]`` -> ``{feature_names[i]: [N, out_channels, H_i, W_i]}``."""
        features: OrderedDict[str, Tensor] = self.body(x)
        if self.fpn is None:
            return features
        return OrderedDict(zip(self.feature_names, self.fpn(list(features.values()))))


def build_backbone(cfg: BackboneConfig) -> Backbone:
    """The backbone ``cfg`` describes; ``ConfigError`` for names or values it cannot build."""
    spec = _trunk_spec(cfg)
    taps = _returned_taps(cfg, spec)
    body = _build_body(cfg, spec, taps)
    strides = [spec.taps[t].stride for t in taps]
    if not cfg.fpn:
        return Backbone(body, None, list(taps), strides, spec.taps[taps[0]].channels)
    fpn = FeaturePyramid([spec.taps[t].channels for t in taps], cfg.fpn_channels, cfg.fpn_extra_pool, cfg.fpn_norm)
    names = ["p" + t[1:] for t in taps]
    if cfg.fpn_extra_pool:
        names, strides = names + [POOL_LEVEL], strides + [2 * strides[-1]]
    return Backbone(body, fpn, names, strides, cfg.fpn_channels)


def build_trunk(cfg: BackboneConfig, stages: tuple[int, ...]) -> tuple[Trunk, list[Tap]]:
    """The bare trunk returning stages ``stages`` (finest first, ``c<s>`` keys) with their taps, for
    detectors that bring their own neck (YOLO's PAN); ``cfg.fpn`` and ``cfg.returned_stages`` are not read."""
    spec = _trunk_spec(cfg)
    if any(f"c{s}" not in spec.taps for s in stages):
        valid = ", ".join(map(str, spec.stages))
        raise ConfigError(f"{cfg.name} has trunk stages {valid}; a detector asked for {', '.join(map(str, stages))}")
    taps = [f"c{s}" for s in sorted(stages)]
    return _build_body(cfg, spec, taps), [spec.taps[t] for t in taps]


def _build_body(cfg: BackboneConfig, spec: TrunkSpec, taps: list[str]) -> Trunk:
    """The trunk cut after its last tap, with ImageNet weights when asked and early stages frozen."""
    body = Trunk(spec.layers, {spec.taps[t].layer: t for t in taps})
    if cfg.pretrained:
        load_imagenet_weights(body, cfg, spec.imagenet_prefix)
    freeze_stages(body, spec, cfg.trainable_stages)
    return body


def freeze_stages(body: Trunk, spec: TrunkSpec, trainable_stages: int) -> None:
    """Stop gradients to stages ``1 .. 5 - trainable_stages`` (torchvision's trainable_backbone_layers).

    Early stages learn generic edges and textures that ImageNet already taught well; freezing
    them saves memory and time and loses no accuracy (Fast R-CNN section 4.5).
    """
    stage_of = spec.stage_of_layers()
    first_trainable = 6 - trainable_stages
    for name, layer in body.items():
        if stage_of[name] < first_trainable:
            layer.requires_grad_(False)


def _trunk_spec(cfg: BackboneConfig) -> TrunkSpec:
    if cfg.name not in TRUNKS:
        raise ConfigError(f"model.backbone.name={cfg.name!r} is unknown; valid names: {', '.join(TRUNKS)}")
    if cfg.norm not in NORM_LAYERS:
        raise ConfigError(f"model.backbone.norm={cfg.norm!r} is unknown; valid: {', '.join(NORM_LAYERS)}")
    if not 0 <= cfg.trainable_stages <= 5:
        raise ConfigError(
            f"model.backbone.trainable_stages={cfg.trainable_stages} must be in 0..5 (5 trains every stage)"
        )
    if cfg.fpn and cfg.fpn_channels <= 0:
        raise ConfigError(f"model.backbone.fpn_channels={cfg.fpn_channels} must be positive")
    if cfg.fpn and cfg.fpn_norm not in CONV_NORMS:
        raise ConfigError(f"model.backbone.fpn_norm={cfg.fpn_norm!r} is unknown; valid: {', '.join(CONV_NORMS)}")
    norm_layer = NORM_LAYERS[cfg.norm]
    return TRUNKS[cfg.name](norm_layer)


def _returned_taps(cfg: BackboneConfig, spec: TrunkSpec) -> list[str]:
    """Tap names to return, finest first."""
    if not cfg.returned_stages:
        return list(spec.default_fpn_taps) if cfg.fpn else ["c4"]
    stages = sorted(set(cfg.returned_stages))
    if any(s not in spec.stages for s in stages):
        valid = ", ".join(map(str, spec.stages))
        raise ConfigError(f"model.backbone.returned_stages={cfg.returned_stages}: {cfg.name} has stages {valid}")
    if not cfg.fpn and len(stages) > 1:
        raise ConfigError(
            f"model.backbone.returned_stages={cfg.returned_stages}: without an FPN the stages' channel counts "
            "differ, so return one stage or set model.backbone.fpn=true"
        )
    return [f"c{s}" for s in stages]
