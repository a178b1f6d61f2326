"""The two-stage detectors as one graph: ``modeling/two_stage.py`` for one image.

    image ``uint8 [3, H, W]`` (+ ``proposals [P, 4]`` float32 xyxy pixels of the image, Fast R-CNN)
    -> boxes ``[D, 4]`` float32 xyxy pixels of the image, scores ``[D]`` float32, labels ``[D]`` int64
       in [0, K), best first (+ masks ``[D, H, W]`` float32 probabilities, Mask R-CNN)

normalize and resize -> backbone (``BackboneNetwork``) -> proposals: the RPN (``RPNHeadNetwork``, then
per-level top-k, decoding at the anchors, clipping, NMS per level) or the given ones, scaled into the
resized frame -> RoI pooling -> box head and predictor (``BoxNetwork``) -> softmax, per-class decoding,
threshold, per-class NMS, the best ``detections_per_image`` -> (mask head on them, ``MaskNetwork``)
-> boxes back to the image's frame (masks pasted into it).

The networks are the eager modules; the steps between them are the eager ones for one image,
without branches on tensor contents (``export.selection``). Fast R-CNN's selective search is OpenCV,
outside any graph: its proposals are the graph's second input.
"""

# No ``from __future__ import annotations``: TorchScript reads the class-level annotations below as types.
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.export.masks import paste_masks
from detkit.export.pooling import RoIPoolGraph
from detkit.export.preprocess import resize_and_pad, shorter_side_size, unit_pixels
from detkit.export.selection import batched_nms, clip_to, decode_deltas, nonempty, scale_to, top_k_padded
from detkit.modeling.mask_head import MaskBranch
from detkit.modeling.roi_heads import MIN_DETECTION_SIZE, RoIHeads
from detkit.modeling.rpn import RegionProposalNetwork
from detkit.modeling.two_stage import TwoStageDetector


class BackboneNetwork(nn.Module):
    """``[1, 3, H, W]`` -> every level of the backbone, finest first (what the RPN reads)."""

    def __init__(self, model: TwoStageDetector) -> None:
        super().__init__()
        self.backbone = model.backbone

    def forward(self, x: Tensor) -> list[Tensor]:
        return list(self.backbone(x).values())


