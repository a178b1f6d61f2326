"""Random augmentation that depends on what is loaded, not on who loads it or when.

Each item of an epoch gets its own random stream, seeded by ``(seed, epoch, index)``. So the
flips, colour jitter and mosaic partners of an image are the same with any number of loader
workers, on whichever training process takes it, and in a run resumed mid-epoch: what makes a
killed-and-resumed run end with an uninterrupted run's weights, and data-parallel runs see the
single-process augmentations.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

import torch
from torch.utils.data import Dataset

T_co = TypeVar("T_co", covariant=True)


def hash_ints(*values: int) -> int:
    """Mix integers, e.g. (run seed, epoch, item), into one 63-bit seed; distinct inputs give
    well-separated streams (splitmix64 steps; Python's ``hash`` is salted per process)."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (value & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        state = (state ^ (state >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        state ^= state >> 31
    return state >> 1


class Items(Protocol[T_co]):
    """A map-style dataset with a length: what a wrapper reads of the dataset it wraps."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int, /) -> T_co: ...


class SeededItems(Dataset[T_co]):
    """``dataset`` whose item ``i`` is produced under torch's global generator seeded by ``(seed, epoch, i)``.

    The caller's random state is restored afterwards. detkit's transforms and mosaic draw from
    torch's generator only, which is what this pins.
    """

    def __init__(self, dataset: Items[T_co], *, seed: int, epoch: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> T_co:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash_ints(self.seed, self.epoch, index))
            return self.dataset[index]
