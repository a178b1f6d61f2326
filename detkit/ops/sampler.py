"""Balanced sampling of foreground and background proposals for a loss (Fast R-CNN section 2.3).

Each image contributes at most ``batch_size_per_image`` proposals, of which at most
``positive_fraction`` are foreground; background fills the rest. Ignored proposals are never drawn.
"""

from __future__ import annotations

import torch
from torch import Tensor

from detkit.ops.matcher import BACKGROUND, FOREGROUND


def sample_balanced(
    kind: Tensor,
    batch_size_per_image: int,
    positive_fraction: float,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """``[R]`` match kinds -> (foreground indices, background indices), both int64, drawn without replacement."""
    foreground = torch.nonzero(kind == FOREGROUND).flatten()
    background = torch.nonzero(kind == BACKGROUND).flatten()
    num_fg = min(int(batch_size_per_image * positive_fraction), foreground.numel())
    num_bg = min(batch_size_per_image - num_fg, background.numel())
    return _draw(foreground, num_fg, generator), _draw(background, num_bg, generator)


def _draw(indices: Tensor, count: int, generator: torch.Generator | None) -> Tensor:
    if count >= indices.numel():
        return indices
    order = torch.randperm(indices.numel(), device="cpu", generator=generator)[:count].to(indices.device)
    return indices[order]
