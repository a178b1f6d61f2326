"""torchvision detection state dicts -> detkit state dicts.

detkit's modules keep torchvision's layer names where they can, so importing a torchvision
detector is a few prefix renames per component. Each function takes the full
``model.state_dict()`` of a torchvision detector, picks its component's keys and returns them
under the names of the detkit detector (whose attributes are ``backbone``, ...).
"""

from __future__ import annotations

import re

from torch import Tensor

from detkit.config.schema import BackboneConfig
from detkit.errors import CheckpointError, ConfigError

# --------------------------------------------------------------------------------------------
# Backbone: ``backbone.body.*`` (trunk) and ``backbone.fpn.*`` (FeaturePyramidNetwork)
# --------------------------------------------------------------------------------------------
#   backbone.body.<rest>                        -> backbone.body.<rest>           (same layer names)
#   backbone.fpn.inner_blocks.<i>.0.<param>     -> backbone.fpn.lateral_convs.<i>.<param>
#   backbone.fpn.layer_blocks.<i>.0.<param>     -> backbone.fpn.output_convs.<i>.<param>

# The detkit backbone config each torchvision detector's backbone equals. ``norm`` and
# ``trainable_stages`` are those of torchvision's COCO-trained weights (FrozenBatchNorm2d; resnet:
# trainable_backbone_layers=3; mobilenet: torchvision's 3 of 6 stages = detkit's top 2 of 5).
TORCHVISION_BACKBONES: dict[str, BackboneConfig] = {
    "resnet50_fpn": BackboneConfig(name="resnet50", fpn=True, fpn_channels=256, fpn_extra_pool=True, norm="frozen_bn", trainable_stages=3),
    "mobilenet_v3_large_fpn": BackboneConfig(
        name="mobilenet_v3_large", fpn=True, fpn_channels=256, fpn_extra_pool=True, norm="frozen_bn", trainable_stages=2
    ),
}

_FPN_RENAMES = (
    (re.compile(r"^backbone\.fpn\.inner_blocks\.(\d+)\.0\."), r"backbone.fpn.lateral_convs.\1."),
    (re.compile(r"^backbone\.fpn\.layer_blocks\.(\d+)\.0\."), r"backbone.fpn.output_convs.\1."),
)


def convert_torchvision_backbone(state_dict: dict[str, Tensor], arch: str) -> dict[str, Tensor]:
    """The ``backbone.*`` entries of a torchvision detector's state dict, renamed for detkit.

    ``arch`` is a key of ``TORCHVISION_BACKBONES``; build the detkit backbone from that config.
    Tensors are shared, not copied. Keys outside ``backbone.`` are left for the other converters.
    """
    if arch not in TORCHVISION_BACKBONES:
        raise ConfigError(f"torchvision backbone {arch!r} is not supported; supported: {', '.join(TORCHVISION_BACKBONES)}")
    converted = {}
    for key, value in state_dict.items():
        if key.startswith("backbone."):
            converted[_backbone_key(key)] = value
    if not converted:
        raise CheckpointError(f"no 'backbone.' keys in the state dict; is it a torchvision {arch} detector?")
    return converted


def _backbone_key(key: str) -> str:
    if key.startswith("backbone.body."):
        return key
    for pattern, replacement in _FPN_RENAMES:
        new_key, found = pattern.subn(replacement, key)
        if found:
            return new_key
    raise CheckpointError(f"unexpected torchvision backbone key {key!r}: not under backbone.body or backbone.fpn")
