"""Which images each training process takes at each step of an epoch.

One epoch's order is a permutation seeded by ``(seed, epoch)`` only, so it is the same for every
process, for any number of data-loader workers, and after a resume. Global batches of
``batch_size x world_size`` images are cut from it; with orientation groups, a batch holds images of
one orientation (landscape or portrait), so the model pads them to a common size with little waste
(the leftovers of both groups end the epoch in mixed batches). Rank ``r`` takes the ``r``-th slice
of every global batch: the processes together see exactly the batches one process would see with
the global batch size. A short last batch is padded with images from the start of the epoch so that
every process takes the same number of steps (DDP needs all of them in every step).

torch's ``DistributedSampler`` shards single indices, not batches, so it cannot keep a batch's
orientation across processes, nor skip the batches a resumed run has already trained on.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from detkit.errors import ConfigError


class DetectionBatchSampler(Sampler[list[int]]):
    """Per-process batches of dataset indices for one epoch.

    ``groups``: per image a group id (e.g. ``CocoDetection.orientations()``), or None to batch in
    shuffled order regardless of shape. ``start``: global batches already trained on this epoch
    (a resumed run), skipped without reading them.
    """

    def __init__(
        self,
        num_images: int,
        *,
        batch_size: int,
        seed: int,
        epoch: int,
        groups: Sequence[int] | None = None,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        start: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size} must be at least 1")
        if groups is not None and len(groups) != num_images:
            raise ValueError(f"{len(groups)} group ids for {num_images} images")
        self.rank, self.world_size, self.start = rank, world_size, start
        order = _epoch_order(num_images, seed, epoch) if shuffle else list(range(num_images))
        self.global_batches = _cut_batches(order, groups, batch_size * world_size)
        if not 0 <= start <= len(self.global_batches):
            raise ValueError(f"start={start} is outside the epoch's {len(self.global_batches)} batches")
        self._padding = order

    def __len__(self) -> int:
        return len(self.global_batches) - self.start

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches[self.start :]:
            yield self.share(batch)

    def share(self, batch: list[int]) -> list[int]:
        """This process's slice of a global batch (padded first when it does not split evenly)."""
        per_rank = math.ceil(len(batch) / self.world_size)
        missing = per_rank * self.world_size - len(batch)
        padded = batch + [self._padding[i % len(self._padding)] for i in range(missing)]
        return padded[self.rank * per_rank : (self.rank + 1) * per_rank]


def _epoch_order(num_images: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator()
    generator.manual_seed(seed * 1000 + epoch)
    return torch.randperm(num_images, generator=generator).tolist()


def _cut_batches(order: list[int], groups: Sequence[int] | None, size: int) -> list[list[int]]:
    """Batches of ``size`` in order of completion; each group fills its own, leftovers are merged at the end."""
    if groups is None:
        return [order[i : i + size] for i in range(0, len(order), size)]
    batches: list[list[int]] = []
    filling: dict[int, list[int]] = {}
    for index in order:
        bucket = filling.setdefault(groups[index], [])
        bucket.append(index)
        if len(bucket) == size:
            batches.append(bucket)
            filling[groups[index]] = []
    left = {i for bucket in filling.values() for i in bucket}
    leftovers = [i for i in order if i in left]  # in epoch order
    batches.extend(leftovers[i : i + size] for i in range(0, len(leftovers), size))
    return batches
