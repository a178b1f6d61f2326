"""DataLoaders for detection: images keep their own sizes, so a batch is two lists, not a tensor."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from detkit.structures import Target


def collate_detection(batch: Sequence[tuple[Tensor, Target]]) -> tuple[list[Tensor], list[Target]]:
    """``[(image [3, H_i, W_i], Target), ...]`` -> ``([images], [targets])``; padding is the model's job."""
    images = [image for image, _ in batch]
    targets = [target for _, target in batch]
    return images, targets


def _seed_worker(worker_id: int) -> None:
    # The DataLoader seeds torch per worker; numpy and random would otherwise repeat across workers.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_loader(
    dataset: Dataset[tuple[Tensor, Target]],
    *,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader[tuple[Tensor, Target]]:
    """A DataLoader yielding ``(list[Tensor[3, H, W]], list[Target])`` batches.

    The shuffle order and the per-worker seeds come from a generator seeded with ``seed``, so two
    loaders built alike yield the same batches in the same order.
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=collate_detection,
        generator=generator,
        worker_init_fn=_seed_worker if num_workers > 0 else None,
        persistent_workers=num_workers > 0,
        drop_last=drop_last,
    )


def build_batch_loader(
    dataset: Dataset[tuple[Tensor, Target]],
    batch_sampler: Sampler[list[int]],
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader[tuple[Tensor, Target]]:
    """A DataLoader over the index batches of ``batch_sampler`` (e.g. ``DetectionBatchSampler``), yielding
    ``(list[Tensor[3, H, W]], list[Target])``; ``pin_memory`` page-locks the images for fast GPU copies."""
    return DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=num_workers,
        collate_fn=collate_detection,
        pin_memory=pin_memory,
        worker_init_fn=_seed_worker if num_workers > 0 else None,
    )
