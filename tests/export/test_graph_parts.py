"""The graph-friendly steps against the eager ones they stand for, case by case (no export: milliseconds)."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from detkit.config import TransformConfig
from detkit.export.masks import paste_masks
from detkit.export.pooling import RoIPoolGraph
from detkit.export.preprocess import letterbox_size, shorter_side_size
from detkit.export.selection import batched_nms, decode_deltas, top_k_padded
from detkit.modeling.poolers import RoIPooler
from detkit.modeling.transform import ImageTransform
from detkit.modeling.yolo.letterbox import LetterboxTransform
from detkit.ops import masks as eager_masks
from detkit.ops.box_coder import BoxCoder


def eager_resized(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    transform = ImageTransform(TransformConfig(min_size=(min_size,), max_size=max_size))
    return tuple(transform._resize(torch.zeros(1, height, width), min_size).shape[-2:])  # type: ignore[return-value]


def test_resize_sizes_are_the_eager_transforms_for_every_size():
    rng = random.Random(0)
    letterbox = LetterboxTransform(640, (640,), True, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    scripted = torch.jit.script(shorter_side_size)
    for _ in range(60):
        height, width = rng.randint(17, 1400), rng.randint(17, 1400)
        assert shorter_side_size(height, width, 512, 683) == eager_resized(height, width, 512, 683)
        assert scripted(height, width, 512, 683) == eager_resized(height, width, 512, 683)
        assert letterbox_size(height, width, 640, True) == letterbox._scaled_size((height, width), 640)
    # Sizes where float32 arithmetic (the ONNX exporter's shape math) would round to the other side.
    for height, width in ((923, 794), (1133, 397), (818, 817), (109, 650)):
        assert shorter_side_size(height, width, 512, 683) == eager_resized(height, width, 512, 683)


@pytest.mark.parametrize("size", [28, 14])
def test_pasted_masks_are_the_eager_paste(size):
    generator = torch.Generator().manual_seed(size)
    masks = torch.rand(7, size, size, generator=generator)
    boxes = torch.tensor(
        [
            [10.3, 5.7, 40.2, 30.9],  # inside
            [-8.0, -4.0, 20.0, 12.5],  # over the top-left corner
            [50.0, 40.0, 90.0, 70.0],  # over the bottom-right corner
            [30.0, 20.0, 30.4, 20.2],  # smaller than a pixel
            [12.0, 9.0, 11.0, 8.0],  # inverted: pastes nothing
            [5.0, 5.0, 5.0 + size - 2.0, 5.0 + size - 2.0],  # grown to exactly the mask's padded size
            [0.0, 0.0, 64.0, 48.0],  # the whole image
        ]
    )
    got = paste_masks(masks, boxes, 48, 64)
    want = eager_masks.paste_masks(masks, boxes, (48, 64))
    assert got.shape == want.shape == (7, 48, 64)
    assert float((got - want).abs().max()) < 1e-5
    assert paste_masks(masks[:0], boxes[:0], 48, 64).shape == (0, 48, 64)


def test_top_k_padded_is_top_k_of_what_there_is():
    values = torch.tensor([0.3, 0.9, 0.1])
    top, index, valid = top_k_padded(values, 5)
    assert valid.tolist() == [True, True, True, False, False]
    assert top[:3].tolist() == pytest.approx([0.9, 0.3, 0.1]) and index[:3].tolist() == [1, 0, 2]
    assert torch.isinf(top[3:]).all() and index[3:].tolist() == [0, 0]
    many = torch.arange(10.0)
    top, index, valid = top_k_padded(many, 4)
    assert valid.all() and index.tolist() == [9, 8, 7, 6]


def test_decoding_is_the_box_coder():
    generator = torch.Generator().manual_seed(0)
    boxes = torch.rand(20, 2, generator=generator) * 50
    boxes = torch.cat([boxes, boxes + 1 + torch.rand(20, 2, generator=generator) * 30], dim=1)
    deltas = torch.randn(20, 4, generator=generator) * 3  # large enough to reach the exp() clamp
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    want = coder.decode(deltas, boxes)[:, 0]
    assert torch.equal(decode_deltas(deltas, boxes, list(coder.weights), coder.scale_clamp), want)


def test_batched_nms_keeps_groups_apart_and_takes_no_boxes():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert batched_nms(boxes, scores, torch.tensor([0, 0, 1]), 0.5).tolist() == [0, 2]
    assert batched_nms(boxes[:0], scores[:0], torch.zeros(0, dtype=torch.int64), 0.5).shape == (0,)


@pytest.mark.parametrize("kind", ["roi_align", "roi_pool"])
def test_pooling_is_the_eager_pooler_with_empty_levels(kind):
    generator = torch.Generator().manual_seed(1)
    pooler = RoIPooler(kind, 7, [4, 8, 16], sampling_ratio=2, aligned=kind == "roi_align", canonical_scale=56)
    features = [torch.rand(1, 8, 64 // s, 64 // s, generator=generator) for s in (4, 8, 16)]
    boxes = torch.tensor([[2.0, 3.0, 20.0, 25.0], [5.0, 5.0, 60.0, 62.0]])  # levels 0 and 2; level 1 is empty
    graph = RoIPoolGraph(pooler)
    assert torch.equal(graph(features, boxes), pooler(features, [boxes]))
    assert graph(features, boxes[:0]).shape == (0, 8, 7, 7)
    single = RoIPooler(kind, 7, [16])
    assert torch.equal(RoIPoolGraph(single)(features[2:], boxes), single(features[2:], [boxes]))


def test_the_letterbox_resize_of_a_square_model_is_square():
    assert letterbox_size(300, 100, 96, False) == (96, 96)
    assert letterbox_size(300, 100, 96, True) == (96, 32)
    image = torch.rand(1, 3, 300, 100)
    assert F.interpolate(image, size=list(letterbox_size(300, 100, 96, True))).shape[-2:] == (96, 32)
