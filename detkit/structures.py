"""Per-image records that cross module boundaries.

Boxes are ``Tensor[*, 4]`` float32 ``(x1, y1, x2, y2)`` in absolute pixels, in the frame of the
image they travel with. Labels are int64 in ``[0, K)`` for K foreground classes. "No objects" is
always an empty tensor, never ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor


def _empty_boxes(device: torch.device | str | None = None) -> Tensor:
    return torch.zeros((0, 4), dtype=torch.float32, device=device)


def _empty_labels(device: torch.device | str | None = None) -> Tensor:
    return torch.zeros((0,), dtype=torch.int64, device=device)


@dataclass
class Target:
    """Ground truth of one image.

    boxes: ``[M, 4]`` float32 xyxy pixels. labels: ``[M]`` int64 in ``[0, K)``.
    masks: ``[M, H, W]`` uint8 instance masks in the image frame, or None when the dataset has none.
    iscrowd: ``[M]`` bool; crowd regions are ignored by training and kept for evaluation.
    image_id: the dataset's image id (COCO ids start at 1).
    proposals: ``[P, 4]`` float32 xyxy precomputed region proposals (selective search) in the same
      frame as ``boxes``, moved by every transform with them; None when the detector makes its own.
    """

    boxes: Tensor = field(default_factory=_empty_boxes)
    labels: Tensor = field(default_factory=_empty_labels)
    masks: Tensor | None = None
    iscrowd: Tensor | None = None
    image_id: int = 0
    proposals: Tensor | None = None

    def __post_init__(self) -> None:
        if self.iscrowd is None:
            self.iscrowd = torch.zeros(len(self.boxes), dtype=torch.bool, device=self.boxes.device)

    def __len__(self) -> int:
        return len(self.boxes)

    def _crowd(self) -> Tensor:
        """``iscrowd``, never None after ``__post_init__`` (the field takes None only so callers may omit it)."""
        assert self.iscrowd is not None
        return self.iscrowd

    def to(self, device: torch.device | str) -> Target:
        return replace(
            self,
            boxes=self.boxes.to(device),
            labels=self.labels.to(device),
            masks=None if self.masks is None else self.masks.to(device),
            iscrowd=self._crowd().to(device),
            proposals=None if self.proposals is None else self.proposals.to(device),
        )

    def without_crowd(self) -> Target:
        """The non-crowd instances only: what training matches proposals against."""
        iscrowd = self._crowd()
        keep = ~iscrowd
        return replace(
            self,
            boxes=self.boxes[keep],
            labels=self.labels[keep],
            masks=None if self.masks is None else self.masks[keep],
            iscrowd=iscrowd[keep],
        )


@dataclass
class Detections:
    """Predictions for one image, sorted by descending score.

    boxes: ``[D, 4]`` float32 xyxy pixels of the image the detector was given.
    scores: ``[D]`` float32 in ``[0, 1]``. labels: ``[D]`` int64 in ``[0, K)``.
    masks: ``[D, H, W]`` float32 mask probabilities pasted into the image, or None for box-only models.
    """

    boxes: Tensor = field(default_factory=_empty_boxes)
    scores: Tensor = field(default_factory=lambda: torch.zeros((0,), dtype=torch.float32))
    labels: Tensor = field(default_factory=_empty_labels)
    masks: Tensor | None = None

    def __len__(self) -> int:
        return len(self.boxes)

    def to(self, device: torch.device | str) -> Detections:
        return replace(
            self,
            boxes=self.boxes.to(device),
            scores=self.scores.to(device),
            labels=self.labels.to(device),
            masks=None if self.masks is None else self.masks.to(device),
        )

    def filter(self, keep: Tensor) -> Detections:
        """The detections selected by a boolean mask or an index tensor."""
        return replace(
            self,
            boxes=self.boxes[keep],
            scores=self.scores[keep],
            labels=self.labels[keep],
            masks=None if self.masks is None else self.masks[keep],
        )


@dataclass
class ImageBatch:
    """Images normalized, resized and zero-padded into one tensor.

    tensors: ``[N, 3, H_pad, W_pad]`` float32. image_sizes: each image's ``(H, W)`` after resizing,
    the frame of every box inside the model. original_sizes: each image's ``(H, W)`` as given, the
    frame of targets passed in and detections returned. images: the ``[3, H, W]`` images as given
    (in [0, 1], not normalized): the pixels a proposal source such as selective search reads.
    """

    tensors: Tensor
    image_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]
    images: list[Tensor] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.image_sizes)

    @property
    def padded_size(self) -> tuple[int, int]:
        return (int(self.tensors.shape[-2]), int(self.tensors.shape[-1]))


@dataclass
class DetectorOutput:
    """What every detector's ``forward`` returns.

    losses: ``loss_<stage>_<kind>`` scalars, filled whenever targets were given.
    detections: one ``Detections`` per image whenever the module is in eval mode, else None.
    """

    losses: dict[str, Tensor] = field(default_factory=dict)
    detections: list[Detections] | None = None
