"""Box deltas ``(dx, dy, dw, dh)`` between a source box and a target box (R-CNN, Girshick et al. 2014, appendix C).

    dx = wx * (x_t - x_s) / w_s      dw = ww * log(w_t / w_s)
    dy = wy * (y_t - y_s) / h_s      dh = wh * log(h_t / h_s)

with ``(x, y)`` box centres and ``(w, h)`` sizes, and per-coordinate weights that rescale the
regression targets to unit-ish variance ((1, 1, 1, 1) for the RPN, (10, 10, 5, 5) for RoI heads).
The arithmetic follows torchvision's BoxCoder operation for operation, so converted torchvision
weights decode to identical boxes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# exp(dw) is clamped at 1000/16: a box can grow at most ~62x from its source in one decode.
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


class BoxCoder:
    def __init__(
        self,
        weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
        scale_clamp: float = DEFAULT_SCALE_CLAMP,
    ) -> None:
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = scale_clamp

    def encode(self, src_boxes: Tensor, target_boxes: Tensor) -> Tensor:
        """``[R, 4]`` source and target xyxy boxes -> ``[R, 4]`` deltas."""
        wx, wy, ww, wh = self.weights
        src_w = src_boxes[:, 2] - src_boxes[:, 0]
        src_h = src_boxes[:, 3] - src_boxes[:, 1]
        src_x = src_boxes[:, 0] + 0.5 * src_w
        src_y = src_boxes[:, 1] + 0.5 * src_h
        tgt_w = target_boxes[:, 2] - target_boxes[:, 0]
        tgt_h = target_boxes[:, 3] - target_boxes[:, 1]
        tgt_x = target_boxes[:, 0] + 0.5 * tgt_w
        tgt_y = target_boxes[:, 1] + 0.5 * tgt_h
        return torch.stack(
            (
                wx * (tgt_x - src_x) / src_w,
                wy * (tgt_y - src_y) / src_h,
                ww * torch.log(tgt_w / src_w),
                wh * torch.log(tgt_h / src_h),
            ),
            dim=1,
        )

    def decode(self, deltas: Tensor, src_boxes: Tensor) -> Tensor:
        """``[R, 4*C]`` deltas (C boxes per source, e.g. one per class) and ``[R, 4]`` sources -> ``[R, C, 4]``
        boxes."""
        src_boxes = src_boxes.to(deltas.dtype)
        wx, wy, ww, wh = self.weights
        widths = src_boxes[:, 2] - src_boxes[:, 0]
        heights = src_boxes[:, 3] - src_boxes[:, 1]
        ctr_x = src_boxes[:, 0] + 0.5 * widths
        ctr_y = src_boxes[:, 1] + 0.5 * heights

        dx = deltas[:, 0::4] / wx
        dy = deltas[:, 1::4] / wy
        dw = torch.clamp(deltas[:, 2::4] / ww, max=self.scale_clamp)
        dh = torch.clamp(deltas[:, 3::4] / wh, max=self.scale_clamp)

        pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
        pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
        half_w = 0.5 * (torch.exp(dw) * widths[:, None])
        half_h = 0.5 * (torch.exp(dh) * heights[:, None])
        return torch.stack((pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), dim=2)
