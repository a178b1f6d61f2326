"""detkit's Faster R-CNN given torchvision's weights must produce torchvision's detections."""

from dataclasses import replace

import pytest
import torch
import torchvision
from torch import nn

from detkit.checkpoint import load_checkpoint, model_from_checkpoint
from detkit.config import TransformConfig
from detkit.modeling.torchvision_import import convert_torchvision_detector, torchvision_model_config
from detkit.pipelines import PIPELINES

BUILDERS = {
    "resnet50_fpn": torchvision.models.detection.fasterrcnn_resnet50_fpn,
    "mobilenet_v3_large_fpn": torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn,
}
MIN_SIZE, MAX_SIZE = 320, 480  # small images keep the test fast; the arithmetic is size-independent


def torchvision_detector(arch: str) -> nn.Module:
    """torchvision's model with seeded random weights whose heads give realistic, spread-out outputs.

    With default initialisation random ResNet features are huge (every score saturates at 1.0 for
    one class) or the heads are near-uniform (all scores tie): both would make the comparison
    vacuous. So each prediction layer is rescaled to the measured size of its input.
    """
    return calibrated(BUILDERS[arch])


def calibrated(builder, extra_spread: dict[str, float] | None = None) -> nn.Module:
    """``builder``'s seeded random model, each prediction layer rescaled to a chosen output spread.

    ``extra_spread`` names more layers (``"roi_heads.mask_predictor.mask_fcn_logits"``) and their spread.
    """
    torch.manual_seed(0)
    model = builder(weights=None, weights_backbone=None, num_classes=91, min_size=MIN_SIZE, max_size=MAX_SIZE).eval()
    head_spread = {  # layer -> standard deviation of its outputs
        "rpn.head.cls_logits": 2.0,
        "rpn.head.bbox_pred": 0.3,
        "roi_heads.box_predictor.cls_score": 3.0,
        "roi_heads.box_predictor.bbox_pred": 1.0,
        **(extra_spread or {}),
    }
    for name, spread in head_spread.items():
        layer = model.get_submodule(name)
        _calibrate(layer, _layer_inputs(model, layer), spread)
    return model


def _layer_inputs(model: nn.Module, layer: nn.Module) -> torch.Tensor:
    """What ``layer`` sees on the test images, as ``[samples, fan_in]`` rows (conv pixels are samples)."""
    seen = []
    handle = layer.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].detach()))
    with torch.no_grad():
        model(images())
    handle.remove()
    rows = [x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]) if x.ndim == 4 else x for x in seen]
    return torch.cat(rows)


def _calibrate(layer: nn.Module, inputs: torch.Tensor, spread: float) -> None:
    """Random weights, then each output unit centred and scaled to ``spread`` across the samples."""
    with torch.no_grad():
        weight = torch.randn(layer.weight.shape[0], inputs.shape[1])
        outputs = inputs @ weight.T
        scale = spread / outputs.std(dim=0).clamp(min=1e-12)
        layer.weight.copy_((weight * scale[:, None]).view_as(layer.weight))
        layer.bias.copy_(-outputs.mean(dim=0) * scale + torch.randn(len(scale)) * spread / 4)


def detkit_detector(arch: str, state_dict: dict) -> nn.Module:
    cfg = torchvision_model_config(arch, num_classes=90)
    # torchvision builds nn.BatchNorm2d when given no pretrained weights; detkit must compute the same.
    cfg = replace(
        cfg,
        backbone=replace(cfg.backbone, norm="bn"),
        transform=TransformConfig(min_size=(MIN_SIZE,), max_size=MAX_SIZE),
    )
    model = PIPELINES["faster_rcnn"].build(cfg)
    model.load_state_dict(convert_torchvision_detector(state_dict, arch), strict=True)
    return model.eval()


def images():
    """Two smooth random images of different sizes and aspect ratios (so padding is exercised)."""
    generator = torch.Generator().manual_seed(1)

    def smooth(h, w):
        return nn.functional.interpolate(
            torch.rand(1, 3, h // 8, w // 8, generator=generator), size=(h, w), mode="bilinear"
        )[0]

    return [smooth(240, 320), smooth(304, 200)]


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_same_detections_as_torchvision(arch):
    reference_model = torchvision_detector(arch)
    model = detkit_detector(arch, reference_model.state_dict())
    inputs = images()
    with torch.no_grad():
        expected = reference_model(inputs)
        actual = model(inputs).detections
    for want, got in zip(expected, actual):
        assert len(want["labels"].unique()) > 5, "the test needs varied classes"
        assert_same_detections(got, want)


def assert_same_detections(got, want: dict[str, torch.Tensor]) -> None:
    """detkit ``Detections`` equal to one image's torchvision output (boxes, labels, scores)."""
    assert len(want["boxes"]) > 10, "the test needs varied detections"
    assert len(got) == len(want["boxes"])
    torch.testing.assert_close(got.boxes, want["boxes"], atol=1e-3, rtol=0)
    assert torch.equal(got.labels + 1, want["labels"])  # detkit label k is torchvision's k + 1
    torch.testing.assert_close(got.scores, want["scores"], atol=1e-4, rtol=0)


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
    state = torchvision_detector("mobilenet_v3_large_fpn").state_dict()
    old = {}
    for key, value in state.items():
        key = key.replace("rpn.head.conv.0.0.", "rpn.head.conv.")
        key = key.replace(".inner_blocks.0.0.", ".inner_blocks.0.").replace(".inner_blocks.1.0.", ".inner_blocks.1.")
        key = key.replace(".layer_blocks.0.0.", ".layer_blocks.0.").replace(".layer_blocks.1.0.", ".layer_blocks.1.")
        old[key] = value
    assert (
        convert_torchvision_detector(old, "mobilenet_v3_large_fpn").keys()
        == convert_torchvision_detector(state, "mobilenet_v3_large_fpn").keys()
    )
