"""ImageNet classifiers (and YOLOv8's CSP trunk) cut into stride-numbered stages: the trunk of every
detkit backbone.

    images ``[N, 3, H, W]`` -> OrderedDict of tapped stage outputs ``"c<s>": [N, C_s, H / 2**s, W / 2**s]``

Stage ``s`` (1..5) is the run of layers whose output has stride ``2**s``; its tap ``c<s>`` is the
output of the stage's last layer (the C_s of the FPN paper, Lin et al., CVPR 2017, section 3).
Layers keep their torchvision names (``conv1``, ``layer1``.. for ResNets; ``0``, ``1``.. the index
into ``features`` for MobileNets and VGG), so torchvision's ImageNet and detection checkpoints map
onto a trunk by renaming a prefix at most.

Per architecture (channels of each tap; ``-`` = no such stage):

    arch                c1    c2    c3    c4    c5    notes
    resnet18            64    64   128   256   512    c1 is the stem conv before the max-pool
    resnet50            64   256   512  1024  2048
    mobilenet_v2        16    24    32    96  1280
    mobilenet_v3_large  16    24    40   112   960    + c5a: block 13, 160 channels, stride 32
    vgg16              128   256   512   512     -    conv2_2, conv3_3, conv4_3, conv5_3; no pool5
    csp_n               16    32    64   128   256    YOLOv8's CSP trunk (csp_darknet.py), no ImageNet weights
    csp_s               32    64   128   256   512
    csp_m               48    96   192   384   576

VGG16 keeps ``features`` without its last max-pool, so conv5_3 sits at stride 16 as in Fast R-CNN
(Girshick, ICCV 2015); its stride-1 conv1 block is folded into stage 1, which puts the Fast R-CNN
recipe (conv3_1 and up train) at ``trainable_stages=4``.

``c5a`` exists only to reproduce torchvision's ``fasterrcnn_mobilenet_v3_large_fpn``, whose FPN
reads the output of the first stride-32 block and the last conv (both stride 32).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torchvision
from torch import Tensor, nn

from detkit.modeling.backbones.csp_darknet import CSP_SIZES, STAGE_ENDS, CSPSize, csp_darknet_layers

NormLayer = Callable[[int], nn.Module]


@dataclass(frozen=True)
class Tap:
    """Where a feature map is read: the output of ``layer`` (a trunk child), at ``stride``."""

    layer: str
    stride: int
    channels: int


@dataclass
class TrunkSpec:
    """One architecture's layers in forward order and the taps they offer."""

    layers: list[tuple[str, nn.Module]]
    taps: dict[str, Tap]  # "c1".."c5" (stage ends) plus architecture-specific extras
    default_fpn_taps: tuple[str, ...]
    imagenet_prefix: str  # prefix of these layers' keys in torchvision's ImageNet checkpoint

    @property
    def stages(self) -> list[int]:
        return sorted(int(name[1:]) for name in self.taps if name[1:].isdigit())

    def stage_of_layers(self) -> dict[str, int]:
        """Layer name -> stage it belongs to: every layer up to and including the stage's tap."""
        ends = {self.taps[f"c{s}"].layer: s for s in self.stages}
        stage_of, pending = {}, []
        for name, _ in self.layers:
            pending.append(name)
            if name in ends:
                stage_of.update(dict.fromkeys(pending, ends[name]))
                pending = []
        return stage_of


class Trunk(nn.ModuleDict):
    """Runs its layers in order and returns the tapped outputs, finest first.

    Layers after the last tap are not kept: nothing downstream reads them.
    """

    def __init__(self, layers: list[tuple[str, nn.Module]], taps: dict[str, str]) -> None:
        """``taps`` maps a layer name to the key its output is returned under."""
        last = max(i for i, (name, _) in enumerate(layers) if name in taps)
        super().__init__(OrderedDict(layers[: last + 1]))
        self.taps = dict(taps)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        """``[N, 3, H, W]`` -> ``{key: [N, C, H / stride, W / stride]}`` in forward order."""
        out: OrderedDict[str, Tensor] = OrderedDict()
        for name, layer in self.items():
            x = layer(x)
            if name in self.taps:
                out[self.taps[name]] = x
        return out


def _resnet(build: Callable[..., torchvision.models.ResNet], norm_layer: NormLayer) -> TrunkSpec:
    net = build(weights=None, norm_layer=norm_layer)
    expansion = type(net.layer1[0]).expansion  # 1 for BasicBlock, 4 for Bottleneck
    channels = [64] + [64 * 2**i * expansion for i in range(4)]
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    stage_ends = ("relu", "layer1", "layer2", "layer3", "layer4")
    taps = {f"c{s}": Tap(stage_ends[s - 1], 2**s, channels[s - 1]) for s in range(1, 6)}
    return TrunkSpec([(n, getattr(net, n)) for n in names], taps, ("c2", "c3", "c4", "c5"), imagenet_prefix="")


