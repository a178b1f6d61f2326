"""detkit's ``yolo`` against Ultralytics' YOLOv8n, when the user has Ultralytics installed.

Ultralytics is AGPL-3.0: never a detkit dependency. It is imported here only, and only when
``--compare ultralytics`` asks for it. What is controlled, since Ultralytics' own predictor would
decide it silently:

- threads: both run in this process, at the threads the command set (Ultralytics' predictor would
  switch to ``cpu_count - 1``);
- Conv+BN folding: both folded (Ultralytics fuses in place when it predicts; detkit folds its own),
  both channels-last;
- input: the same ``[3, H, W]`` images, each scaled so its longer side is ``side`` (detkit's
  ``model.yolo.image_size``) and padded to a multiple of 32: rectangular inference, as both
  libraries' own prediction does (a 4:3 image runs at 480x640, not 640x640);
- the work after the network: score threshold 0 in both, so every candidate reaches NMS (random
  weights score below any real threshold), each library's own candidate caps and NMS; boxes are
  mapped back to the image in both.

Both models are built from their configs with seeded random weights and 80 classes; calls alternate
(detkit, Ultralytics, detkit, ...) so drift in machine load falls on both. Medians are compared.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.config import ExperimentConfig
from detkit.engine.benchmark.timing import time_models
from detkit.errors import ConfigError
from detkit.modeling.fuse import fold_batch_norms
from detkit.pipelines import PIPELINES, preset

PEER_CONFIG = "yolov8n.yaml"  # matched to detkit's `yolo` preset: 3.16 M params, 8.7 GFLOPs at 640 (2.75 M, 7.8)
NUM_CLASSES = 80
NMS_IOU = 0.7  # Ultralytics' predict default
MAX_DETECTIONS = 300  # Ultralytics' predict default
PAD_VALUE = 114 / 255  # Ultralytics' letterbox grey
STRIDE = 32  # both networks' coarsest stride: what the letterbox pads up to


@dataclass
class UltralyticsComparison:
    """Median ms per image of detkit's yolo and the Ultralytics peer on the same images, alternated."""

    peer: str
    side: int
    threads: int
    ultralytics_version: str
    detkit_params: int
    peer_params: int
    detkit_ms: list[float]
    peer_ms: list[float]

    @property
    def detkit_median_ms(self) -> float:
        return statistics.median(self.detkit_ms)

    @property
    def peer_median_ms(self) -> float:
        return statistics.median(self.peer_ms)

    @property
    def ratio(self) -> float:
        """detkit's median over the peer's (below 1.0: detkit is faster)."""
        return self.detkit_median_ms / self.peer_median_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "peer": self.peer,
            "side": self.side,
            "threads": self.threads,
            "ultralytics": self.ultralytics_version,
            "detkit_params": self.detkit_params,
            "peer_params": self.peer_params,
            "detkit_ms": self.detkit_ms,
            "peer_ms": self.peer_ms,
            "detkit_median_ms": self.detkit_median_ms,
            "peer_median_ms": self.peer_median_ms,
            "ratio": self.ratio,
        }


def import_ultralytics() -> Any:
    """The ``ultralytics`` module; ``ConfigError`` saying how to get it when it is not installed."""
    try:
        import ultralytics
    except ImportError as err:
        raise ConfigError(
            "--compare ultralytics needs Ultralytics, which is not installed: pip install ultralytics "
            "(AGPL-3.0, so never a detkit dependency; a separate virtual environment keeps it apart)"
        ) from err
    return ultralytics


def letterbox(image: Tensor, side: int, stride: int = STRIDE) -> tuple[Tensor, float, tuple[int, int]]:
    """``image`` ([3, H, W], 0-1) scaled so its longer side is ``side`` and padded, centred, to the next
    multiple of ``stride`` (Ultralytics' rectangular ``LetterBox(auto=True)``, the frame detkit's own
    inference uses too); returns the ``[1, 3, H', W']`` batch, the scale and the (left, top) padding."""
    height, width = image.shape[-2:]
    scale = side / max(height, width)
    new_h, new_w = round(height * scale), round(width * scale)
    resized = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False)
    pad_h, pad_w = -new_h % stride, -new_w % stride
    left, top = pad_w // 2, pad_h // 2
    padded = F.pad(resized, (left, pad_w - left, top, pad_h - top), value=PAD_VALUE)
    return padded, scale, (left, top)


