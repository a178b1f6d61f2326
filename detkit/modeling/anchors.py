"""Anchor boxes on every feature-map cell (Faster R-CNN section 3.1.1).

Per level: ``A = len(sizes) * len(aspect_ratios)`` cell anchors centred on the origin, shifted to
every cell of the ``(H_l, W_l)`` grid with the level's stride. Output per level ``[H_l * W_l * A, 4]``
xyxy pixels of the padded batch, ordered (row, column, anchor): the order the RPN head's
``[N, A*4, H, W]`` output takes after ``permute(0, 2, 3, 1)``. Aspect ratio is height / width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# (padded size, feature sizes, device): every input the anchors of a batch depend on.
_AnchorKey = tuple[tuple[int, int], tuple[tuple[int, int], ...], str]


def cell_anchors(sizes: tuple[int, ...], aspect_ratios: tuple[float, ...]) -> Tensor:
    """``[A, 4]`` anchors centred on (0, 0), ratio-major, rounded to whole pixels as torchvision does."""
    scales = torch.as_tensor(sizes, dtype=torch.float32)
    ratios = torch.as_tensor(aspect_ratios, dtype=torch.float32)
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    widths = (w_ratios[:, None] * scales[None, :]).view(-1)
    heights = (h_ratios[:, None] * scales[None, :]).view(-1)
    return (torch.stack([-widths, -heights, widths, heights], dim=1) / 2).round()


class AnchorGenerator(nn.Module):
    def __init__(self, sizes: tuple[tuple[int, ...], ...], aspect_ratios: tuple[tuple[float, ...], ...]) -> None:
        super().__init__()
        if len(sizes) != len(aspect_ratios):
            raise ValueError(
                f"anchor sizes ({len(sizes)} levels) and aspect ratios ({len(aspect_ratios)} levels) differ"
            )
        self.cell_anchors = [cell_anchors(s, r) for s, r in zip(sizes, aspect_ratios)]
        self._cache: dict[_AnchorKey, list[Tensor]] = {}

    @property
    def num_anchors_per_location(self) -> list[int]:
        return [len(a) for a in self.cell_anchors]

    def forward(
        self, padded_size: tuple[int, int], feature_sizes: list[tuple[int, int]], device: torch.device
    ) -> list[Tensor]:
        """Anchors per level for a batch padded to ``padded_size (H, W)``; shared by every image of the batch."""
        if len(feature_sizes) != len(self.cell_anchors):
            raise ValueError(f"{len(feature_sizes)} feature maps but anchors for {len(self.cell_anchors)} levels")
        key: _AnchorKey = (padded_size, tuple(feature_sizes), str(device))
        if key not in self._cache:
            if len(self._cache) >= 64:  # multi-scale training visits many sizes; keep memory bounded
                self._cache.clear()
            self._cache[key] = [
                _grid_anchors(base.to(device), size, padded_size)
                for base, size in zip(self.cell_anchors, feature_sizes)
            ]
        return self._cache[key]


def _grid_anchors(base: Tensor, grid_size: tuple[int, int], padded_size: tuple[int, int]) -> Tensor:
    grid_h, grid_w = grid_size
    # Integer strides from the padded image, as torchvision computes them.
    stride_h, stride_w = padded_size[0] // grid_h, padded_size[1] // grid_w
    shifts_x = torch.arange(0, grid_w, dtype=torch.int32, device=base.device) * stride_w
    shifts_y = torch.arange(0, grid_h, dtype=torch.int32, device=base.device) * stride_h
    shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
    shifts = torch.stack((shift_x.reshape(-1), shift_y.reshape(-1), shift_x.reshape(-1), shift_y.reshape(-1)), dim=1)
    return (shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4)
