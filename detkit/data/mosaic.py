"""Mosaic augmentation: four ``(image, Target)`` items tiled around a random centre on one canvas.

Items in and out are ``(image float32 [3, H, W] in [0, 1], Target)`` with boxes ``float32 [M, 4]``
xyxy absolute pixels of the image they travel with. The output canvas is ``C x C`` with ``C`` the
longer side of the anchor item (the one asked for), so the model's transform sees images of the
same order of size as without the mosaic.

Layout, in canvas pixels with the centre ``(cx, cy)``: tile 0 (the anchor) lies top-left of the
centre, its bottom-right corner at ``(cx, cy)``; tile 1 top-right (bottom-left corner at the
centre); tile 2 bottom-left (top-right corner at the centre); tile 3 bottom-right (top-left corner
at the centre). The four tiles therefore never overlap; what falls outside the canvas is cut and
what no tile covers stays 0.5 grey.

``mosaic`` is the deterministic core (centre and scales given); ``MosaicDataset`` draws them from
the global torch RNG, which the DataLoader seeds differently in every worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from detkit.data.seeded import Items
from detkit.data.transforms import uniform
from detkit.ops.boxes import clip_boxes, nonempty_boxes, scale_boxes
from detkit.structures import Target

_BACKGROUND = 0.5
_NUM_TILES = 4


@dataclass(frozen=True)
class _Placement:
    """Where one resized ``h x w`` tile lands on the canvas.

    offset: ``(x0, y0)`` canvas pixel of the tile's top-left corner; negative when the tile sticks
      out of the canvas on the left or top.
    region: ``(x1, y1, x2, y2)`` the visible part of the tile in canvas pixels, possibly empty.
    """

    offset: tuple[int, int]
    region: tuple[int, int, int, int]

    @property
    def is_empty(self) -> bool:
        x1, y1, x2, y2 = self.region
        return x2 <= x1 or y2 <= y1


def _place(corner: int, centre: tuple[int, int], tile_size: tuple[int, int], canvas_size: int) -> _Placement:
    """Put a tile of ``tile_size (h, w)`` in quadrant ``corner`` (0 TL, 1 TR, 2 BL, 3 BR) of ``centre (x, y)``."""
    cx, cy = centre
    height, width = tile_size
    x0 = cx - width if corner in (0, 2) else cx
    y0 = cy - height if corner in (0, 1) else cy
    region = (
        max(x0, 0),
        max(y0, 0),
        min(x0 + width, canvas_size),
        min(y0 + height, canvas_size),
    )
    return _Placement(offset=(x0, y0), region=region)


def _resized_size(image_size: tuple[int, int], long_side: float) -> tuple[int, int]:
    """``(h, w)`` with the longer side ``long_side`` and the aspect ratio of ``image_size (H, W)``; at least 1 px."""
    height, width = image_size
    ratio = max(1, round(long_side)) / max(height, width)
    return max(1, round(height * ratio)), max(1, round(width * ratio))


def _resize(image: Tensor, target: Target, size: tuple[int, int]) -> tuple[Tensor, Target]:
    """Resize ``image [3, H, W]`` and its boxes and masks to ``size (h, w)``; boxes go to the new frame."""
    from_size = (int(image.shape[-2]), int(image.shape[-1]))
    if from_size == size:
        return image, target
    image = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False)[0]
    masks = target.masks
    if masks is not None:
        # "nearest-exact" samples at pixel centres, the same alignment as bilinear with
        # align_corners=False and as the box scaling, so masks stay inside their scaled boxes.
        # interpolate cannot take zero channels, hence the empty case apart.
        if len(masks) == 0:
            masks = masks.new_zeros((0, *size))
        else:
            masks = F.interpolate(masks[None].float(), size=size, mode="nearest-exact")[0].to(masks.dtype)
    boxes = scale_boxes(target.boxes.float(), from_size, size)
    return image, replace(target, boxes=boxes, masks=masks)


def _visible_instances(
    boxes: Tensor, placement: _Placement, min_visible: float, min_box_size: float
) -> tuple[Tensor, Tensor]:
    """Clip canvas-frame ``boxes [M, 4]`` to the tile's visible region; return ``(clipped [M, 4], keep [M] bool)``.

    A box is kept when its clipped sides are both at least ``min_box_size``, its clipped area is at
    least ``min_visible`` of its whole (scaled) area, and some of it is visible at all.
    """
    x1, y1, x2, y2 = placement.region
    origin = boxes.new_tensor([x1, y1, x1, y1])
    clipped = clip_boxes(boxes - origin, (max(y2 - y1, 0), max(x2 - x1, 0))) + origin
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    clipped_w = clipped[:, 2] - clipped[:, 0]
    clipped_h = clipped[:, 3] - clipped[:, 1]
    # The positivity check matters only for min_box_size = 0: a box cut away entirely (or on a
    # tile that fell off the canvas) is no instance, whatever min_visible says.
    keep = nonempty_boxes(clipped, min_box_size) & (clipped_w > 0) & (clipped_h > 0)
    keep &= clipped_w * clipped_h >= min_visible * area
    return clipped, keep


def _paste_masks(masks: Tensor, placement: _Placement, canvas_size: int) -> Tensor:
    """Paste tile-frame ``masks [M, h, w]`` into zeroed canvas-frame ``[M, C, C]`` uint8 masks."""
    pasted = masks.new_zeros((len(masks), canvas_size, canvas_size), dtype=torch.uint8)
    if not placement.is_empty:
        x1, y1, x2, y2 = placement.region
        x0, y0 = placement.offset
        pasted[:, y1:y2, x1:x2] = masks[:, y1 - y0 : y2 - y0, x1 - x0 : x2 - x0].to(torch.uint8)
    return pasted


def _place_tile(
    canvas: Tensor,
    image: Tensor,
    target: Target,
    corner: int,
    centre: tuple[int, int],
    min_visible: float,
    min_box_size: float,
    with_masks: bool,
) -> Target:
    """Paste one resized tile into ``canvas [3, C, C]`` in place; return its surviving instances in the canvas frame.

    ``image [3, h, w]`` and ``target`` are already resized. The returned Target holds the kept
    boxes (clipped to the tile's visible region), labels, iscrowd and, when ``with_masks``, masks
    ``[M, C, C]`` uint8; proposals are not carried.
    """
    canvas_size = int(canvas.shape[-1])
    placement = _place(corner, centre, (int(image.shape[-2]), int(image.shape[-1])), canvas_size)
    x0, y0 = placement.offset
    if not placement.is_empty:
        x1, y1, x2, y2 = placement.region
        canvas[:, y1:y2, x1:x2] = image[:, y1 - y0 : y2 - y0, x1 - x0 : x2 - x0]
    shifted = target.boxes.float() + target.boxes.new_tensor([x0, y0, x0, y0], dtype=torch.float32)
    clipped, keep = _visible_instances(shifted, placement, min_visible, min_box_size)
    masks = _paste_masks(_masks(target)[keep], placement, canvas_size) if with_masks else None
    return Target(
        boxes=clipped[keep],
        labels=target.labels[keep].to(torch.int64),
        masks=masks,
        iscrowd=_crowd(target)[keep].to(torch.bool),
        image_id=target.image_id,
    )


def _concatenate(targets: Sequence[Target], image_id: int, canvas_size: int, with_masks: bool) -> Target:
    """One Target of all tiles' instances, in tile order, with the anchor's ``image_id``."""
    masks = None
    if with_masks:
        masks = torch.cat([_masks(t) for t in targets]).reshape(-1, canvas_size, canvas_size)
    return Target(
        boxes=torch.cat([t.boxes for t in targets]).reshape(-1, 4).to(torch.float32),
        labels=torch.cat([t.labels for t in targets]).to(torch.int64),
        masks=masks,
        iscrowd=torch.cat([_crowd(t) for t in targets]).to(torch.bool),
        image_id=image_id,
        proposals=None,
    )


def _masks(target: Target) -> Tensor:
    """``target.masks`` where the caller knows every tile has masks (``with_masks``)."""
    return cast(Tensor, target.masks)


def _crowd(target: Target) -> Tensor:
    """``target.iscrowd``, which ``Target.__post_init__`` sets when it is not given."""
    return cast(Tensor, target.iscrowd)


def mosaic(
    tiles: Sequence[tuple[Tensor, Target]],
    centre: tuple[int, int],
    scales: Sequence[float],
    min_visible: float = 0.25,
    min_box_size: float = 2.0,
) -> tuple[Tensor, Target]:
    """Tile four ``(image [3, H_i, W_i], Target)`` items around ``centre (cx, cy)`` on a ``C x C`` canvas.

    ``C = max(H_0, W_0)`` of the first (anchor) tile. Tile ``i`` is resized (bilinear, aspect ratio
    kept) so its longer side is ``C * scales[i]`` and placed in quadrant ``i`` (see the module
    docstring). Returns ``(canvas float32 [3, C, C], Target)``: boxes ``float32 [M, 4]`` xyxy
    canvas pixels clipped to their tile's visible part, instances filtered by ``min_box_size``
    (pixels, both sides) and ``min_visible`` (kept fraction of the box area), masks ``uint8 [M, C, C]``
    only when every tile has masks (else None), proposals None, ``image_id`` of the anchor.
    """
    if len(tiles) != _NUM_TILES or len(scales) != _NUM_TILES:
        raise ValueError(f"mosaic needs {_NUM_TILES} tiles and {_NUM_TILES} scales, got {len(tiles)} and {len(scales)}")
    anchor_image, anchor_target = tiles[0]
    canvas_size = max(int(anchor_image.shape[-2]), int(anchor_image.shape[-1]))
    channels = int(anchor_image.shape[0])
    canvas = torch.full(
        (channels, canvas_size, canvas_size), _BACKGROUND, dtype=torch.float32, device=anchor_image.device
    )
    with_masks = all(target.masks is not None for _, target in tiles)
    placed = []
    for corner, ((image, target), scale) in enumerate(zip(tiles, scales)):
        size = _resized_size((int(image.shape[-2]), int(image.shape[-1])), canvas_size * scale)
        image, target = _resize(image, target, size)
        placed.append(_place_tile(canvas, image, target, corner, centre, min_visible, min_box_size, with_masks))
    return canvas, _concatenate(placed, anchor_target.image_id, canvas_size, with_masks)


class MosaicDataset(Dataset[tuple[Tensor, Target]]):
    """Wrap a dataset of ``(image, Target)`` so that item ``i`` is, with probability ``prob``, a mosaic.

    The mosaic has ``dataset[i]`` as its top-left tile and three items drawn uniformly (with
    replacement, so possibly ``i`` again) as the others; its canvas is ``C x C`` with ``C`` the
    longer side of ``dataset[i]``, its centre uniform in ``[C/4, 3C/4]`` on each axis (rounded to
    a pixel), each tile's scale uniform in ``scale_range``. Otherwise ``dataset[i]`` is returned
    as is. All draws use the global torch RNG so that DataLoader workers get different streams.
    """

    def __init__(
        self,
        dataset: Items[tuple[Tensor, Target]],
        prob: float = 1.0,
        scale_range: tuple[float, float] = (0.5, 1.5),
        min_visible: float = 0.25,
        min_box_size: float = 2.0,
    ) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        if len(scale_range) != 2 or not 0.0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (lo, hi) with 0 < lo <= hi, got {scale_range}")
        if not 0.0 <= min_visible <= 1.0:
            raise ValueError(f"min_visible must be in [0, 1], got {min_visible}")
        if min_box_size < 0.0:
            raise ValueError(f"min_box_size must be >= 0, got {min_box_size}")
        self.dataset = dataset
        self.prob = prob
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.min_visible = min_visible
        self.min_box_size = min_box_size

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, Target]:
        # Always draw, so the RNG stream advances the same way whatever prob is.
        if float(torch.rand(())) >= self.prob:
            return self.dataset[index]
        anchor = self.dataset[index]
        others = torch.randint(len(self.dataset), (_NUM_TILES - 1,)).tolist()
        tiles = [anchor, *(self.dataset[other] for other in others)]
        canvas_size = max(int(anchor[0].shape[-2]), int(anchor[0].shape[-1]))
        centre = (
            round(uniform(canvas_size / 4, 3 * canvas_size / 4)),
            round(uniform(canvas_size / 4, 3 * canvas_size / 4)),
        )
        scales = [uniform(*self.scale_range) for _ in range(_NUM_TILES)]
        return mosaic(tiles, centre, scales, self.min_visible, self.min_box_size)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(prob={self.prob}, scale_range={self.scale_range}, "
            f"min_visible={self.min_visible}, min_box_size={self.min_box_size})"
        )