class UltralyticsPredictor(nn.Module):
    """Ultralytics' prediction path on a list of ``[3, H, W]`` images: letterbox, network,
    ``non_max_suppression``, boxes back to each image (``[N, 6]``: xyxy pixels of the image, score, class)."""

    def __init__(self, network: nn.Module, side: int) -> None:
        super().__init__()
        from ultralytics.utils.nms import non_max_suppression

        self.network, self.side, self._nms = network, side, non_max_suppression

    def forward(self, images: list[Tensor]) -> list[Tensor]:
        kept = []
        for image in images:
            batch, scale, (left, top) = letterbox(image, self.side)
            predictions = self.network(batch.contiguous(memory_format=torch.channels_last))
            detections = self._nms(predictions, conf_thres=0.0, iou_thres=NMS_IOU, max_det=MAX_DETECTIONS)[0]
            boxes = detections[:, :4]
            boxes[:, 0::2] = ((boxes[:, 0::2] - left) / scale).clamp(0, image.shape[-1])
            boxes[:, 1::2] = ((boxes[:, 1::2] - top) / scale).clamp(0, image.shape[-2])
            kept.append(detections)
        return kept


def matched_yolo_config(side: int, score_thresh: float) -> ExperimentConfig:
    """detkit's ``yolo`` preset as YOLOv8n's twin: 80 classes, no ImageNet weights, input side ``side``."""
    config = preset("yolo")
    model = config.model
    return replace(
        config,
        model=replace(
            model,
            num_classes=NUM_CLASSES,
            backbone=replace(model.backbone, pretrained=False),
            yolo=replace(model.yolo, image_size=side, score_thresh=score_thresh),
        ),
    )


def paired_yolo_models(side: int, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """(detkit ``yolo`` preset, Ultralytics YOLOv8n) with seeded random weights, folded, in eval mode."""
    import_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(seed)
    mine = PIPELINES["yolo"].build(matched_yolo_config(side, score_thresh=0.0).model).eval()
    fold_batch_norms(mine)
    mine = mine.to(memory_format=torch.channels_last)
    torch.manual_seed(seed)
    network = DetectionModel(PEER_CONFIG, nc=NUM_CLASSES, verbose=False).eval().fuse(verbose=False)
    return mine, UltralyticsPredictor(network.to(memory_format=torch.channels_last), side).eval()


def predict_folder(
    folder: Path,
    out: Path,
    *,
    side: int,
    score_thresh: float,
    batch_size: int,
    save_images: bool,
    threads: int,
    device: str = "cpu",
    seed: int = 0,
) -> int:
    """Ultralytics' own ``predict`` over ``folder`` with a seeded random YOLOv8n, annotated images into
    ``out`` when ``save_images`` (as ``yolo predict`` does), on ``device`` and ``threads`` CPU threads; returns the
    number of detections. Building the model is inside, as loading the checkpoint is in ``detkit detect``."""
    import_ultralytics()
    from ultralytics import YOLO
    from ultralytics.utils import LOGGER, torch_utils

    torch_utils.NUM_THREADS = threads  # its select_device would set cpu_count - 1 threads
    torch.manual_seed(seed)
    model = YOLO(PEER_CONFIG, task="detect")
    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)  # its "Results saved to ..." line would break into the progress display
    try:
        results = model.predict(
            source=str(folder),
            imgsz=side,
            conf=score_thresh,
            iou=NMS_IOU,
            max_det=MAX_DETECTIONS,
            batch=batch_size,
            device=device.removeprefix("cuda:") if device.startswith("cuda:") else device,  # its "0" for cuda:0
            save=save_images,
            project=str(out.parent),
            name=out.name,
            exist_ok=True,
            verbose=False,
            stream=True,  # one result at a time, as detkit writes each image when it is done
        )
        return sum(len(result.boxes) for result in results)
    finally:
        LOGGER.setLevel(level)


def compare_with_ultralytics(
    images: list[Tensor], side: int = 640, *, runs: int = 10, warmup: int = 2
) -> UltralyticsComparison:
    """Time detkit's yolo and YOLOv8n on ``images`` (CPU, float32, this process's threads), alternating."""
    ultralytics = import_ultralytics()
    mine, peer = paired_yolo_models(side)
    with torch.inference_mode():
        times = time_models({"detkit": mine, "peer": peer}, images, runs, warmup, torch.device("cpu"))
    count = max(len(images), 1)
    return UltralyticsComparison(
        peer=PEER_CONFIG.removesuffix(".yaml"),
        side=side,
        threads=torch.get_num_threads(),
        ultralytics_version=ultralytics.__version__,
        detkit_params=sum(p.numel() for p in mine.parameters()),
        peer_params=sum(p.numel() for p in peer.parameters()),
        detkit_ms=[ms / count for ms in times["detkit"]],
        peer_ms=[ms / count for ms in times["peer"]],
    )
