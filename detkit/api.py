"""detkit from Python: ``detector = detkit.load(weights)``, then ``detector(images)``.

::

    import detkit

    detector = detkit.load("fasterrcnn_mobilenet_v3_large_320_fpn", score_thresh=0.5)  # or "runs/x/best.pt"
    for det in detector(["street.jpg", frame_bgr], bgr=[False, True]):
        print(list(zip(det.names, det.scores.tolist(), det.boxes.tolist())))

``weights`` is anything ``--weights`` takes: a checkpoint written by ``detkit train``, a torchvision
detection ``.pth``, a pretrained name from ``detkit models`` (downloaded once), or None for the last
``detkit train`` run. An image is a file path, a ``uint8 [H, W, 3]`` (or ``[H, W]`` grey) numpy array
in RGB order unless ``bgr`` says it is OpenCV's BGR, or a ``[3, H, W]`` tensor (float in ``[0, 1]``
or uint8), RGB. Each image's ``NamedDetections`` are in that image's own pixel frame (xyxy boxes,
labels ``0..K-1``), on the CPU, with the class names.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from detkit.data.images import image_to_tensor, read_image_rgb
from detkit.engine.device import resolve_device
from detkit.engine.predict import load_detector
from detkit.errors import DataError
from detkit.structures import Detections

Image = str | os.PathLike[str] | np.ndarray | Tensor


@dataclass
class NamedDetections(Detections):
    """``Detections`` that know their classes' names: ``names[i]`` is the class of detection ``i``."""

    class_names: Sequence[str] = field(default_factory=tuple)

    @property
    def names(self) -> list[str]:
        return [self.class_names[int(label)] for label in self.labels]


class Detector:
    """A loaded detector, in eval mode on its device, readied for inference only (batch norms folded into
    the convs, channels-last weights: ``engine.predict.prepare_for_inference``). Call it on one image or a
    list of them."""

    def __init__(self, model: nn.Module, class_names: list[str], device: torch.device, source: str) -> None:
        self.model, self.class_names, self.device, self.source = model, list(class_names), device, source

    def __repr__(self) -> str:
        return f"Detector({self.source!r}, {len(self.class_names)} classes, device={self.device})"

    def to(self, device: str | torch.device) -> Detector:
        """Move the model to ``device`` ("cpu", "cuda", "cuda:1", "auto"); returns the detector."""
        self.device = resolve_device(str(device))
        self.model.to(self.device)
        return self

    @torch.inference_mode()
    def __call__(
        self, images: Image | Sequence[Image], *, bgr: bool | Sequence[bool] = False, batch_size: int = 4
    ) -> NamedDetections | list[NamedDetections]:
        """Detections of one image (``NamedDetections``) or of each image of a list (a list, in order).

        ``bgr``: the numpy arrays are in OpenCV's BGR order (one flag for all, or one per image);
        paths and tensors are always RGB. ``batch_size`` images go through the model at once.
        """
        single = not isinstance(images, (list, tuple))
        items: list[Image] = list(images) if isinstance(images, (list, tuple)) else [images]  # type: ignore[list-item]
        flags = [bgr] * len(items) if isinstance(bgr, bool) else list(bgr)
        if len(flags) != len(items):
            raise ValueError(f"bgr has {len(flags)} flags for {len(items)} images")
        tensors = [_as_tensor(item, flag, index) for index, (item, flag) in enumerate(zip(items, flags))]
        results: list[NamedDetections] = []
        for start in range(0, len(tensors), batch_size):
            output = self.model([t.to(self.device) for t in tensors[start : start + batch_size]])
            results.extend(self._named(d.to("cpu")) for d in output.detections)
        return results[0] if single else results

    def _named(self, detections: Detections) -> NamedDetections:
        return NamedDetections(
            detections.boxes, detections.scores, detections.labels, detections.masks, class_names=self.class_names
        )


def load(
    weights: str | os.PathLike[str] | None = None,
    *,
    device: str = "auto",
    score_thresh: float | None = None,
    overrides: Sequence[str] = (),
) -> Detector:
    """The detector in ``weights`` (see the module docstring) on ``device`` ("auto": CUDA when there is
    one). ``score_thresh`` drops weaker detections (default: the checkpoint's); ``overrides`` are test-time
    ``key=value`` settings, as ``--set`` takes them."""
    resolved = resolve_device(device)
    model, checkpoint = load_detector(
        None if weights is None else Path(weights),
        resolved,
        score_thresh=score_thresh,
        overrides=list(overrides),
        for_inference=True,
    )
    return Detector(model, checkpoint.class_names, resolved, checkpoint.source)


def _as_tensor(image: Image, bgr: bool, index: int) -> Tensor:
    """One input image as the model's ``float32 [3, H, W]`` RGB tensor in ``[0, 1]``."""
    if isinstance(image, (str, os.PathLike)):
        return image_to_tensor(read_image_rgb(image))
    if isinstance(image, np.ndarray):
        return image_to_tensor(_rgb_array(image, bgr, index))
    if isinstance(image, Tensor):
        return _rgb_tensor(image, index)
    raise DataError(f"image {index}: a {type(image).__name__}; pass a path, a numpy array or a tensor")


def _rgb_array(image: np.ndarray, bgr: bool, index: int) -> np.ndarray:
    """``uint8 [H, W, 3]`` RGB from a uint8 ``[H, W]`` grey or ``[H, W, 3]`` RGB/BGR array."""
    if image.dtype != np.uint8:
        raise DataError(f"image {index}: a {image.dtype} array; pass uint8 pixels (0-255), as images are read")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"image {index}: array of shape {tuple(image.shape)}; pass [H, W, 3] (or [H, W] grey)")
    return image[:, :, ::-1] if bgr else image


def _rgb_tensor(image: Tensor, index: int) -> Tensor:
    """``float32 [3, H, W]`` in ``[0, 1]`` from a float ``[0, 1]`` or uint8 ``[3, H, W]`` RGB tensor."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise DataError(f"image {index}: tensor of shape {tuple(image.shape)}; pass [3, H, W] RGB, as torchvision")
    if image.dtype == torch.uint8:
        return image.to(torch.float32).div(255.0)
    if not image.is_floating_point():
        raise DataError(f"image {index}: a {image.dtype} tensor; pass float in [0, 1] or uint8")
    if len(image) and float(image.amax()) > 1.0 + 1e-3:  # 0-255 floats would saturate every pixel
        raise DataError(f"image {index}: float values up to {float(image.amax()):g}; divide by 255 (or pass uint8)")
    return image.to(torch.float32)
