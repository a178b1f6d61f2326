"""The image transform (detkit/modeling/transform.py): resizing, normalising, padding, and mapping back.

Covers: the shorter side resized to min_size unless the longer side would pass max_size, with the
aspect ratio kept; the min_size used in eval and the random choice among them in training;
normalisation and zero padding to a multiple of size_divisible at the bottom and right; batching
images of different sizes; targets (boxes, masks, proposals) resized with their image; and
``postprocess`` mapping boxes back to each original frame per axis, round-tripping a box within
1e-4 px, and pasting RoI-frame masks at the mapped boxes.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torchvision.ops import masks_to_boxes

from detkit.config import TransformConfig
from detkit.modeling.transform import ImageTransform, pad_images
from detkit.structures import Detections, ImageBatch, Target

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def make_transform(min_size: tuple[int, ...] = (80,), max_size: int = 200, size_divisible: int = 32) -> ImageTransform:
    cfg = TransformConfig(
        min_size=min_size, max_size=max_size, image_mean=MEAN, image_std=STD, size_divisible=size_divisible
    )
    return ImageTransform(cfg).eval()


def images_of(*sizes: tuple[int, int]) -> list[Tensor]:
    return [torch.full((3, h, w), 0.5) for h, w in sizes]


@pytest.mark.parametrize(
    ("size", "resized"),
    [
        ((40, 60), (80, 120)),  # shorter side 40 -> 80: scale 2, longer side 120 <= 200
        ((60, 40), (120, 80)),  # portrait: height is the longer side
        ((20, 100), (40, 200)),  # scale 4 would make the longer side 400: capped at 200 / 100 = 2
        ((80, 120), (80, 120)),  # already there
        ((160, 240), (80, 120)),  # shrinking follows the same rule
    ],
)
def test_resize_respects_min_and_max_size(size: tuple[int, int], resized: tuple[int, int]) -> None:
    batch, targets = make_transform()(images_of(size))
    assert batch.image_sizes == [resized] and batch.original_sizes == [size]
    assert targets is None


@pytest.mark.parametrize("size", [(37, 53), (50, 29), (123, 45)])
def test_resize_keeps_the_aspect_ratio(size: tuple[int, int]) -> None:
    (resized,) = make_transform(min_size=(64,), max_size=1000)(images_of(size))[0].image_sizes
    assert min(resized) == 64
    # output sizes are whole pixels (floored): within one pixel of the exact ratio
    assert abs(resized[1] - resized[0] * size[1] / size[0]) <= 1.0


def test_eval_uses_the_last_min_size_and_training_picks_among_them() -> None:
    transform = make_transform(min_size=(40, 80))
    assert transform.eval()(images_of((40, 60)))[0].image_sizes == [(80, 120)]
    torch.manual_seed(0)
    transform.train()
    seen = {transform(images_of((40, 60)))[0].image_sizes[0] for _ in range(20)}
    assert seen == {(40, 60), (80, 120)}


def test_images_are_normalised_then_padded_with_zeros() -> None:
    batch, _ = make_transform()(images_of((40, 60)))
    assert batch.tensors.shape == (1, 3, 96, 128)  # 80 x 120 rounded up to multiples of 32
    for channel in range(3):
        inside = batch.tensors[0, channel, :80, :120]
        torch.testing.assert_close(inside, torch.full_like(inside, (0.5 - MEAN[channel]) / STD[channel]))
    assert batch.tensors[0, :, 80:].abs().max() == 0 and batch.tensors[0, :, :, 120:].abs().max() == 0


def test_images_of_different_sizes_share_one_padded_tensor() -> None:
    images = [torch.rand(3, 40, 60), torch.rand(3, 60, 40)]
    batch, _ = make_transform()(images)
    assert isinstance(batch, ImageBatch) and len(batch) == 2
    assert batch.image_sizes == [(80, 120), (120, 80)] and batch.original_sizes == [(40, 60), (60, 40)]
    assert batch.tensors.shape == (2, 3, 128, 128) and batch.padded_size == (128, 128)
    assert all(given is kept for given, kept in zip(images, batch.images))  # un-normalised, as given
    portrait = batch.tensors[1]
    assert portrait[:, :120, :80].abs().sum() > 0
    assert portrait[:, 120:].abs().max() == 0 and portrait[:, :, 80:].abs().max() == 0


def test_pad_images_rounds_up_only_when_needed() -> None:
    assert pad_images([torch.ones(3, 64, 96)], 32).shape == (1, 3, 64, 96)
    assert pad_images([torch.ones(3, 65, 96)], 32).shape == (1, 3, 96, 96)
    assert pad_images([torch.ones(3, 10, 10)], 32, min_size=(40, 0)).shape == (1, 3, 64, 32)
    assert pad_images([torch.ones(3, 10, 10), torch.ones(3, 20, 5)], 1).shape == (2, 3, 20, 10)


def test_targets_are_resized_with_their_image() -> None:
    masks = torch.zeros(1, 40, 60, dtype=torch.uint8)
    masks[0, 5:25, 10:30] = 1
    target = Target(
        boxes=torch.tensor([[10.0, 5.0, 30.0, 25.0]]),
        labels=torch.tensor([2]),
        masks=masks,
        proposals=torch.tensor([[0.0, 0.0, 60.0, 40.0]]),
        image_id=7,
    )
    _, (resized,) = make_transform()(images_of((40, 60)), [target])
    assert resized.boxes.tolist() == [[20.0, 10.0, 60.0, 50.0]]
    assert resized.proposals.tolist() == [[0.0, 0.0, 120.0, 80.0]]
    assert resized.labels.tolist() == [2] and resized.image_id == 7
    assert resized.masks.shape == (1, 80, 120) and resized.masks.dtype == torch.uint8
    assert masks_to_boxes(resized.masks.bool()).tolist() == [[20.0, 10.0, 59.0, 49.0]]  # inclusive pixel extents


def test_postprocess_maps_boxes_back_per_axis() -> None:
    # (37, 53) resizes to (64, 91): the axes have different ratios, 37 / 64 and 53 / 91
    transform = make_transform(min_size=(64,), max_size=1000)
    batch, _ = transform(images_of((37, 53), (40, 60)))
    assert batch.image_sizes == [(64, 91), (64, 96)]
    detections = [
        Detections(
            boxes=torch.tensor([[0.0, 0.0, 91.0, 64.0], [45.5, 16.0, 91.0, 32.0]]),
            scores=torch.tensor([0.9, 0.4]),
            labels=torch.tensor([1, 0]),
        ),
        Detections(boxes=torch.tensor([[16.0, 8.0, 48.0, 32.0]]), scores=torch.tensor([0.5]), labels=torch.tensor([2])),
    ]
    first, second = transform.postprocess(detections, batch)
    torch.testing.assert_close(first.boxes, torch.tensor([[0.0, 0.0, 53.0, 37.0], [26.5, 9.25, 53.0, 18.5]]))
    torch.testing.assert_close(second.boxes, torch.tensor([[10.0, 5.0, 30.0, 20.0]]))  # scale 1.6 both ways
    assert first.scores.tolist() == pytest.approx([0.9, 0.4]) and first.labels.tolist() == [1, 0]
    assert first.masks is None


@pytest.mark.parametrize("size", [(37, 53), (50, 29), (123, 45), (40, 60)])
def test_a_box_round_trips_to_the_original_frame(size: tuple[int, int]) -> None:
    transform = make_transform(min_size=(64,), max_size=100)
    box = torch.tensor([[3.25, 5.5, 20.75, 28.125]])
    batch, (resized,) = transform(images_of(size), [Target(boxes=box, labels=torch.tensor([0]))])
    assert batch.image_sizes[0] != size
    detections = Detections(boxes=resized.boxes, scores=torch.ones(1), labels=torch.zeros(1, dtype=torch.int64))
    (back,) = transform.postprocess([detections], batch)
    torch.testing.assert_close(back.boxes, box, atol=1e-4, rtol=0)


def test_postprocess_pastes_masks_at_the_mapped_box() -> None:
    transform = make_transform()
    batch, _ = transform(images_of((40, 60)))
    left_half = torch.zeros(1, 28, 28)
    left_half[:, :, :14] = 1.0
    detections = Detections(
        boxes=torch.tensor([[40.0, 20.0, 80.0, 60.0]]),
        scores=torch.ones(1),
        labels=torch.zeros(1, dtype=torch.int64),
        masks=left_half,
    )
    (mapped,) = transform.postprocess([detections], batch)
    assert mapped.masks.shape == (1, 40, 60)  # the original frame
    # the box maps to [20, 10, 40, 30]; its left half is x in [20, 30]
    extent = masks_to_boxes(mapped.masks > 0.5)[0]
    torch.testing.assert_close(extent, torch.tensor([20.0, 10.0, 30.0, 30.0]), atol=1.0, rtol=0)


def test_postprocess_of_no_detections() -> None:
    transform = make_transform()
    batch, _ = transform(images_of((40, 60)))
    (mapped,) = transform.postprocess([Detections(masks=torch.zeros(0, 28, 28))], batch)
    assert mapped.boxes.shape == (0, 4) and mapped.masks.shape == (0, 40, 60)
    (plain,) = transform.postprocess([Detections()], batch)
    assert plain.boxes.shape == (0, 4) and plain.masks is None
