"""detkit given torchvision's weights must produce torchvision's detections.

All six torchvision COCO detectors detkit imports are compared: the four Faster R-CNNs here, the two
Mask R-CNNs in test_mask_rcnn_equivalence.py. Each torchvision model gets seeded random weights made
realistic (``calibrated``), is saved as the ``.pth`` a user downloads, and reaches detkit the way
``detkit detect --weights FILE --set ...`` does: ``load_checkpoint``, overrides, ``model_from_checkpoint``.
Run with ``-s`` to see each detector's largest differences.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from detkit.checkpoint import load_checkpoint, model_from_checkpoint
from detkit.config.overrides import apply_overrides
from detkit.engine.benchmark.cost import counted_flops, parameter_count
from detkit.modeling.torchvision_import import convert_torchvision_detector

FASTER_RCNNS = (
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "fasterrcnn_resnet50_fpn_v2",
)
MIN_SIZE, MAX_SIZE = 320, 480  # small images keep the test fast; the arithmetic is size-independent
# Fewer RoIs and detections than the defaults (1000, 100) for the same reason: the conv box head of the
# v2 models and the mask head cost in proportion to them, and 200 / 50 still compare every stage.
PROPOSALS, DETECTIONS = 200, 50
SMALL_BUILD = dict(
    min_size=MIN_SIZE, max_size=MAX_SIZE, rpn_post_nms_top_n_test=PROPOSALS, box_detections_per_img=DETECTIONS
)
# What the user's `--set`s would be for the same settings (the checkpoint's config says 800/1333, 1000, 100).
SMALL_IMAGES = [
    f"model.transform.min_size=[{MIN_SIZE}]",
    f"model.transform.max_size={MAX_SIZE}",
    f"model.rpn.post_nms_topk_test={PROPOSALS}",
    f"model.roi_heads.detections_per_image={DETECTIONS}",
]

# Calibration passes: (the module after which a pass has seen all it needs, prediction layers -> the
# standard deviation of their outputs). The layers of one pass see inputs that do not depend on each
# other's weights; the next pass sees what they changed.
CALIBRATION_PASSES: tuple[tuple[str, dict[str, float]], ...] = (
    ("rpn.head", {"rpn.head.cls_logits": 2.0, "rpn.head.bbox_pred": 0.3}),
    ("roi_heads.box_predictor", {"roi_heads.box_predictor.cls_score": 3.0, "roi_heads.box_predictor.bbox_pred": 1.0}),
)


def calibrated(name: str, extra_pass: tuple[str, dict[str, float]] | None = None) -> nn.Module:
    """torchvision's ``name`` with seeded random weights that give realistic, spread-out outputs, in eval mode.

    Without calibration random ResNet features are huge (every score saturates at 1.0 for one class)
    or the heads are near-uniform (all scores tie): both would make the comparison vacuous. So every
    BatchNorm gets statistics and affine parameters of its own (``NormJitter``) and each prediction
    layer is rescaled to the measured size of its input. ``extra_pass`` calibrates more layers after
    the box predictor (``("roi_heads.mask_predictor", {"roi_heads.mask_predictor.mask_fcn_logits": 3.0})``).
    """
    torch.manual_seed(0)
    builder = getattr(torchvision.models.detection, name)
    model = builder(weights=None, weights_backbone=None, num_classes=91, **SMALL_BUILD).eval()
    with NormJitter(model):
        for last, spreads in (*CALIBRATION_PASSES, *([extra_pass] if extra_pass else [])):
            inputs = _layer_inputs(model, list(spreads), last)
            for layer_name, spread in spreads.items():
                _calibrate(model.get_submodule(layer_name), inputs[layer_name], spread)
    if not name.endswith("_v2"):
        freeze_trunk_norms(model)
    return model


def freeze_trunk_norms(model: nn.Module) -> None:
    """The trunk torchvision's v1 detectors have when trained: FrozenBatchNorm2d with the same statistics.

    Given weights their builders use FrozenBatchNorm2d in the trunk (plain BatchNorm2d only without
    weights), so that is what their published files hold and what detkit's import builds; its
    ``x * scale + shift`` rounds differently from BatchNorm2d's ``(x - mean) / std``.
    """
    body = model.get_submodule("backbone.body")
    for parent in list(body.modules()):
        for child_name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm2d):
                frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
                frozen.load_state_dict({k: v for k, v in child.state_dict().items() if k != "num_batches_tracked"})
                setattr(parent, child_name, frozen)


class NormJitter:
    """While active, each BatchNorm2d's running statistics are set from its first non-empty input, then
    jittered, and its affine parameters drawn at random, so every norm changes what flows through it.

    Statistics from the actual input keep the signal alive through the trunk (arbitrary ones let it
    die in the first blocks, and a wrong early layer would go unnoticed); the jitter (means moved by
    0.1 std, variances scaled by 0.5..1.5, weights 0.5..1.5) makes a norm that is skipped, or given
    another layer's statistics, change the detections. On exit every norm must have been set.
    """

    def __init__(self, model: nn.Module) -> None:
        self.norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        assert self.norms, "every torchvision detector here has BatchNorm layers (weights=None builds nn.BatchNorm2d)"
        self.generator = torch.Generator().manual_seed(1)
        self.pending = set(self.norms)

    def __enter__(self) -> NormJitter:
        self.hooks = [norm.register_forward_pre_hook(self._set) for norm in self.norms]
        return self

    def __exit__(self, *exc: object) -> None:
        for hook in self.hooks:
            hook.remove()
        assert not self.pending, f"{len(self.pending)} norm layers never saw an input"

    @torch.no_grad()
    def _set(self, norm: nn.Module, inputs: tuple[torch.Tensor]) -> None:
        x = inputs[0]
        if norm not in self.pending or x.numel() == 0:
            return
        self.pending.discard(norm)
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
        channels, gen = len(mean), self.generator
        norm.running_mean.copy_(mean + 0.1 * var.sqrt() * torch.randn(channels, generator=gen))
        norm.running_var.copy_(var * (0.5 + torch.rand(channels, generator=gen)) + 1e-3)
        norm.weight.copy_(0.5 + torch.rand(channels, generator=gen))
        norm.bias.copy_(0.1 * torch.randn(channels, generator=gen))


class _Seen(Exception):
    """Raised once a calibration pass has seen what it needs: the rest of the forward pass is skipped."""


def _layer_inputs(model: nn.Module, names: list[str], last: str) -> dict[str, torch.Tensor]:
    """What each named layer sees on the test images in one pass (to the end of module ``last``), as
    ``[samples, fan_in]`` rows (a conv's pixels are its samples)."""
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in names}

    def stop(*_: object) -> None:
        raise _Seen

    handles = [
        model.get_submodule(name).register_forward_hook(
            lambda _m, inputs, _out, name=name: seen[name].append(inputs[0].detach())
        )
        for name in names
    ]
    handles.append(model.get_submodule(last).register_forward_hook(stop))
    with torch.no_grad(), contextlib.suppress(_Seen):
        model(images())
    for handle in handles:
        handle.remove()
    return {name: torch.cat([_rows(x) for x in xs]) for name, xs in seen.items()}


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]) if x.ndim == 4 else x


