"""Backbones: shapes per architecture, freezing, errors, ImageNet loading, and torchvision equivalence."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor, mobilenet_backbone, resnet_fpn_backbone
from torchvision.ops.misc import FrozenBatchNorm2d

from detkit.config.schema import BackboneConfig
from detkit.errors import CheckpointError, ConfigError, WeightsNotFoundError
from detkit.modeling.backbones import TRUNKS, Backbone, build_backbone
from detkit.modeling.torchvision_import import TORCHVISION_BACKBONES, convert_torchvision_backbone

MOBILENET_V2_IMAGENET = Path(__file__).resolve().parents[2].parent / "shared" / "weights" / "mobilenet_v2-b0353104.pth"
NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)

# arch -> ((names, strides) with the default FPN, channels of the c4 map returned without one)
EXPECTED = {
    "resnet18": ((["p2", "p3", "p4", "p5", "pool"], [4, 8, 16, 32, 64]), 256),
    "resnet50": ((["p2", "p3", "p4", "p5", "pool"], [4, 8, 16, 32, 64]), 1024),
    "mobilenet_v2": ((["p2", "p3", "p4", "p5", "pool"], [4, 8, 16, 32, 64]), 96),
    "mobilenet_v3_large": ((["p5a", "p5", "pool"], [32, 32, 64]), 112),
    "vgg16": ((["p2", "p3", "p4", "pool"], [4, 8, 16, 32]), 512),
}


def measured_strides(features: dict[str, torch.Tensor], image_size: tuple[int, int]) -> list[int]:
    """Each map's stride: the power of two s with ceil(image_size / s) == the map's size."""
    strides = []
    for f in features.values():
        fits = [2**k for k in range(8) if all(-(-n // 2**k) == m for n, m in zip(image_size, f.shape[-2:]))]
        assert len(fits) == 1, (tuple(f.shape), image_size)
        strides.append(fits[0])
    return strides


@pytest.mark.parametrize("name", list(EXPECTED))
@pytest.mark.parametrize("fpn", [True, False])
def test_default_levels_names_strides_channels(name, fpn):
    backbone = build_backbone(BackboneConfig(name=name, fpn=fpn)).eval()
    (fpn_names, fpn_strides), c4_channels = EXPECTED[name]
    with torch.no_grad():
        features = backbone(torch.rand(1, 3, 128, 160))
    names, strides, channels = (fpn_names, fpn_strides, 256) if fpn else (["c4"], [16], c4_channels)
    assert list(features) == backbone.feature_names == names
    assert measured_strides(features, (128, 160)) == backbone.strides == strides
    assert backbone.out_channels == channels
    assert all(f.shape[:2] == (1, channels) for f in features.values())
    assert backbone.pooled_feature_names == [n for n in names if n != "pool"]


def test_returned_stages_and_no_extra_pool():
    backbone = build_backbone(
        BackboneConfig(name="mobilenet_v3_large", returned_stages=(5, 3, 4), fpn_extra_pool=False, fpn_channels=64)
    )
    with torch.no_grad():
        features = backbone.eval()(torch.rand(2, 3, 96, 128))
    assert list(features) == backbone.feature_names == backbone.pooled_feature_names == ["p3", "p4", "p5"]
    assert measured_strides(features, (96, 128)) == backbone.strides == [8, 16, 32]
    assert all(f.shape[:2] == (2, 64) for f in features.values())


def test_single_stage_without_fpn_and_dropped_layers():
    backbone = build_backbone(BackboneConfig(name="resnet18", fpn=False, returned_stages=(5,)))
    assert backbone.feature_names == ["c5"] and backbone.strides == [32] and backbone.out_channels == 512
    # c4 needs nothing after layer3: layer4 is not built into the trunk
    assert "layer4" not in dict(build_backbone(BackboneConfig(name="resnet18", fpn=False)).body.named_children())


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (BackboneConfig(name="resnet5"), "valid names: resnet18, resnet50, mobilenet_v2, mobilenet_v3_large, vgg16"),
        (BackboneConfig(norm="gn"), "valid: bn, frozen_bn"),
        (BackboneConfig(fpn_norm="gn"), "fpn_norm='gn' is unknown; valid: none, bn"),
        (BackboneConfig(trainable_stages=6), "0..5"),
        (BackboneConfig(name="vgg16", returned_stages=(3, 5)), "vgg16 has stages 1, 2, 3, 4"),
        (BackboneConfig(fpn=False, returned_stages=(3, 4)), "fpn=true"),
    ],
)
def test_config_errors(cfg, message):
    with pytest.raises(ConfigError, match=message):
        build_backbone(cfg)


# ---- freezing --------------------------------------------------------------------------------

RESNET_STAGE_LAYERS = {1: ("conv1", "bn1"), 2: ("layer1",), 3: ("layer2",), 4: ("layer3",), 5: ("layer4",)}


@pytest.mark.parametrize("trainable_stages", [0, 1, 3, 5])
def test_resnet_frozen_stages(trainable_stages):
    backbone = build_backbone(BackboneConfig(name="resnet18", trainable_stages=trainable_stages))
    for name, param in backbone.body.named_parameters():
        stage = next(s for s, layers in RESNET_STAGE_LAYERS.items() if name.split(".")[0] in layers)
        assert param.requires_grad == (stage > 5 - trainable_stages), name
    assert all(p.requires_grad for p in backbone.fpn.parameters())


def test_vgg_trainable_4_is_fast_rcnn_recipe():
    """Fast R-CNN fine-tunes conv3_1 and up (section 4.5)."""
    backbone = build_backbone(BackboneConfig(name="vgg16", fpn=False, trainable_stages=4))
    convs = [m for m in backbone.body.modules() if isinstance(m, nn.Conv2d)]
    assert [c.weight.requires_grad for c in convs] == [False] * 4 + [True] * 9


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "mobilenet_v3_large"])
def test_frozen_bn_has_no_trainable_norm_params(name):
    backbone = build_backbone(BackboneConfig(name=name, norm="frozen_bn"))
    norms = [m for m in backbone.modules() if isinstance(m, NORMS)]
    assert norms and all(isinstance(m, FrozenBatchNorm2d) for m in norms)
    assert all(not list(m.parameters()) for m in norms)


def test_training_backward_reaches_only_trainable_stages():
    backbone = build_backbone(BackboneConfig(name="resnet18", trainable_stages=2)).train()
    features = backbone(torch.rand(2, 3, 64, 96))
    sum(f.square().mean() for f in features.values()).backward()
    for name, param in backbone.named_parameters():
        assert (param.grad is not None) == param.requires_grad, name
        if param.grad is not None:
            assert torch.isfinite(param.grad).all()


# ---- torchvision equivalence -----------------------------------------------------------------


def randomize_norms(model: nn.Module) -> None:
    """Non-trivial norm statistics and affine parameters, so that a mis-mapped layer shows.

    Statistics are set from each norm layer's actual input on a calibration image (then jittered):
    arbitrary ones would let the signal die in the first blocks, leaving outputs that do not
    depend on early layers at all, so a wrong early layer would go unnoticed.
    """
    gen = torch.Generator().manual_seed(1)

    def calibrate(module: nn.Module, inputs: tuple[torch.Tensor]) -> None:
        mean, var = inputs[0].mean((0, 2, 3)), inputs[0].var((0, 2, 3))
        c = mean.shape[0]
        module.running_mean.copy_(mean + 0.1 * var.sqrt() * torch.randn(c, generator=gen))
        module.running_var.copy_(var * (0.5 + torch.rand(c, generator=gen)) + 1e-3)
        module.weight.copy_(0.5 + torch.rand(c, generator=gen))
        module.bias.copy_(0.1 * torch.randn(c, generator=gen))

    norms = [m for m in model.modules() if isinstance(m, NORMS)]
    hooks = [m.register_forward_pre_hook(calibrate) for m in norms]
    with torch.no_grad():
        model.eval()(torch.rand(2, 3, 128, 160, generator=gen))
    for hook in hooks:
        hook.remove()


class Detector(nn.Module):
    """Stands in for a detkit detector: the converted keys start with ``backbone.``."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone


