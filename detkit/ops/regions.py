"""Warped region crops for R-CNN (Girshick et al., CVPR 2014, section 2.1 and appendix A).

    image: ``[3, H, W]`` normalized (mean-subtracted) image; boxes: ``[R, 4]`` xyxy pixels of it
    -> ``[R, 3, S, S]`` crops, S = crop_size

Each box is first dilated about its centre so that, once warped to S x S, exactly
``context_padding`` pixels of image context surround the original box (the paper's p = 16).
Warping is anisotropic (aspect ratio not kept), as in the paper's best variant. The bilinear
resampling is torchvision's ``roi_align`` on the image itself; where a dilated box leaves the image
it reads zeros, which after mean subtraction is the paper's mean-colour padding.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import roi_align


def dilate_for_context(boxes: Tensor, crop_size: int, context_padding: int) -> Tensor:
    """``[R, 4]`` boxes grown by ``S / (S - 2p)`` about their centres."""
    if not 0 <= 2 * context_padding < crop_size:
        raise ValueError(f"context_padding {context_padding} leaves no room for the box in a {crop_size} px crop")
    scale = crop_size / (crop_size - 2 * context_padding)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    half_sizes = (boxes[:, 2:] - boxes[:, :2]) / 2 * scale
    return torch.cat([centres - half_sizes, centres + half_sizes], dim=1)


def warp_regions(image: Tensor, boxes: Tensor, crop_size: int, context_padding: int) -> Tensor:
    """Crops of every box with its context, each warped to ``crop_size x crop_size``."""
    if len(boxes) == 0:
        return image.new_zeros((0, image.shape[0], crop_size, crop_size))
    dilated = dilate_for_context(boxes.to(image.dtype), crop_size, context_padding)
    rois = torch.cat([dilated.new_zeros((len(dilated), 1)), dilated], dim=1)
    crops: Tensor = roi_align(
        image[None], rois, (crop_size, crop_size), spatial_scale=1.0, sampling_ratio=2, aligned=True
    )
    return crops