def _calibrate(layer: nn.Module, inputs: torch.Tensor, spread: float) -> None:
    """Random weights, then each output unit centred and scaled to ``spread`` across the samples."""
    with torch.no_grad():
        weight = torch.randn(layer.weight.shape[0], inputs.shape[1])
        outputs = inputs @ weight.T
        scale = spread / outputs.std(dim=0).clamp(min=1e-12)
        layer.weight.copy_((weight * scale[:, None]).view_as(layer.weight))
        layer.bias.copy_(-outputs.mean(dim=0) * scale + torch.randn(len(scale)) * spread / 4)


def detkit_from_file(reference: nn.Module, name: str, folder: Path) -> nn.Module:
    """``reference``'s state dict saved under torchvision's builder name and loaded as ``detkit detect`` loads it."""
    path = folder / f"{name}.pth"  # the name carries the 320 px variant, as the published file's does
    torch.save(reference.state_dict(), path)
    checkpoint = load_checkpoint(path)
    checkpoint = replace(checkpoint, config=apply_overrides(checkpoint.config, SMALL_IMAGES))
    return model_from_checkpoint(checkpoint).eval()


def images() -> list[torch.Tensor]:
    """Two smooth random images of different sizes and aspect ratios (so padding is exercised)."""
    generator = torch.Generator().manual_seed(1)

    def smooth(h, w):
        return nn.functional.interpolate(
            torch.rand(1, 3, h // 8, w // 8, generator=generator), size=(h, w), mode="bilinear"
        )[0]

    return [smooth(240, 320), smooth(304, 200)]


@dataclass
class Differences:
    """The largest disagreements over every detection of every image (``min_mask_iou`` with masks)."""

    box_px: float = 0.0
    score: float = 0.0
    min_mask_iou: float | None = None

    def add(self, box_px: float, score: float) -> None:
        self.box_px, self.score = max(self.box_px, box_px), max(self.score, score)

    def report(self, name: str) -> str:
        masks = "" if self.min_mask_iou is None else f", min mask IoU {self.min_mask_iou:.4f}"
        return f"{name}: max box difference {self.box_px:.2e} px, max score difference {self.score:.2e}{masks}"


def assert_same_detections(got, want: dict[str, torch.Tensor], differences: Differences) -> None:
    """detkit ``Detections`` equal to one image's torchvision output (boxes, labels, scores)."""
    assert len(want["boxes"]) > 10, "the test needs varied detections"
    assert len(want["labels"].unique()) > 5, "the test needs varied classes"
    assert len(got) == len(want["boxes"])
    assert torch.equal(got.labels + 1, want["labels"])  # detkit label k is torchvision's k + 1
    torch.testing.assert_close(got.boxes, want["boxes"], atol=1e-3, rtol=0)
    torch.testing.assert_close(got.scores, want["scores"], atol=1e-4, rtol=0)
    differences.add((got.boxes - want["boxes"]).abs().max().item(), (got.scores - want["scores"]).abs().max().item())


def compare(reference: nn.Module, model: nn.Module) -> tuple[list, list]:
    """(torchvision's outputs, detkit's detections) on the test images."""
    inputs = images()
    with torch.no_grad():
        return reference(inputs), model(inputs).detections


@pytest.mark.parametrize("name", FASTER_RCNNS)
def test_same_detections_as_torchvision(name, tmp_path):
    reference = calibrated(name)
    model = detkit_from_file(reference, name, tmp_path)
    expected, actual = compare(reference, model)
    differences = Differences()
    for want, got in zip(expected, actual):
        assert_same_detections(got, want, differences)
    print(differences.report(name))


def test_the_v2_checkpoint_config_is_torchvisions_architecture(tmp_path):
    """What detkit builds for fasterrcnn_resnet50_fpn_v2: torchvision's parameters (less its background
    rows) and, on one image, its arithmetic (the benchmark's GFLOPs) to within the background rows."""
    torch.manual_seed(0)
    reference = torchvision.models.detection.fasterrcnn_resnet50_fpn_v2(
        weights=None, weights_backbone=None, num_classes=91, min_size=96, max_size=128, rpn_post_nms_top_n_test=50
    ).eval()
    path = tmp_path / "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth"
    torch.save(reference.state_dict(), path)
    checkpoint = load_checkpoint(path)
    model_cfg = checkpoint.config.model
    backbone = model_cfg.backbone
    assert (backbone.norm, backbone.fpn_norm, backbone.trainable_stages) == ("bn", "bn", 3)
    assert model_cfg.rpn.head_convs == 2
    assert (model_cfg.roi_heads.box_head_convs, model_cfg.roi_heads.box_head_norm) == (4, "bn")
    small = ["model.transform.min_size=[96]", "model.transform.max_size=128", "model.rpn.post_nms_topk_test=50"]
    checkpoint = replace(checkpoint, config=apply_overrides(checkpoint.config, small))
    model = model_from_checkpoint(checkpoint).eval()
    representation = 1024
    assert parameter_count(model) == parameter_count(reference) - 4 * (representation + 1)
    image = [torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(0))]
    ours, theirs = counted_flops([lambda: model(image)]), counted_flops([lambda: reference(image)])
    assert ours > 1e9 and abs(ours - theirs) / theirs < 1e-3