def assert_same_features(tv_backbone: nn.Module, backbone: Backbone, image_size: tuple[int, int]) -> None:
    x = torch.rand(1, 3, *image_size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = tv_backbone.eval()(x)
        actual = backbone.eval()(x)
    assert len(expected) == len(actual) == len(backbone.feature_names)
    for (tv_name, want), (name, got) in zip(expected.items(), actual.items()):
        assert want.std() > 1e-2, "features too small for the tolerance to mean anything"
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5, msg=f"{name} vs torchvision {tv_name}")


def load_converted(tv_state: dict, arch: str, cfg: BackboneConfig) -> Backbone:
    detector = Detector(build_backbone(cfg))
    detector.load_state_dict(convert_torchvision_backbone(tv_state, arch), strict=True)
    return detector.backbone


def assert_same_requires_grad(tv_backbone: nn.Module, backbone: Backbone, arch: str) -> None:
    tv_flags = {f"backbone.{k}": p.requires_grad for k, p in tv_backbone.named_parameters()}
    converted = convert_torchvision_backbone({k: torch.empty(0) for k in tv_flags}, arch)
    ours = dict(backbone.named_parameters())
    assert {new: tv_flags[old] for old, new in zip(tv_flags, converted)} == {
        f"backbone.{k}": ours[k].requires_grad for k in ours
    }


