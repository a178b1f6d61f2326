"""Timing detkit against torchvision with the same weights, input and device.

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
    image = torch.rand(3, *image_size, generator=torch.Generator().manual_seed(0)).to(torch_device)
    run_detkit = lambda: model([image])
    run_torchvision = lambda: reference([image])
    for _ in range(warmup):
        run_detkit(), run_torchvision()
    detkit_ms, torchvision_ms = [], []
    for _ in range(runs):
        detkit_ms.append(_time_ms(run_detkit, torch_device))
        torchvision_ms.append(_time_ms(run_torchvision, torch_device))
    return ComparisonResult(arch, image_size, str(torch_device), detkit_ms, torchvision_ms)


def _time_ms(call: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1000
