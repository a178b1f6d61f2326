"""The two-stage detector: transform -> backbone -> proposal source -> RoI heads -> postprocess.

Fast, Faster and Mask R-CNN are this one class with different parts passed in: a proposal source
(an RPN, or precomputed selective-search proposals), a pooler (RoIPool or RoIAlign) and heads.

    images: list of ``[3, H_i, W_i]`` float tensors in [0, 1]; targets in the same frames
    -> DetectorOutput: losses whenever targets are given; detections (in each input image's frame)
       whenever the module is in eval mode
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

from torch import Tensor, nn

from detkit.modeling.backbones import Backbone
from detkit.modeling.roi_heads import RoIHeads
from detkit.modeling.stages import stage
from detkit.modeling.transform import ImageTransform
from detkit.structures import DetectorOutput, ImageBatch, Target


class ProposalSource(Protocol):
    """What the detector asks of its proposal source (an ``nn.Module``: ``RegionProposalNetwork`` or
    ``PrecomputedProposals``): per-image ``[R_i, 4]`` proposals in the resized frame, and its losses."""

    stage_name: str  # what its time is called in a stage breakdown (modeling/stages.py)

    def propose(
        self, batch: ImageBatch, features: list[Tensor], targets: list[Target] | None = None
    ) -> tuple[list[Tensor], dict[str, Tensor]]: ...


class TwoStageDetector(nn.Module):
    def __init__(
        self,
        transform: ImageTransform,
        backbone: Backbone,
        proposal_generator: ProposalSource,
        roi_heads: RoIHeads,
    ) -> None:
        super().__init__()
        self.transform = transform
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self.roi_heads = roi_heads

    def forward(self, images: list[Tensor], targets: list[Target] | None = None) -> DetectorOutput:
        with stage("preprocess"):
            batch, targets = self.transform(images, targets)
        with stage("backbone"):
            feature_maps: OrderedDict[str, Tensor] = self.backbone(batch.tensors)
        all_levels = list(feature_maps.values())
        pooled_levels = [feature_maps[name] for name in self.backbone.pooled_feature_names]
        with stage(self.proposal_generator.stage_name):
            proposals, losses = self.proposal_generator.propose(batch, all_levels, targets)
        with stage("roi_heads"):
            detections, head_losses = self.roi_heads.detect(pooled_levels, proposals, batch.image_sizes, targets)
        losses.update(head_losses)
        if detections is not None:
            with stage("postprocess"):
                detections = self.transform.postprocess(detections, batch)
        return DetectorOutput(losses=losses, detections=detections)