def test_resnet50_fpn_matches_torchvision():
    torch.manual_seed(0)
    tv_model = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    randomize_norms(tv_model.backbone)
    cfg = BackboneConfig(name="resnet50", fpn=True, norm="bn", fpn_channels=256, fpn_extra_pool=True)
    backbone = load_converted(tv_model.state_dict(), "resnet50_fpn", cfg)
    assert backbone.feature_names == ["p2", "p3", "p4", "p5", "pool"]
    assert_same_features(tv_model.backbone, backbone, (224, 320))


def test_mobilenet_v3_large_fpn_matches_torchvision():
    torch.manual_seed(0)
    tv_model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None)
    randomize_norms(tv_model.backbone)
    cfg = BackboneConfig(name="mobilenet_v3_large", fpn=True, norm="bn")
    backbone = load_converted(tv_model.state_dict(), "mobilenet_v3_large_fpn", cfg)
    assert backbone.feature_names == ["p5a", "p5", "pool"]
    assert_same_features(tv_model.backbone, backbone, (224, 320))


def test_resnet50_fpn_frozen_bn_matches_torchvision():
    torch.manual_seed(0)
    tv_backbone = resnet_fpn_backbone(
        backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d, trainable_layers=3
    )
    randomize_norms(tv_backbone)
    tv_state = {f"backbone.{k}": v for k, v in tv_backbone.state_dict().items()}
    backbone = load_converted(tv_state, "resnet50_fpn", TORCHVISION_BACKBONES["resnet50_fpn"])
    assert_same_requires_grad(tv_backbone, backbone, "resnet50_fpn")
    assert_same_features(tv_backbone, backbone, (96, 128))


def test_mobilenet_v3_large_fpn_frozen_bn_matches_torchvision():
    torch.manual_seed(0)
    tv_backbone = mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=True, trainable_layers=3)
    randomize_norms(tv_backbone)
    tv_state = {f"backbone.{k}": v for k, v in tv_backbone.state_dict().items()}
    backbone = load_converted(tv_state, "mobilenet_v3_large_fpn", TORCHVISION_BACKBONES["mobilenet_v3_large_fpn"])
    assert_same_requires_grad(tv_backbone, backbone, "mobilenet_v3_large_fpn")
    assert_same_features(tv_backbone, backbone, (160, 224))


def test_resnet50_fpn_v2_matches_torchvision():
    """fasterrcnn_resnet50_fpn_v2's backbone: plain BatchNorm in the trunk and after every FPN conv."""
    torch.manual_seed(0)
    tv_backbone = _resnet_fpn_extractor(torchvision.models.resnet50(weights=None), 3, norm_layer=nn.BatchNorm2d)
    randomize_norms(tv_backbone)
    tv_state = {f"backbone.{k}": v for k, v in tv_backbone.state_dict().items()}
    backbone = load_converted(tv_state, "resnet50_fpn_v2", TORCHVISION_BACKBONES["resnet50_fpn_v2"])
    assert sum(isinstance(m, nn.BatchNorm2d) for m in backbone.fpn.modules()) == 8
    assert_same_requires_grad(tv_backbone, backbone, "resnet50_fpn_v2")
    assert_same_features(tv_backbone, backbone, (96, 128))
    # As in torchvision, a frozen stage's BatchNorm keeps its weights but still tracks batch statistics.
    before = backbone.body.bn1.running_mean.clone()
    backbone.train()(torch.rand(2, 3, 64, 64))
    assert not backbone.body.bn1.weight.requires_grad and not torch.equal(before, backbone.body.bn1.running_mean)


def test_convert_key_rules_and_errors():
    t = torch.zeros(1)
    state = {
        "backbone.body.layer1.0.conv1.weight": t,
        "backbone.body.0.0.weight": t,
        "backbone.fpn.inner_blocks.0.0.weight": t,
        "backbone.fpn.layer_blocks.3.0.bias": t,
        "rpn.head.conv.0.0.weight": t,
    }
    assert list(convert_torchvision_backbone(state, "resnet50_fpn")) == [
        "backbone.body.layer1.0.conv1.weight",
        "backbone.body.0.0.weight",
        "backbone.fpn.lateral_convs.0.weight",
        "backbone.fpn.output_convs.3.bias",
    ]
    normed = {"backbone.fpn.inner_blocks.0.1.running_var": t, "backbone.fpn.layer_blocks.2.0.weight": t}
    assert list(convert_torchvision_backbone(normed, "resnet50_fpn_v2")) == [
        "backbone.fpn.lateral_convs.0.1.running_var",
        "backbone.fpn.output_convs.2.0.weight",
    ]
    with pytest.raises(CheckpointError, match="backbone.fpn.inner_blocks.0.weight"):  # the v2 FPN is always nested
        convert_torchvision_backbone({"backbone.fpn.inner_blocks.0.weight": t}, "resnet50_fpn_v2")
    with pytest.raises(ConfigError, match="resnet50_fpn, mobilenet_v3_large_fpn"):
        convert_torchvision_backbone(state, "resnet18_fpn")
    with pytest.raises(CheckpointError, match="backbone.fpn.extra"):
        convert_torchvision_backbone({"backbone.fpn.extra.weight": t}, "resnet50_fpn")


