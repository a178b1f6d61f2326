import cv2
import numpy as np
import pytest

from detkit.config import ProposalConfig
from detkit.errors import DataError
from detkit.proposals.parallel import MIN_IMAGES_FOR_POOL, propose_files
from detkit.proposals.selective_search import selective_search
from tests.proposals.images import rectangles_image


def write_images(folder, count):
    paths = []
    for index in range(count):
        image = np.roll(rectangles_image(), shift=7 * index, axis=1)  # different content per file
        path = folder / f"{index}.png"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def test_workers_compute_misses_and_a_second_pass_only_reads(tmp_path):
    paths = write_images(tmp_path, MIN_IMAGES_FOR_POOL)  # enough for the pool to start
    cfg = ProposalConfig(cache_dir=str(tmp_path / "cache"))
    first = dict(propose_files(paths, cfg, workers=2))
    assert sorted(first) == list(range(len(paths))) and not any(r.cached for r in first.values())
    for index, path in enumerate(paths):
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(first[index].boxes, selective_search(image, cfg))
        assert first[index].image_size == (128, 128)
    second = dict(propose_files(paths, cfg, workers=2))
    assert all(r.cached for r in second.values())


def test_an_unreadable_image_names_the_file(tmp_path):
    paths = write_images(tmp_path, 1)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match="broken.jpg"):
        list(propose_files(paths + [broken], ProposalConfig(cache_dir=str(tmp_path / "cache")), workers=1))
