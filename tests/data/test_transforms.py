"""Paired image/target transforms: flips move boxes and masks with the pixels."""

from __future__ import annotations

import torch

from detkit.data.transforms import Compose, RandomHorizontalFlip, RandomPhotometric, hflip
from detkit.structures import Target


def _target_from_masks(masks: torch.Tensor) -> Target:
    """Tight xyxy pixel boxes (x2 = x_max + 1) of ``uint8 [M, H, W]`` masks."""
    boxes = []
    for mask in masks:
        ys, xs = torch.nonzero(mask, as_tuple=True)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return Target(
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.arange(len(masks), dtype=torch.int64),
        masks=masks,
        image_id=5,
    )


def _sample() -> tuple[torch.Tensor, Target]:
    masks = torch.zeros((2, 12, 20), dtype=torch.uint8)
    masks[0, 2:5, 1:7] = 1
    masks[1, 6:11, 13:20] = 1
    image = torch.rand((3, 12, 20), generator=torch.Generator().manual_seed(0))
    return image, _target_from_masks(masks)


def test_flip_moves_boxes_with_the_masks():
    image, target = _sample()
    flipped_image, flipped = hflip(image, target)
    assert torch.equal(flipped_image, image.flip(-1))
    assert torch.equal(flipped.boxes, torch.tensor([[13, 2, 19, 5], [0, 6, 7, 11]], dtype=torch.float32))
    assert torch.equal(flipped.boxes, _target_from_masks(flipped.masks).boxes)
    assert torch.equal(flipped.labels, target.labels) and flipped.image_id == 5


def test_flip_twice_is_identity_and_leaves_the_input_alone():
    image, target = _sample()
    boxes_before = target.boxes.clone()
    back_image, back = hflip(*hflip(image, target))
    assert torch.equal(back_image, image)
    assert torch.equal(back.boxes, target.boxes) and torch.equal(back.masks, target.masks)
    assert torch.equal(target.boxes, boxes_before)


def test_flip_of_an_empty_target_without_masks():
    image = torch.zeros((3, 4, 6))
    _, flipped = hflip(image, Target())
    assert flipped.boxes.shape == (0, 4) and flipped.masks is None


def test_random_flip_probability_and_generator():
    image, target = _sample()
    assert torch.equal(RandomHorizontalFlip(p=0.0)(image, target)[1].boxes, target.boxes)
    assert torch.equal(RandomHorizontalFlip(p=1.0)(image, target)[1].boxes, hflip(image, target)[1].boxes)

    def decisions(seed: int) -> list[bool]:
        flip = RandomHorizontalFlip(p=0.5, generator=torch.Generator().manual_seed(seed))
        return [not torch.equal(flip(image, target)[0], image) for _ in range(40)]

    assert decisions(3) == decisions(3)
    assert 5 < sum(decisions(3)) < 35


def test_photometric_changes_only_the_image():
    image, target = _sample()
    jitter = RandomPhotometric(0.4, 0.4, 0.4, generator=torch.Generator().manual_seed(1))
    out_image, out_target = jitter(image, target)
    assert out_target is target
    assert out_image.shape == image.shape and out_image.dtype == torch.float32
    assert 0.0 <= float(out_image.min()) and float(out_image.max()) <= 1.0
    assert not torch.equal(out_image, image)
    again = RandomPhotometric(0.4, 0.4, 0.4, generator=torch.Generator().manual_seed(1))(image, target)[0]
    assert torch.equal(out_image, again)
    assert torch.equal(RandomPhotometric(0.0, 0.0, 0.0)(image, target)[0], image)


def test_compose_applies_in_order():
    image, target = _sample()
    calls = []

    def record(name):
        def transform(img, tgt):
            calls.append(name)
            return img, tgt

        return transform

    pipeline = Compose([record("a"), RandomHorizontalFlip(p=1.0), record("b")])
    out_image, out_target = pipeline(image, target)
    assert calls == ["a", "b"]
    assert torch.equal(out_image, image.flip(-1))


def test_flip_moves_proposals_with_the_boxes():
    boxes = torch.tensor([[2.0, 3.0, 10.0, 8.0]])
    target = Target(
        boxes=boxes, labels=torch.tensor([0]), proposals=torch.tensor([[0.0, 0.0, 5.0, 5.0], [2.0, 3.0, 10.0, 8.0]])
    )
    _, flipped = hflip(torch.zeros(3, 10, 20), target)
    torch.testing.assert_close(flipped.proposals, torch.tensor([[15.0, 0.0, 20.0, 5.0], [10.0, 3.0, 18.0, 8.0]]))
    torch.testing.assert_close(flipped.proposals[1], flipped.boxes[0])