# ---- ImageNet weights ------------------------------------------------------------------------

needs_imagenet_file = pytest.mark.skipif(not MOBILENET_V2_IMAGENET.is_file(), reason=f"{MOBILENET_V2_IMAGENET} absent")


@pytest.fixture
def no_weights_anywhere(tmp_path, monkeypatch):
    """An empty torchvision cache and an empty working directory."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_missing_weights_offline_raise_with_a_fix(no_weights_anywhere):
    with pytest.raises(WeightsNotFoundError) as info:
        build_backbone(BackboneConfig(name="resnet50", pretrained=True))
    message = str(info.value)
    assert "\n" not in message and "offline" in message
    assert "download https://download.pytorch.org/models/resnet50-0676ba61.pth to " in message
    assert str(no_weights_anywhere / "torch" / "hub" / "checkpoints" / "resnet50-0676ba61.pth") in message
    assert "--set model.backbone.weights_path=FILE" in message


@needs_imagenet_file
def test_imagenet_weights_found_in_the_working_folders_weights(no_weights_anywhere):
    (no_weights_anywhere / "weights").mkdir()
    (no_weights_anywhere / "weights" / MOBILENET_V2_IMAGENET.name).symlink_to(MOBILENET_V2_IMAGENET)
    backbone = build_backbone(BackboneConfig(name="mobilenet_v2", pretrained=True, fpn=False))
    imagenet = torch.load(MOBILENET_V2_IMAGENET, map_location="cpu", weights_only=True)
    torch.testing.assert_close(backbone.body.state_dict()["0.0.weight"], imagenet["features.0.0.weight"])


def test_missing_weights_path_raises(no_weights_anywhere):
    with pytest.raises(WeightsNotFoundError, match="nope.pth"):
        build_backbone(BackboneConfig(name="mobilenet_v2", pretrained=True, weights_path="nope.pth"))


@needs_imagenet_file
def test_imagenet_mobilenet_v2_from_weights_path():
    cfg = BackboneConfig(name="mobilenet_v2", fpn=False, pretrained=True, weights_path=str(MOBILENET_V2_IMAGENET))
    torch.manual_seed(0)
    pretrained = build_backbone(cfg).eval()
    torch.manual_seed(0)
    random = build_backbone(BackboneConfig(name="mobilenet_v2", fpn=False)).eval()
    imagenet = torch.load(MOBILENET_V2_IMAGENET, map_location="cpu", weights_only=True)
    torch.testing.assert_close(pretrained.body.state_dict()["0.0.weight"], imagenet["features.0.0.weight"])
    torch.testing.assert_close(
        pretrained.body.state_dict()["13.conv.3.running_var"], imagenet["features.13.conv.3.running_var"]
    )
    x = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        assert not torch.allclose(pretrained(x)["c4"], random(x)["c4"])


@needs_imagenet_file
def test_imagenet_weights_found_in_torch_cache(no_weights_anywhere):
    checkpoints = no_weights_anywhere / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / MOBILENET_V2_IMAGENET.name).symlink_to(MOBILENET_V2_IMAGENET)
    backbone = build_backbone(
        BackboneConfig(name="mobilenet_v2", pretrained=True, norm="frozen_bn", trainable_stages=3)
    )
    imagenet = torch.load(MOBILENET_V2_IMAGENET, map_location="cpu", weights_only=True)
    torch.testing.assert_close(backbone.body.state_dict()["18.1.running_mean"], imagenet["features.18.1.running_mean"])


@needs_imagenet_file
def test_checkpoint_of_another_arch_is_a_checkpoint_error():
    cfg = BackboneConfig(name="mobilenet_v3_large", pretrained=True, weights_path=str(MOBILENET_V2_IMAGENET))
    with pytest.raises(CheckpointError, match="mobilenet_v3_large") as info:
        build_backbone(cfg)
    assert not isinstance(info.value, WeightsNotFoundError)


def test_every_arch_has_imagenet_weights_listed():
    from detkit.modeling.backbones.pretrained import IMAGENET_WEIGHTS

    assert set(IMAGENET_WEIGHTS) == set(TRUNKS)
