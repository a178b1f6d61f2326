"""Timing detectors: any set of models on the same input (``time_models``, ``preset_model``), and
detkit against torchvision with the same weights, input and device (``compare_with_torchvision``).

Runs alternate (detkit, torchvision, detkit, ...) so drift in machine load hits both equally;
the median of each side is reported. CUDA timings synchronize around every measured call.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from detkit.config import TransformConfig
from detkit.config.overrides import apply_overrides
from detkit.config.presets import preset
from detkit.modeling.torchvision_import import convert_torchvision_detector, torchvision_model_config
from detkit.pipelines import PIPELINES

TORCHVISION_BUILDERS = {
    "resnet50_fpn": "fasterrcnn_resnet50_fpn",
    "mobilenet_v3_large_fpn": "fasterrcnn_mobilenet_v3_large_fpn",
}
TORCHVISION_MASK_BUILDERS = {"resnet50_fpn": "maskrcnn_resnet50_fpn"}


@dataclass
class ComparisonResult:
    arch: str
    image_size: tuple[int, int]
    device: str
    detkit_ms: list[float]
    torchvision_ms: list[float]

    @property
    def ratio(self) -> float:
        """Median detkit time over median torchvision time (below 1.0: detkit is faster)."""
        return statistics.median(self.detkit_ms) / statistics.median(self.torchvision_ms)


def paired_models(arch: str, image_size: tuple[int, int], seed: int = 0, masks: bool = False) -> tuple[nn.Module, nn.Module]:
    """(detkit, torchvision) Faster R-CNNs (Mask R-CNNs with ``masks``) holding the same seeded random weights, in eval mode.

    Both resize so the image's shorter side stays ``min(image_size)`` pixels: no resampling cost
    differs between them and the measured work is the detector's.
    """
    import torchvision

    short, long = min(image_size), max(image_size)
    torch.manual_seed(seed)
    builder = TORCHVISION_MASK_BUILDERS[arch] if masks else TORCHVISION_BUILDERS[arch]
    reference = getattr(torchvision.models.detection, builder)(
        weights=None, weights_backbone=None, num_classes=91, min_size=short, max_size=long
    ).eval()
    cfg = torchvision_model_config(arch, num_classes=90, masks=masks)
    cfg = replace(cfg, backbone=replace(cfg.backbone, norm="bn"), transform=TransformConfig(min_size=(short,), max_size=long))
    model = PIPELINES[cfg.pipeline](cfg)
    model.load_state_dict(convert_torchvision_detector(reference.state_dict(), arch), strict=True)
    return model.eval(), reference


@torch.inference_mode()
def compare_with_torchvision(
    arch: str = "resnet50_fpn", image_size: tuple[int, int] = (480, 640), runs: int = 10, warmup: int = 2,
    device: str = "cpu", masks: bool = False,
) -> ComparisonResult:
    torch_device = torch.device(device)
    model, reference = (m.to(torch_device) for m in paired_models(arch, image_size, masks=masks))
    images = random_images(image_size, 1, torch_device)
    times = time_models({"detkit": model, "torchvision": reference}, images, runs, warmup, torch_device)
    return ComparisonResult(arch, image_size, str(torch_device), times["detkit"], times["torchvision"])


def preset_model(preset_name: str, num_classes: int = 80, overrides: list[str] | tuple[str, ...] = ()) -> nn.Module:
    """The model of a preset (with ``key=value`` overrides) holding seeded random weights, in eval mode:
    what timing needs, with no ImageNet file to load."""
    cfg = apply_overrides(preset(preset_name), ["model.backbone.pretrained=false", *overrides])
    torch.manual_seed(0)
    return PIPELINES[cfg.model.pipeline](replace(cfg.model, num_classes=num_classes)).eval()


def random_images(image_size: tuple[int, int], count: int, device: torch.device, seed: int = 0) -> list[torch.Tensor]:
    """``count`` seeded uniform-noise ``[3, H, W]`` images in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(3, *image_size, generator=generator).to(device) for _ in range(count)]


@torch.inference_mode()
def time_models(
    models: dict[str, nn.Module], images: list[torch.Tensor], runs: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Milliseconds of each model's forward pass over ``images`` (one batch), ``runs`` times each.

    The models take turns (a, b, a, b, ...) so drift in machine load hits them equally.
    """
    calls = {name: (lambda model=model: model(images)) for name, model in models.items()}
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(runs):
        for name, call in calls.items():
            times[name].append(_time_ms(call, device))
    return times


def _time_ms(call: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1000
