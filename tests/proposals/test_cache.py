from dataclasses import replace

import numpy as np

from detkit.config import ProposalConfig
from detkit.proposals import cache as cache_module
from detkit.proposals.cache import ProposalCache, image_digest
from tests.proposals.images import rectangles_image


def counting_selective_search(monkeypatch) -> list[int]:
    calls = []
    original = cache_module.selective_search

    def counted(image, cfg):
        calls.append(1)
        return original(image, cfg)

    monkeypatch.setattr(cache_module, "selective_search", counted)
    return calls


def test_second_lookup_reads_the_cache(tmp_path, monkeypatch):
    calls = counting_selective_search(monkeypatch)
    cache = ProposalCache(ProposalConfig(cache_dir=str(tmp_path)))
    image = rectangles_image()
    first, first_cached = cache.get(image)
    second, second_cached = ProposalCache(ProposalConfig(cache_dir=str(tmp_path))).get(image.copy())
    assert (first_cached, second_cached) == (False, True) and len(calls) == 1
    np.testing.assert_array_equal(first, second)
    assert (cache.folder / "params.json").is_file()
    assert not list(tmp_path.rglob("*.tmp")), "atomic writes leave no temporary files"


def test_changed_parameter_or_pixels_recompute(tmp_path, monkeypatch):
    calls = counting_selective_search(monkeypatch)
    cfg = ProposalConfig(cache_dir=str(tmp_path))
    image = rectangles_image()
    ProposalCache(cfg).get(image)
    _, cached = ProposalCache(replace(cfg, topk=10)).get(image)
    assert not cached
    edited = image.copy()
    edited[0, 0] = 0
    _, cached = ProposalCache(cfg).get(edited)
    assert not cached and len(calls) == 3


def test_with_the_cache_off_every_lookup_computes_and_nothing_is_written(tmp_path, monkeypatch):
    calls = counting_selective_search(monkeypatch)
    cache = ProposalCache(ProposalConfig(cache_dir=str(tmp_path), cache=False))
    image = rectangles_image()
    first, first_cached = cache.get(image)
    second, second_cached = cache.get(image)
    assert (first_cached, second_cached) == (False, False) and len(calls) == 2
    np.testing.assert_array_equal(first, second)
    assert not list(tmp_path.iterdir())
    assert cache.folder.name == ProposalCache(ProposalConfig(cache_dir=str(tmp_path))).folder.name


def test_the_cache_location_does_not_change_the_key(tmp_path):
    assert (
        ProposalCache(ProposalConfig(cache_dir=str(tmp_path / "a"))).folder.name
        == ProposalCache(ProposalConfig(cache_dir=str(tmp_path / "b"))).folder.name
    )


def test_a_corrupt_entry_is_recomputed(tmp_path):
    cache = ProposalCache(ProposalConfig(cache_dir=str(tmp_path)))
    image = rectangles_image()
    expected, _ = cache.get(image)
    cache.path_for(image).write_bytes(b"not an npy file")
    boxes, cached = cache.get(image)
    assert not cached
    np.testing.assert_array_equal(boxes, expected)


def test_digest_covers_shape_as_well_as_bytes():
    image = rectangles_image(64, 96)
    assert image_digest(image) != image_digest(image.reshape(96, 64, 3))
    assert image_digest(image) == image_digest(image.copy())