class RPNHeadNetwork(nn.Module):
    """Levels -> objectness logits ``[1, A, H_l, W_l]`` and deltas ``[1, A*4, H_l, W_l]`` per level."""

    def __init__(self, rpn: RegionProposalNetwork) -> None:
        super().__init__()
        self.head = rpn.head

    def forward(self, levels: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        objectness, deltas = self.head(levels)
        return objectness, deltas


class BoxNetwork(nn.Module):
    """Pooled ``[R, C, S, S]`` -> class logits ``[R, K+1]`` (background last), deltas ``[R, K*4]``."""

    def __init__(self, heads: RoIHeads) -> None:
        super().__init__()
        self.box_head = heads.box_head
        self.box_predictor = heads.box_predictor

    def forward(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        logits, deltas = self.box_predictor(self.box_head(pooled))
        return logits, deltas


class MaskNetwork(nn.Module):
    """Pooled ``[D, C, S, S]`` -> mask logits ``[D, K, 2S, 2S]``."""

    def __init__(self, branch: MaskBranch) -> None:
        super().__init__()
        self.head = branch.head
        self.predictor = branch.predictor

    def forward(self, pooled: Tensor) -> Tensor:
        logits: Tensor = self.predictor(self.head(pooled))
        return logits


class TwoStageGraph(nn.Module):
    """What the three two-stage graphs share: preprocessing, the box stage, the way back to the image."""

    mean: Tensor
    std: Tensor
    pooled_levels: list[int]
    box_weights: list[float]

    def __init__(self, model: TwoStageDetector, half: bool) -> None:
        super().__init__()
        transform, heads = model.transform, model.roi_heads
        self.register_buffer("mean", transform.mean.detach().clone())
        self.register_buffer("std", transform.std.detach().clone())
        self.min_size = transform.min_size[-1]
        self.max_size = transform.max_size
        self.size_divisible = transform.size_divisible
        self.backbone: nn.Module = BackboneNetwork(model)
        names = model.backbone.feature_names
        self.pooled_levels = [names.index(name) for name in model.backbone.pooled_feature_names]
        self.box_pooler = RoIPoolGraph(heads.pooler)
        self.box_network: nn.Module = BoxNetwork(heads)
        self.num_classes = heads.num_classes
        self.box_weights = list(heads.box_coder.weights)
        self.box_scale_clamp = heads.box_coder.scale_clamp
        self.score_thresh = float(heads.cfg.score_thresh)
        self.nms_thresh = float(heads.cfg.nms_thresh)
        self.detections_per_image = heads.cfg.detections_per_image
        self.min_detection_size = MIN_DETECTION_SIZE
        self.fp16 = half

    def _prepare(self, image: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """The network input ``[1, 3, H_pad, W_pad]`` and the resized size ``(h, w)``."""
        size = shorter_side_size(image.shape[-2], image.shape[-1], self.min_size, self.max_size)
        x = resize_and_pad((unit_pixels(image) - self.mean) / self.std, size, self.size_divisible)
        return (x.half() if self.fp16 else x), size

    def _pooled(self, levels: list[Tensor]) -> list[Tensor]:
        """The levels RoIs are pooled from, in float32 (ONNX ``RoiAlign`` has no float16 kernel on the CPU)."""
        return [levels[i].float() for i in self.pooled_levels]

    def _detect(self, pooled: list[Tensor], proposals: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        """``RoIHeads.inference`` and ``_detect_image`` for one image's ``[R, 4]`` proposals (resized frame)."""
        rois = self.box_pooler(pooled, proposals)
        logits, deltas = self.box_network(rois.half() if self.fp16 else rois)
        scores = F.softmax(logits.float(), dim=-1)[:, : self.num_classes]
        roi_index, labels = torch.where(scores > self.score_thresh)
        candidate_deltas = deltas.float().view(deltas.shape[0], self.num_classes, 4)[roi_index, labels]
        boxes = decode_deltas(candidate_deltas, proposals[roi_index], self.box_weights, self.box_scale_clamp)
        boxes = clip_to(boxes, size[0], size[1])
        candidate_scores = scores[roi_index, labels]
        keep = (candidate_scores > self.score_thresh) & nonempty(boxes, self.min_detection_size)
        boxes, candidate_scores, labels = boxes[keep], candidate_scores[keep], labels[keep]
        kept = batched_nms(boxes, candidate_scores, labels, self.nms_thresh)[: self.detections_per_image]
        return boxes[kept], candidate_scores[kept], labels[kept]

    def _to_image(self, boxes: Tensor, size: tuple[int, int], image: Tensor) -> Tensor:
        """Boxes of the resized frame in the input image's (``ImageTransform.postprocess``: no clip)."""
        return scale_to(boxes, size, (image.shape[-2], image.shape[-1]))


class RPNGraph(TwoStageGraph):
    """Faster R-CNN: the RPN's proposals."""

    cell_anchors: Tensor
    rpn_weights: list[float]

    def __init__(self, model: TwoStageDetector, half: bool = False) -> None:
        super().__init__(model, half)
        rpn = cast(RegionProposalNetwork, model.proposal_generator)
        self.rpn_head: nn.Module = RPNHeadNetwork(rpn)
        # [L, A, 4]: every level has A anchors per location (build_rpn refuses anything else).
        self.register_buffer("cell_anchors", torch.stack(rpn.anchor_generator.cell_anchors))
        self.rpn_weights = list(rpn.box_coder.weights)
        self.rpn_scale_clamp = rpn.box_coder.scale_clamp
        self.pre_nms_topk = rpn.cfg.pre_nms_topk_test
        self.post_nms_topk = rpn.cfg.post_nms_topk_test
        self.rpn_nms_thresh = float(rpn.cfg.nms_thresh)
        self.rpn_score_thresh = float(rpn.cfg.score_thresh)
        self.rpn_min_size = float(rpn.cfg.min_size)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x, size = self._prepare(image)
        levels = self.backbone(x)
        proposals = self._propose(levels, x, size)
        boxes, scores, labels = self._detect(self._pooled(levels), proposals, size)
        return self._to_image(boxes, size, image), scores, labels

    def _propose(self, levels: list[Tensor], x: Tensor, size: tuple[int, int]) -> Tensor:
        """``RegionProposalNetwork.inference`` for one image: ``[R, 4]`` proposals of the resized frame."""
        objectness, deltas = self.rpn_head(levels)
        all_boxes, all_scores, all_levels, all_valid = [], [], [], []
        for level, (logits_map, deltas_map) in enumerate(zip(objectness, deltas)):
            num_anchors, grid_h, grid_w = logits_map.shape[1], logits_map.shape[2], logits_map.shape[3]
            logits = logits_map.float().permute(0, 2, 3, 1).reshape(-1)  # (row, column, anchor) order
            level_deltas = (
                deltas_map.float().view(1, num_anchors, 4, grid_h, grid_w).permute(0, 3, 4, 1, 2).reshape(-1, 4)
            )
            top, index, valid = top_k_padded(logits, self.pre_nms_topk)
            anchors = self._anchors(level, index, num_anchors, (grid_h, grid_w), (x.shape[-2], x.shape[-1]))
            all_boxes.append(decode_deltas(level_deltas[index], anchors, self.rpn_weights, self.rpn_scale_clamp))
            all_scores.append(torch.sigmoid(top))
            all_levels.append(torch.full_like(index, level))
            all_valid.append(valid)
        boxes = clip_to(torch.cat(all_boxes), size[0], size[1])
        scores, level_ids = torch.cat(all_scores), torch.cat(all_levels)
        keep = torch.cat(all_valid) & nonempty(boxes, self.rpn_min_size) & (scores >= self.rpn_score_thresh)
        boxes, scores, level_ids = boxes[keep], scores[keep], level_ids[keep]
        return boxes[batched_nms(boxes, scores, level_ids, self.rpn_nms_thresh)[: self.post_nms_topk]]

    def _anchors(
        self, level: int, index: Tensor, num_anchors: int, grid: tuple[int, int], padded: tuple[int, int]
    ) -> Tensor:
        """``[k, 4]`` anchors at flat (row, column, anchor) indices of a level: the rows of
        ``AnchorGenerator`` that ``index`` picks, without building the whole grid."""
        stride_h, stride_w = padded[0] // grid[0], padded[1] // grid[1]  # integer strides, as the generator's
        # Remainders as a - (a // b) * b: the ONNX exporter cannot write ``tensor % size`` for a size
        # known only when the graph runs.
        cell = index // num_anchors
        row = cell // grid[1]
        shift_x = (cell - row * grid[1]) * stride_w
        shift_y = row * stride_h
        shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=1)
        return shifts + self.cell_anchors[level][index - cell * num_anchors]


class MaskRPNGraph(RPNGraph):
    """Mask R-CNN: the RPN's proposals and a mask per detection, pasted into the image."""

    def __init__(self, model: TwoStageDetector, half: bool = False) -> None:
        super().__init__(model, half)
        branch = model.roi_heads.mask_branch
        if branch is None:
            raise ValueError("MaskRPNGraph needs a model with a mask branch")
        self.mask_pooler = RoIPoolGraph(branch.pooler)
        self.mask_network: nn.Module = MaskNetwork(branch)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # type: ignore[override]
        x, size = self._prepare(image)
        levels = self.backbone(x)
        pooled = self._pooled(levels)
        boxes, scores, labels = self._detect(pooled, self._propose(levels, x, size), size)
        rois = self.mask_pooler(pooled, boxes)
        logits = self.mask_network(rois.half() if self.fp16 else rois).float()
        probabilities = logits[torch.arange(logits.shape[0], device=logits.device), labels].sigmoid()
        image_boxes = self._to_image(boxes, size, image)
        return image_boxes, scores, labels, paste_masks(probabilities, image_boxes, image.shape[-2], image.shape[-1])


class ProposalGraph(TwoStageGraph):
    """Fast R-CNN: the proposals are the second input, xyxy pixels of the input image."""

    def __init__(self, model: TwoStageDetector, half: bool = False) -> None:
        super().__init__(model, half)

    def forward(self, image: Tensor, proposals: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x, size = self._prepare(image)
        levels = self.backbone(x)
        # PrecomputedProposals: scaled from the image into the resized frame, clipped to it.
        resized = clip_to(scale_to(proposals.float(), (image.shape[-2], image.shape[-1]), size), size[0], size[1])
        boxes, scores, labels = self._detect(self._pooled(levels), resized, size)
        return self._to_image(boxes, size, image), scores, labels
