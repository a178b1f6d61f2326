"""Which images each process trains on: shuffled per epoch, orientation groups, shares of global batches."""

import pytest
import torch

from detkit.data.loaders import build_batch_loader
from detkit.data.sampler import DetectionBatchSampler
from detkit.data.seeded import SeededItems, hash_ints


def batches(num_images=10, **kwargs):
    kwargs = {"batch_size": 2, "seed": 0, "epoch": 0, **kwargs}
    return list(DetectionBatchSampler(num_images, **kwargs))


def test_an_epoch_is_a_seeded_permutation_cut_into_batches():
    first = batches()
    assert [len(b) for b in first] == [2] * 5 and sorted(i for b in first for i in b) == list(range(10))
    assert first == batches() and first != batches(epoch=1) and first != batches(seed=1)
    assert batches(shuffle=False) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


def test_the_processes_together_take_the_batches_of_one_process():
    single = batches(batch_size=4)
    shares = [batches(batch_size=2, rank=r, world_size=2) for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == len(single) == 3
    for step, global_batch in enumerate(single[:-1]):  # full batches: split in order
        assert shares[0][step] + shares[1][step] == global_batch


def test_a_short_last_batch_is_padded_so_every_process_steps():
    shares = [batches(num_images=5, batch_size=2, rank=r, world_size=2) for r in range(2)]
    last = [share[-1] for share in shares]  # 1 image left for 2 processes
    assert len(last[0]) == len(last[1]) == 1
    taken = [i for share in shares for b in share for i in b]
    assert len(taken) == 6 and set(taken) == set(range(5))  # every image once, one repeated as padding


def test_orientation_groups_keep_batches_of_one_shape():
    groups = [0, 1] * 6  # alternate landscape and portrait
    cut = batches(num_images=12, batch_size=3, groups=groups)
    assert sorted(i for b in cut for i in b) == list(range(12))
    assert all(len({groups[i] for i in b}) == 1 for b in cut)
    mixed = batches(num_images=7, batch_size=2, groups=[0, 0, 0, 1, 1, 1, 1])
    assert sum(len({[0, 0, 0, 1, 1, 1, 1][i] for i in b}) > 1 for b in mixed) <= 1  # only the leftovers mix


def test_a_resumed_epoch_skips_the_batches_already_trained_on():
    whole = batches()
    assert batches(start=3) == whole[3:]
    assert len(DetectionBatchSampler(10, batch_size=2, seed=0, epoch=0, start=3)) == 2
    with pytest.raises(ValueError):
        batches(start=6)


class _Noisy(torch.utils.data.Dataset):
    """Items drawn from torch's generator: what augmentation does."""

    def __len__(self):
        return 6

    def __getitem__(self, index):
        return torch.rand(2), index


def test_seeded_items_do_not_depend_on_order_workers_or_the_callers_state():
    items = SeededItems(_Noisy(), seed=3, epoch=1)
    forward = [items[i][0] for i in range(6)]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    backward = [items[i][0] for i in reversed(range(6))][::-1]
    assert all(torch.equal(a, b) for a, b in zip(forward, backward))
    assert torch.equal(torch.get_rng_state(), state)  # the caller's stream is untouched
    assert not torch.equal(SeededItems(_Noisy(), seed=3, epoch=2)[0][0], forward[0])
    sampler = DetectionBatchSampler(6, batch_size=2, seed=0, epoch=0, shuffle=False)
    with_workers = build_batch_loader(items, sampler, num_workers=2)
    loaded = [image for images, _ in with_workers for image in images]
    assert all(torch.equal(a, b) for a, b in zip(loaded, forward))


def test_seed_mixing_separates_nearby_inputs():
    seeds = {hash_ints(0, epoch, index) for epoch in range(10) for index in range(100)}
    assert len(seeds) == 1000 and all(0 <= s < 2**63 for s in seeds)
