import torch

from detkit.modeling.poolers import RoIPooler


def square(size: float) -> list[float]:
    return [0.0, 0.0, size, size]


def test_level_assignment_by_hand():
    pooler = RoIPooler("roi_align", 7, strides=[4, 8, 16, 32])
    boxes = torch.tensor([square(224), square(112), square(448), square(16), square(2000), square(223)])
    # k = floor(4 + log2(s / 224)) clamped to [2, 5], then offset by the finest level (2).
    assert pooler.assign_levels(boxes).tolist() == [2, 1, 3, 0, 3, 1]


def test_each_roi_pooled_from_its_level():
    pooler = RoIPooler("roi_align", 2, strides=[4, 8], sampling_ratio=1, aligned=True)
    fine, coarse = torch.full((1, 1, 32, 32), 1.0), torch.full((1, 1, 16, 16), 2.0)
    pooled = pooler([fine, coarse], [torch.tensor([square(20), square(120)])])
    assert pooled.shape == (2, 1, 2, 2)
    assert pooled[0].unique().tolist() == [1.0] and pooled[1].unique().tolist() == [2.0]


def test_roi_pool_and_empty():
    pooler = RoIPooler("roi_pool", 7, strides=[16])
    out = pooler([torch.rand(2, 4, 10, 10)], [torch.zeros(0, 4), torch.tensor([[0.0, 0.0, 64.0, 64.0]])])
    assert out.shape == (1, 4, 7, 7)
    assert pooler([torch.rand(1, 4, 10, 10)], [torch.zeros(0, 4)]).shape == (0, 4, 7, 7)
