"""Mosaic augmentation: four items tiled around a centre, boxes and masks following their pixels."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

import detkit.data.mosaic as mosaic_module
from detkit.data.mosaic import MosaicDataset, mosaic
from detkit.structures import Target

# (H, W) of the source images: every one a different size and aspect ratio.
SIZES = ((20, 32), (40, 12), (16, 16), (12, 48))
COLOURS = torch.tensor([[0.9, 0.1, 0.2], [0.1, 0.8, 0.3], [0.2, 0.3, 0.9], [0.7, 0.7, 0.0]])
NUM_SEEDS = 50


class _ListDataset(Dataset):
    """In-memory ``(image, Target)`` items, returned as stored."""

    def __init__(self, items: list[tuple[torch.Tensor, Target]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        return self.items[index]


def _solid(size: tuple[int, int], colour: torch.Tensor) -> torch.Tensor:
    return colour[:, None, None].expand(3, *size).clone()


def _coloured_item(k: int, with_masks: bool = False) -> tuple[torch.Tensor, Target]:
    """Image ``k`` in colour ``k``: a whole-image box labelled ``k`` and a crowd box labelled ``k + 4`` inside it."""
    height, width = SIZES[k]
    inner = (width // 4, height // 4, 3 * width // 4, 3 * height // 4)
    masks = None
    if with_masks:
        masks = torch.zeros((2, height, width), dtype=torch.uint8)
        masks[0] = 1
        masks[1, inner[1] : inner[3], inner[0] : inner[2]] = 1
    target = Target(
        boxes=torch.tensor([[0, 0, width, height], inner], dtype=torch.float32),
        labels=torch.tensor([k, k + 4], dtype=torch.int64),
        masks=masks,
        iscrowd=torch.tensor([False, True]),
        image_id=100 + k,
        proposals=torch.tensor([[0.0, 0.0, 4.0, 4.0]]),
    )
    return _solid(SIZES[k], COLOURS[k]), target


def _coloured_dataset(with_masks: bool = False) -> _ListDataset:
    return _ListDataset([_coloured_item(k, with_masks) for k in range(len(SIZES))])


def _draws(dataset: Dataset, **kwargs):
    """``(anchor index, output)`` of one mosaic per seed, anchors cycling through the dataset."""
    mosaic_dataset = MosaicDataset(dataset, **kwargs)
    for seed in range(NUM_SEEDS):
        torch.manual_seed(seed)
        index = seed % len(dataset)
        yield index, mosaic_dataset[index]


def test_canvas_is_square_on_the_anchor_longer_side():
    for index, (image, target) in _draws(_coloured_dataset()):
        side = max(SIZES[index])
        assert image.shape == (3, side, side) and image.dtype == torch.float32
        assert target.image_id == 100 + index
        assert target.proposals is None


def test_prob_zero_returns_the_anchor_item_unchanged():
    dataset = _coloured_dataset()
    mosaic_dataset = MosaicDataset(dataset, prob=0.0)
    assert len(mosaic_dataset) == len(dataset)
    for index in range(len(dataset)):
        image, target = mosaic_dataset[index]
        assert image is dataset.items[index][0] and target is dataset.items[index][1]


def test_same_seed_same_mosaic():
    mosaic_dataset = MosaicDataset(_coloured_dataset())
    torch.manual_seed(7)
    first_image, first = mosaic_dataset[1]
    torch.manual_seed(7)
    second_image, second = mosaic_dataset[1]
    assert torch.equal(first_image, second_image) and torch.equal(first.boxes, second.boxes)


def test_boxes_lie_on_their_tile_inside_the_canvas_and_are_large_enough():
    min_box_size = 3.0
    for _, (image, target) in _draws(_coloured_dataset(), min_box_size=min_box_size):
        side = image.shape[-1]
        boxes = target.boxes
        assert boxes.dtype == torch.float32 and boxes.shape == (len(target), 4)
        assert target.labels.dtype == torch.int64 and target.iscrowd.dtype == torch.bool
        assert (boxes >= 0).all() and (boxes <= side).all()
        assert (boxes[:, 2:] - boxes[:, :2] >= min_box_size).all()
        # Crowd flags followed their boxes: only the inner boxes (labels 4..7) are crowd.
        assert torch.equal(target.iscrowd, target.labels >= 4)
        for box, label in zip(boxes.tolist(), target.labels.tolist()):
            x = int((box[0] + box[2]) / 2)
            y = int((box[1] + box[3]) / 2)
            assert torch.allclose(image[:, y, x], COLOURS[label % 4], atol=1e-6), (box, label)


def test_centre_and_scales_are_drawn_in_range(monkeypatch):
    seen = []

    def spy(tiles, centre, scales, min_visible, min_box_size):
        seen.append((max(tiles[0][0].shape[-2:]), centre, scales))
        return tiles[0]

    monkeypatch.setattr(mosaic_module, "mosaic", spy)
    list(_draws(_coloured_dataset(), scale_range=(0.8, 1.2)))
    assert len(seen) == NUM_SEEDS
    for side, (cx, cy), scales in seen:
        assert side / 4 - 0.5 <= cx <= 3 * side / 4 + 0.5 and side / 4 - 0.5 <= cy <= 3 * side / 4 + 0.5
        assert len(scales) == 4 and all(0.8 <= s <= 1.2 for s in scales)


def test_mosaic_places_each_tile_in_its_quadrant_and_scales_its_longer_side():
    tiles = [_coloured_item(k) for k in range(4)]
    # Anchor 20 x 32: canvas 32 x 32. Tile 2 (16 x 16) at 0.5 -> 16 x 16; tile 3 (12 x 48) at 0.25 -> 2 x 8.
    image, _ = mosaic(tiles, centre=(12, 20), scales=[1.0, 1.0, 0.5, 0.25])
    assert image.shape == (3, 32, 32)
    for k, (x, y) in enumerate([(11, 19), (12, 19), (11, 20), (12, 20)]):
        assert torch.allclose(image[:, y, x], COLOURS[k], atol=1e-6)
    on_tile_3 = torch.isclose(image, COLOURS[3][:, None, None], atol=1e-6).all(0)
    assert on_tile_3.sum() == 2 * 8 and on_tile_3[20:22, 12:20].all()
    on_tile_2 = torch.isclose(image, COLOURS[2][:, None, None], atol=1e-6).all(0)
    assert on_tile_2.sum() == 12 * 12 and on_tile_2[20:32, 0:12].all()  # cut at the left and bottom edges
    assert torch.equal(image[:, 31, 31], torch.full((3,), 0.5))  # no tile there: grey


def _cut_tiles() -> list[tuple[torch.Tensor, Target]]:
    """A 100 x 100 anchor whose boxes the centre (50, 50) cuts to known fractions, and three empty tiles."""
    boxes = torch.tensor(
        [
            [0, 0, 100, 100],  # visible [0, 0, 50, 50]: 0.25 of it
            [40, 40, 100, 100],  # visible [0, 0, 50, 50]: 2500 / 3600 of it
            [0, 0, 60, 60],  # visible [0, 0, 10, 10]: 100 / 3600 of it
            [45, 0, 100, 51],  # visible [0, 0, 50, 1]: 1 px high
            [0, 0, 40, 40],  # entirely outside the canvas
        ],
        dtype=torch.float32,
    )
    anchor = (torch.zeros((3, 100, 100)), Target(boxes=boxes, labels=torch.arange(5), image_id=9))
    empty = (torch.ones((3, 10, 10)), Target())
    return [anchor, empty, empty, empty]


def test_boxes_cut_below_min_visible_or_min_box_size_are_dropped():
    scales = [1.0, 0.1, 0.1, 0.1]
    _, target = mosaic(_cut_tiles(), centre=(50, 50), scales=scales, min_visible=0.25, min_box_size=2.0)
    assert target.labels.tolist() == [0, 1] and target.image_id == 9
    assert torch.equal(target.boxes, torch.tensor([[0, 0, 50, 50], [0, 0, 50, 50]], dtype=torch.float32))

    _, target = mosaic(_cut_tiles(), centre=(50, 50), scales=scales, min_visible=0.7, min_box_size=2.0)
    assert target.labels.tolist() == []

    # No thresholds at all: every box that shows is kept, the one cut away entirely is not.
    _, target = mosaic(_cut_tiles(), centre=(50, 50), scales=scales, min_visible=0.0, min_box_size=0.0)
    assert target.labels.tolist() == [0, 1, 2, 3]
    assert torch.equal(target.boxes[3], torch.tensor([0, 0, 50, 1], dtype=torch.float32))


def test_masks_are_pasted_inside_their_boxes():
    for _, (image, target) in _draws(_coloured_dataset(with_masks=True)):
        side = image.shape[-1]
        assert target.masks is not None
        assert target.masks.dtype == torch.uint8 and target.masks.shape == (len(target), side, side)
        for mask, box in zip(target.masks, target.boxes):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert len(xs) > 0
            centres_x, centres_y = xs + 0.5, ys + 0.5
            assert (centres_x >= box[0]).all() and (centres_x <= box[2]).all()
            assert (centres_y >= box[1]).all() and (centres_y <= box[3]).all()


def test_masks_are_none_unless_every_tile_has_them():
    tiles = [_coloured_item(k, with_masks=k != 2) for k in range(4)]
    _, target = mosaic(tiles, centre=(16, 16), scales=[1.0] * 4)
    assert target.masks is None and len(target) > 0
    for _, (_, target) in _draws(_coloured_dataset(with_masks=False)):
        assert target.masks is None


@pytest.mark.parametrize("with_masks", [False, True])
def test_empty_targets_give_empty_tensors(with_masks):
    items = []
    for k, (height, width) in enumerate(SIZES):
        masks = torch.zeros((0, height, width), dtype=torch.uint8) if with_masks else None
        items.append((_solid((height, width), COLOURS[k]), Target(masks=masks, image_id=k)))
    for index, (_image, target) in _draws(_ListDataset(items)):
        side = max(SIZES[index])
        assert target.boxes.shape == (0, 4) and target.boxes.dtype == torch.float32
        assert target.labels.shape == (0,) and target.labels.dtype == torch.int64
        assert target.iscrowd.shape == (0,) and target.iscrowd.dtype == torch.bool
        if with_masks:
            assert target.masks.shape == (0, side, side) and target.masks.dtype == torch.uint8
        else:
            assert target.masks is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prob": -0.1},
        {"prob": 1.5},
        {"scale_range": (0.0, 1.0)},
        {"scale_range": (1.5, 0.5)},
        {"min_visible": 1.5},
        {"min_box_size": -1.0},
    ],
)
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        MosaicDataset(_coloured_dataset(), **kwargs)


def test_mosaic_needs_four_tiles_and_scales():
    with pytest.raises(ValueError):
        mosaic([_coloured_item(0)] * 3, centre=(8, 8), scales=[1.0] * 3)
