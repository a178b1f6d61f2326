"""Training-time augmentation on ``(image float32 [3, H, W] in [0, 1], Target)`` pairs.

Boxes stay xyxy absolute pixels of the image they travel with. Resizing is not done here: the
model's transform owns (multi-scale) resizing, so datasets stay in the original image frame.

Every random transform takes an optional ``torch.Generator``. Leave it None under a multi-worker
DataLoader: a generator given here is copied into every worker with the same state, whereas the
global torch RNG is seeded differently per worker by the DataLoader.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
from torch import Tensor
from torchvision.transforms import functional as F

from detkit.structures import Target

Transform = Callable[[Tensor, Target], tuple[Tensor, Target]]


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        for transform in self.transforms:
            image, target = transform(image, target)
        return image, target

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"{type(self).__name__}([{inner}])"


def uniform(low: float, high: float, generator: torch.Generator | None = None) -> float:
    """A float drawn uniformly from ``[low, high)`` (the global torch RNG when ``generator`` is None)."""
    return low + (high - low) * float(torch.rand((), generator=generator))


def hflip(image: Tensor, target: Target) -> tuple[Tensor, Target]:
    """Mirror left-right: ``x1' = W - x2``, ``x2' = W - x1`` (pixel edges, so W, not W - 1)."""
    width = image.shape[-1]
    masks = None if target.masks is None else target.masks.flip(-1)
    proposals = None if target.proposals is None else _hflip_boxes(target.proposals, width)
    return image.flip(-1), replace(target, boxes=_hflip_boxes(target.boxes, width), masks=masks, proposals=proposals)


def _hflip_boxes(boxes: Tensor, width: int) -> Tensor:
    flipped = boxes.clone()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return flipped


class RandomHorizontalFlip:
    """Mirror image, boxes and masks left-right with probability ``p``."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        self.p = p
        self.generator = generator

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        if float(torch.rand((), generator=self.generator)) < self.p:
            return hflip(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class RandomPhotometric:
    """Colour jitter on the image only: brightness, contrast, saturation factors in ``[1 - a, 1 + a]``.

    Applied in a random order, as torchvision's ColorJitter does; the target is untouched.
    """

    def __init__(
        self,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
        generator: torch.Generator | None = None,
    ) -> None:
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.generator = generator

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        adjust = (
            (F.adjust_brightness, self.brightness),
            (F.adjust_contrast, self.contrast),
            (F.adjust_saturation, self.saturation),
        )
        for index in torch.randperm(len(adjust), generator=self.generator).tolist():
            function, amount = adjust[index]
            if amount > 0:
                image = function(image, uniform(1.0 - amount, 1.0 + amount, self.generator))
        return image, target

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation})"
        )
