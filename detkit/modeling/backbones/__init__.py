"""Backbones: an ImageNet trunk cut into stride-numbered stages, optionally topped by an FPN."""

from detkit.modeling.backbones.build import Backbone, build_backbone, build_trunk, freeze_stages
from detkit.modeling.backbones.fpn import FeaturePyramid
from detkit.modeling.backbones.pretrained import find_imagenet_weights, load_imagenet_weights
from detkit.modeling.backbones.trunks import TRUNKS, Trunk

__all__ = [
    "TRUNKS",
    "Backbone",
    "FeaturePyramid",
    "Trunk",
    "build_backbone",
    "build_trunk",
    "find_imagenet_weights",
    "freeze_stages",
    "load_imagenet_weights",
]
