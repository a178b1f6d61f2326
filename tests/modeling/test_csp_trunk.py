"""The CSP trunk (YOLOv8's) and the C2f PAN neck: stages, strides, widths, and YOLOv8's parameter counts."""

import pytest
import torch
from torch import nn

from detkit.config import BackboneConfig
from detkit.errors import ConfigError
from detkit.modeling.backbones import build_backbone, build_trunk
from detkit.modeling.backbones.csp_blocks import C2f, ConvNormAct
from detkit.modeling.scaling import scaled_channels
from detkit.modeling.yolo import C2fPANNeck

# Parameters of YOLOv8's backbone (layers 0-9) and neck (layers 10-21), counted on ultralytics 8.4.190's
# DetectionModel("yolov8{n,s,m}.yaml"); with its Detect head they are the published 3.2 M / 11.2 M / 25.9 M.
YOLOV8_PARAMS = {"n": (1_272_656, 986_880), "s": (5_079_712, 3_939_840), "m": (11_855_856, 10_224_768)}
# YOLOv8's neck: outputs (256, 512, 1024) x width, capped at max_channels first; C2f blocks round(3 x depth).
NECK_SIZES = {"n": (0.25, (256, 512, 1024), 1), "s": (0.50, (256, 512, 1024), 1), "m": (0.75, (256, 512, 768), 2)}
CHANNELS = {"n": (64, 128, 256), "s": (128, 256, 512), "m": (192, 384, 576)}


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def csp_trunk_and_neck(size: str) -> tuple[nn.Module, list, C2fPANNeck]:
    trunk, taps = build_trunk(BackboneConfig(name=f"csp_{size}", fpn=False), (3, 4, 5))
    width, base, depth = NECK_SIZES[size]
    neck = C2fPANNeck([t.channels for t in taps], [scaled_channels(c, width) for c in base], depth)
    return trunk, taps, neck


@pytest.mark.parametrize("size", ["n", "s", "m"])
def test_sizes_have_yolov8s_widths_strides_and_parameter_counts(size):
    trunk, taps, neck = csp_trunk_and_neck(size)
    assert [t.stride for t in taps] == [8, 16, 32] and tuple(t.channels for t in taps) == CHANNELS[size]
    assert (count(trunk), count(neck)) == YOLOV8_PARAMS[size]
    # An odd-sized input: each stride-2 conv rounds up, and the neck upsamples to the exact sizes.
    features = trunk(torch.rand(1, 3, 40, 68))
    assert list(features) == ["c3", "c4", "c5"]
    assert [tuple(f.shape[-2:]) for f in features.values()] == [(5, 9), (3, 5), (2, 3)]
    outputs = neck(list(features.values()))
    assert [tuple(o.shape) for o in outputs] == [
        (1, c, h, w) for c, (h, w) in zip(CHANNELS[size], [(5, 9), (3, 5), (2, 3)])
    ]


def test_depth_multiple_sets_the_bottlenecks_per_stage():
    trunk_n, _, _ = csp_trunk_and_neck("n")
    trunk_m, _, _ = csp_trunk_and_neck("m")
    assert [len(trunk_n[f"c2f{s}"].bottlenecks) for s in (2, 3, 4)] == [1, 2, 2]
    assert [len(trunk_m[f"c2f{s}"].bottlenecks) for s in (2, 3, 4)] == [2, 4, 4]


def test_every_conv_is_a_conv_bn_act_sequence_a_bn_folder_finds():
    trunk, _, neck = csp_trunk_and_neck("n")
    for module in (trunk, neck):
        convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
        blocks = [m for m in module.modules() if isinstance(m, ConvNormAct)]
        assert len(convs) == len(blocks) > 0
        for block in blocks:
            conv, norm, act = block
            assert conv.bias is None and isinstance(norm, nn.BatchNorm2d) and isinstance(act, nn.SiLU)
    assert all(not m.bottlenecks[0].shortcut for m in neck.modules() if isinstance(m, C2f))  # YOLOv8: none in the neck


def test_the_trunk_serves_an_fpn_and_freezes_stages_like_the_others():
    backbone = build_backbone(BackboneConfig(name="csp_n", fpn_channels=32, trainable_stages=3))
    levels = backbone(torch.rand(1, 3, 64, 64))
    assert backbone.strides == [4, 8, 16, 32, 64] and all(v.shape[1] == 32 for v in levels.values())
    frozen = {name for name, layer in backbone.body.items() if not any(p.requires_grad for p in layer.parameters())}
    assert frozen == {"stem", "down2", "c2f2"}


def test_imagenet_weights_are_refused_naming_the_fix():
    with pytest.raises(ConfigError, match="csp_n has no published ImageNet weights.*pretrained=false"):
        build_trunk(BackboneConfig(name="csp_n", pretrained=True, fpn=False), (3, 4, 5))