def test_torchvision_state_dict_file_loads_with_coco_names(tmp_path):
    """A torchvision .pth (as a user downloads it) becomes a detkit checkpoint with COCO class names."""
    torch.manual_seed(0)
    reference = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=91
    )
    path = tmp_path / "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth"
    torch.save(reference.state_dict(), path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.pipeline == "faster_rcnn"
    assert checkpoint.class_names[0] == "person" and len(checkpoint.class_names) == 90
    assert checkpoint.category_ids[:3] == [1, 2, 3]
    assert checkpoint.config.model.backbone.norm == "frozen_bn"
    model_from_checkpoint(checkpoint)  # loads strictly


def test_old_torchvision_key_layout_is_accepted():
    """The published COCO .pth files predate Conv2dNormActivation: rpn.head.conv.weight, fpn.inner_blocks.0.weight."""
    torch.manual_seed(0)
    state = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None
    ).state_dict()
    old = {}
    for key, value in state.items():
        key = key.replace("rpn.head.conv.0.0.", "rpn.head.conv.")
        key = key.replace(".inner_blocks.0.0.", ".inner_blocks.0.").replace(".inner_blocks.1.0.", ".inner_blocks.1.")
        key = key.replace(".layer_blocks.0.0.", ".layer_blocks.0.").replace(".layer_blocks.1.0.", ".layer_blocks.1.")
        old[key] = value
    assert old.keys() != state.keys()
    assert (
        convert_torchvision_detector(old, "mobilenet_v3_large_fpn").keys()
        == convert_torchvision_detector(state, "mobilenet_v3_large_fpn").keys()
    )
