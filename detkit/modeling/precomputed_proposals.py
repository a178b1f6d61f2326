"""Precomputed region proposals as the two-stage detector's proposal source (Fast R-CNN, Girshick 2015).

Fast R-CNN takes its RoIs from an external method run once per image, selective search in the
paper (section 4.1: ~2000 boxes per image in "fast" mode). This source plugs in where the RPN does.

    training: each ``Target.proposals`` ``[P_i, 4]`` (attached by the dataset from the cache, then
      flipped and resized with the boxes) is used as it is
    otherwise (``detect`` on new images, validation): selective search on ``batch.images[i]``
      through the on-disk cache, mapped from the original to the resized frame
    -> per image ``[R_i, 4]`` xyxy pixels of the resized image, clipped to it; no losses (nothing here learns)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from detkit.config import ProposalConfig
from detkit.ops.boxes import clip_boxes, scale_boxes
from detkit.proposals.cache import ProposalCache
from detkit.structures import ImageBatch, Target


@dataclass
class ProposalTally:
    """How the source found proposals for images that came without them (its time is the "proposals" stage)."""

    images: int = 0
    computed: int = 0  # cache misses: selective search ran


class PrecomputedProposals(nn.Module):
    stage_name = "proposals"

    def __init__(self, cfg: ProposalConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.cache = ProposalCache(cfg)
        self.tally = ProposalTally()

    def propose(
        self, batch: ImageBatch, features: list[Tensor], targets: list[Target] | None = None
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        device = batch.tensors.device
        proposals = []
        for index, image_size in enumerate(batch.image_sizes):
            given = None if targets is None else targets[index].proposals
            if given is None:
                computed = self.compute(batch.images[index]).to(device)
                given = scale_boxes(computed, batch.original_sizes[index], image_size)
            proposals.append(clip_boxes(given.to(device=device, dtype=torch.float32), image_size))
        return proposals, {}

    def compute(self, image: Tensor) -> Tensor:
        """Selective search (cached) on one ``[3, H, W]`` image in [0, 1] -> ``[P, 4]`` xyxy pixels of it."""
        # Back to the exact uint8 pixels the file decoded to, so the cache key matches the one
        # `detkit proposals` and the training data computed from the file.
        pixels = image.detach().mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        boxes, cached = self.cache.get(pixels)
        self.tally.images += 1
        self.tally.computed += not cached
        return torch.from_numpy(boxes)
