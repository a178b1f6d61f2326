"""The single-shot detector as one graph: ``modeling/yolo/detector.py`` for one image.

    image ``uint8 [3, H, W]`` -> boxes ``[D, 4]`` float32 xyxy pixels of the image, scores ``[D]`` float32,
    labels ``[D]`` int64 in [0, K), best first

letterbox -> trunk, PAN neck and decoupled head (``YOLONetwork``, the eager modules) -> decode at the
grid points -> sigmoid(obj) * sigmoid(cls) -> top-k -> score threshold -> class-aware NMS -> the
``detections_per_image`` best -> back to the image's frame, clipped to it.
"""

# No ``from __future__ import annotations``: TorchScript reads the class-level annotations below as types.
import torch
from torch import Tensor, nn

from detkit.export.preprocess import letterbox_size, resize_and_pad, unit_pixels
from detkit.export.selection import batched_nms, clip_to, scale_to, top_k_padded
from detkit.modeling.yolo import YOLODetector
from detkit.modeling.yolo.decode import MAX_LOG_SIZE, grid_points


class YOLONetwork(nn.Module):
    """The dense part (static shapes: what TorchScript traces): ``[1, 3, H, W]`` -> class logits
    ``[1, P, K]``, box deltas ``[1, P, 4]``, objectness logits ``[1, P]`` and the neck's maps, whose
    sizes give the grid points.

    The head runs through ``DecoupledHead.predict``, without ``forward``'s ``feature_sizes``: those are
    ``int()`` of the map sizes, which ``torch.export`` cannot take of a size known only when the graph
    runs (it would fall back to its slower strict mode)."""

    def __init__(self, model: YOLODetector) -> None:
        super().__init__()
        self.trunk = model.trunk
        self.neck = model.neck
        self.head = model.head

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
        if torch.jit.is_tracing():  # type: ignore[attr-defined,no-untyped-call]  # TorchScript runs the eager model's NHWC layout; ONNX has no memory formats
            x = x.contiguous(memory_format=torch.channels_last)
        features = self.neck(list(self.trunk(x).values()))
        cls_logits, box_deltas, obj_logits = self.head.predict(features)
        return cls_logits, box_deltas, obj_logits, features


class YOLOGraph(nn.Module):
    mean: Tensor
    std: Tensor
    strides: list[int]

    def __init__(self, model: YOLODetector, half: bool = False) -> None:
        super().__init__()
        transform, cfg = model.transform, model.cfg
        self.network: nn.Module = YOLONetwork(model)
        self.register_buffer("mean", transform.mean.detach().clone())
        self.register_buffer("std", transform.std.detach().clone())
        self.side = transform.side
        self.letterbox = transform.letterbox
        self.size_divisible = transform.size_divisible
        self.strides = list(model.strides)
        self.num_classes = model.head.num_classes
        self.score_thresh = float(cfg.score_thresh)
        self.nms_thresh = float(cfg.nms_thresh)
        self.pre_nms_topk = cfg.pre_nms_topk
        self.detections_per_image = cfg.detections_per_image
        self.max_log_size = MAX_LOG_SIZE
        self.fp16 = half

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        original = (image.shape[-2], image.shape[-1])
        size = letterbox_size(original[0], original[1], self.side, self.letterbox)
        x = resize_and_pad((unit_pixels(image) - self.mean) / self.std, size, self.size_divisible)
        cls_logits, box_deltas, obj_logits, features = self.network(x.half() if self.fp16 else x)
        sizes = [(f.shape[-2], f.shape[-1]) for f in features]
        points, point_strides = grid_points(sizes, self.strides, x.device)
        boxes = self._decode(box_deltas.float()[0], points, point_strides)
        scores = (cls_logits.float().sigmoid() * obj_logits.float().sigmoid()[..., None]).flatten()  # [P * K]
        top_scores, top_index, _ = top_k_padded(scores, self.pre_nms_topk)
        keep = top_scores > self.score_thresh  # padding is -inf: never kept
        top_scores, top_index = top_scores[keep], top_index[keep]
        labels = top_index % self.num_classes
        candidates = clip_to(boxes[top_index // self.num_classes], size[0], size[1])
        kept = batched_nms(candidates, top_scores, labels, self.nms_thresh)[: self.detections_per_image]
        final = clip_to(scale_to(candidates[kept], size, original), original[0], original[1])
        return final, top_scores[kept], labels[kept]

    def _decode(self, box_deltas: Tensor, points: Tensor, strides: Tensor) -> Tensor:
        """``modeling.yolo.decode.decode_boxes`` of one image, ``[P, 4]`` (TorchScript cannot read that
        module's global clamp, so it is an attribute here)."""
        scale = strides[:, None]
        centres = points + box_deltas[:, :2] * scale
        sizes = box_deltas[:, 2:].clamp(max=self.max_log_size).exp() * scale
        return torch.cat([centres - sizes / 2, centres + sizes / 2], dim=-1)
