"""Detection DataLoaders: list batches, seeded shuffling, workers."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from detkit.data.loaders import build_loader, collate_detection
from detkit.structures import Target


class _Sizes(Dataset):
    """Images of different sizes whose Target.image_id is the index."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        image = torch.full((3, 8 + index, 12), index / 10.0)
        target = Target(boxes=torch.tensor([[0.0, 0.0, 4.0, 5.0]]), labels=torch.tensor([index % 3]), image_id=index)
        return image, target


def _order(loader) -> list[int]:
    return [t.image_id for _, targets in loader for t in targets]


def test_collate_keeps_images_and_targets_as_lists():
    batch = [_Sizes()[0], _Sizes()[3]]
    images, targets = collate_detection(batch)
    assert [tuple(im.shape) for im in images] == [(3, 8, 12), (3, 11, 12)]
    assert [t.image_id for t in targets] == [0, 3]


def test_loader_batches_and_drop_last():
    loader = build_loader(_Sizes(), batch_size=4, shuffle=False)
    batches = list(loader)
    assert [len(images) for images, _ in batches] == [4, 4, 2]
    assert _order(loader) == list(range(10))
    assert len(list(build_loader(_Sizes(), batch_size=4, shuffle=False, drop_last=True))) == 2


def test_shuffle_is_seeded():
    first = _order(build_loader(_Sizes(), batch_size=3, shuffle=True, seed=4))
    assert first == _order(build_loader(_Sizes(), batch_size=3, shuffle=True, seed=4))
    assert sorted(first) == list(range(10)) and first != list(range(10))
    assert first != _order(build_loader(_Sizes(), batch_size=3, shuffle=True, seed=5))


def test_workers_yield_the_same_batches():
    loader = build_loader(_Sizes(), batch_size=3, shuffle=True, seed=4, num_workers=2)
    assert loader.persistent_workers
    assert _order(loader) == _order(build_loader(_Sizes(), batch_size=3, shuffle=True, seed=4))
