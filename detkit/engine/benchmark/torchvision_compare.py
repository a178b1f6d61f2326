"""detkit against torchvision: the same architecture with the same weights, input, device and precision.

Both models hold the same seeded random weights (torchvision's state dict converted into detkit's,
loaded strictly), so they compute the same boxes and every difference in time is the
implementation's. Both get the full-load thresholds (RPN NMS off, score threshold 0: 1000 RoIs and
100 detections per image), the load of a trained model on a busy image. Runs alternate (detkit,
torchvision, detkit, ...) so drift in machine load hits both equally; medians are compared.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace

import torch
from torch import nn

from detkit.config import TransformConfig
from detkit.engine.benchmark.timing import time_models
from detkit.engine.precision import Precision
from detkit.errors import ConfigError
from detkit.modeling.fuse import fold_batch_norms
from detkit.modeling.torchvision_import import convert_torchvision_detector, torchvision_model_config
from detkit.pipelines import PIPELINES

# (pipeline, torchvision architecture) -> torchvision's builder of the same model (PipelineSpec.torchvision).
TORCHVISION_BUILDERS = {
    (name, arch): builder for name, spec in PIPELINES.items() for arch, builder in spec.torchvision.items()
}
COMPARABLE_PIPELINES = tuple(name for name, spec in PIPELINES.items() if spec.torchvision)
# compare_with_torchvision's defaults (both immutable): float32 on the CPU
CPU = torch.device("cpu")
FLOAT32 = Precision()


@dataclass
class ComparisonResult:
    pipeline: str
    arch: str
    image_size: tuple[int, int]
    device: str
    precision: str
    detkit_ms: list[float]
    torchvision_ms: list[float]

    @property
    def detkit_median_ms(self) -> float:
        return statistics.median(self.detkit_ms)

    @property
    def torchvision_median_ms(self) -> float:
        return statistics.median(self.torchvision_ms)

    @property
    def ratio(self) -> float:
        """Median detkit time over median torchvision time (below 1.0: detkit is faster)."""
        return self.detkit_median_ms / self.torchvision_median_ms


def paired_models(pipeline: str, arch: str, image_size: tuple[int, int], seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """(detkit, torchvision) models of ``pipeline`` with architecture ``arch`` holding the same seeded
    random weights, in eval mode, both resizing nothing: the image's shorter side stays ``min(image_size)``."""
    import torchvision

    if (pipeline, arch) not in TORCHVISION_BUILDERS:
        known = ", ".join(f"{p} {a}" for p, a in TORCHVISION_BUILDERS)
        raise ConfigError(f"--compare torchvision: no torchvision model for {pipeline} {arch}; available: {known}")
    short, long = min(image_size), max(image_size)
    torch.manual_seed(seed)
    reference = getattr(torchvision.models.detection, TORCHVISION_BUILDERS[pipeline, arch])(
        weights=None,
        weights_backbone=None,
        num_classes=91,
        min_size=short,
        max_size=long,
        rpn_nms_thresh=1.0,
        box_score_thresh=0.0,
    ).eval()
    cfg = torchvision_model_config(arch, num_classes=90, masks=PIPELINES[pipeline].masks)
    cfg = replace(
        cfg,
        backbone=replace(cfg.backbone, norm="bn"),
        transform=TransformConfig(min_size=(short,), max_size=long),
        rpn=replace(cfg.rpn, nms_thresh=1.0),
        roi_heads=replace(cfg.roi_heads, score_thresh=0.0),
    )
    model = PIPELINES[cfg.pipeline].build(cfg)
    model.load_state_dict(convert_torchvision_detector(reference.state_dict(), arch), strict=True)
    return model.eval(), reference


def compare_with_torchvision(
    pipeline: str = "faster_rcnn",
    arch: str = "resnet50_fpn",
    image_size: tuple[int, int] = (480, 640),
    *,
    images: list[torch.Tensor],
    runs: int = 10,
    warmup: int = 2,
    device: torch.device = CPU,
    precision: Precision = FLOAT32,
    fold_norms: bool = False,
) -> ComparisonResult:
    """Time ``pipeline`` in detkit and in torchvision on ``images`` (one batch), alternating; with
    ``fold_norms`` both have their batch norms folded into their convs (the same pass finds both's)."""
    models = paired_models(pipeline, arch, image_size)
    if fold_norms:
        for model in models:
            fold_batch_norms(model)
    model, reference = (precision.prepare(m.to(device)) for m in models)
    with precision.autocast(device):
        times = time_models({"detkit": model, "torchvision": reference}, images, runs, warmup, device)
    return ComparisonResult(
        pipeline, arch, image_size, str(device), precision.name, times["detkit"], times["torchvision"]
    )