def resnet18(norm_layer: NormLayer) -> TrunkSpec:
    return _resnet(torchvision.models.resnet18, norm_layer)


def resnet50(norm_layer: NormLayer) -> TrunkSpec:
    return _resnet(torchvision.models.resnet50, norm_layer)


def _mobilenet(
    features: nn.Sequential, stage_ends: list[int], extra: dict[str, int], fpn_taps: tuple[str, ...]
) -> TrunkSpec:
    layers = [(str(i), layer) for i, layer in enumerate(features)]
    index = {f"c{s}": i for s, i in enumerate(stage_ends, start=1)} | extra
    strides = _strides(features)
    taps = {name: Tap(str(i), strides[i], _out_channels(features[i])) for name, i in index.items()}
    return TrunkSpec(layers, taps, fpn_taps, imagenet_prefix="features.")


def _out_channels(block: nn.Module) -> int:
    # A plain int attribute of torchvision's MobileNet blocks; ``nn.Module.__getattr__`` types it as a tensor or module.
    return cast(int, block.out_channels)


def _strides(features: nn.Sequential) -> list[int]:
    """Output stride of each block: blocks flagged ``_is_cn`` by torchvision (and the stem) halve the resolution."""
    stride, strides = 1, []
    for i, block in enumerate(features):
        if i == 0 or getattr(block, "_is_cn", False):
            stride *= 2
        strides.append(stride)
    return strides


def mobilenet_v2(norm_layer: NormLayer) -> TrunkSpec:
    features = torchvision.models.mobilenet_v2(weights=None, norm_layer=norm_layer).features
    return _mobilenet(features, [1, 3, 6, 13, 18], {}, ("c2", "c3", "c4", "c5"))


def mobilenet_v3_large(norm_layer: NormLayer) -> TrunkSpec:
    # torchvision passes norm_layer as given, so BN eps is 1e-5 here (ImageNet training used 1e-3),
    # exactly as in torchvision's detection models whose weights we must reproduce.
    features = torchvision.models.mobilenet_v3_large(weights=None, norm_layer=norm_layer).features
    # Default FPN taps are torchvision's _mobilenet_extractor(fpn=True) picks: blocks 13 and 16.
    return _mobilenet(features, [1, 3, 6, 12, 16], {"c5a": 13}, ("c5a", "c5"))


def vgg16(norm_layer: NormLayer) -> TrunkSpec:
    """VGG has no norm layers; ``norm_layer`` is accepted for a uniform signature and ignored."""
    # make_layers is what torchvision.models.vgg16 builds ``features`` with; calling it directly
    # skips the 120M-parameter classifier that the constructor would allocate and initialise.
    vgg = torchvision.models.vgg
    features = vgg.make_layers(vgg.cfgs["D"], batch_norm=False)[:-1]  # drop pool5: conv5_3 at stride 16
    for m in features.modules():
        if isinstance(m, nn.Conv2d):  # VGG.__init__'s initialisation of the convolutions
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    layers = [(str(i), layer) for i, layer in enumerate(features)]
    relus = [i for i, m in enumerate(features) if isinstance(m, nn.ReLU)]
    pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
    # conv2_2, conv3_3, conv4_3, conv5_3: the last ReLU before each max-pool, and the very last.
    ends = [max(r for r in relus if r < p) for p in pools[1:]] + [relus[-1]]
    taps = {f"c{s}": Tap(str(i), 2**s, _channels_before(features, i)) for s, i in enumerate(ends, start=1)}
    return TrunkSpec(layers, taps, ("c2", "c3", "c4"), imagenet_prefix="features.")


def _channels_before(features: nn.Sequential, index: int) -> int:
    return [m for m in features[: index + 1] if isinstance(m, nn.Conv2d)][-1].out_channels


def _csp(size: CSPSize, norm_layer: NormLayer) -> TrunkSpec:
    layers, channels = csp_darknet_layers(size, norm_layer)
    taps = {f"c{s}": Tap(STAGE_ENDS[s - 1], 2**s, channels[s - 1]) for s in range(1, 6)}
    # No published ImageNet checkpoint; a weights_path file of this trunk's own keys loads unprefixed.
    return TrunkSpec(layers, taps, ("c2", "c3", "c4", "c5"), imagenet_prefix="")


def csp_n(norm_layer: NormLayer) -> TrunkSpec:
    return _csp(CSP_SIZES["n"], norm_layer)


def csp_s(norm_layer: NormLayer) -> TrunkSpec:
    return _csp(CSP_SIZES["s"], norm_layer)


def csp_m(norm_layer: NormLayer) -> TrunkSpec:
    return _csp(CSP_SIZES["m"], norm_layer)


TRUNKS: dict[str, Callable[[NormLayer], TrunkSpec]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "mobilenet_v3_large": mobilenet_v3_large,
    "vgg16": vgg16,
    "csp_n": csp_n,
    "csp_s": csp_s,
    "csp_m": csp_m,
}
