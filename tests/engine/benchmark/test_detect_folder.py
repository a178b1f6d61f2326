"""`benchmark --detect DIR`: the whole detect command over a folder, timed run after run, and its refusals.

The Ultralytics side runs only where Ultralytics is installed (never by detkit: AGPL).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from detkit.engine.benchmark.detect_folder import FolderBenchmarkRequest, benchmark_detect_folder
from detkit.errors import ConfigError, DataError
from tests.cli.helpers import invoke


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index, size in enumerate([(48, 64), (64, 40), (56, 56)]):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"p{index}.jpg")
    return folder


def test_each_timed_run_is_a_whole_detect_over_the_folder(photos):
    request = FolderBenchmarkRequest(photos, side=64, runs=2, warmup=0)
    result = benchmark_detect_folder(request)
    assert result.images == 3 and len(result.detkit.seconds) == 2 and result.peer is None and result.ratio is None
    assert result.detkit.images_per_second(3) == 3 / result.detkit.median_seconds > 0
    assert result.threads == torch.get_num_threads() and result.side == 64
    assert result.to_dict()["detkit"]["seconds"] == result.detkit.seconds


def test_the_command_prints_the_table_and_writes_the_json_atomically(photos, tmp_path):
    out = tmp_path / "bench"
    result = invoke("benchmark", "--detect", str(photos), "--image-size", "64", "--runs", "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "detect over" in result.output and "detkit detect" in result.output
    written = json.loads((out / "detect_benchmark.json").read_text())
    assert written["images"] == 3 and written["peer"] is None and len(written["detkit"]["seconds"]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["detect_benchmark.json"]  # no temporary file left


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--compare", "torchvision"], "Ultralytics only"),
        (["--weights", "a.pt", "--weights", "b.pt"], "pass --weights once"),
        (["--workers", "-1"], "--workers"),
    ],
)
def test_options_that_do_not_fit_a_folder_run_are_refused_in_one_line(photos, tmp_path, args, expected):
    result = invoke("benchmark", "--detect", str(photos), *args, "--out", str(tmp_path / "bench"))
    assert result.exit_code != 0 and expected in result.output and "Traceback" not in result.output
    assert not (tmp_path / "bench").exists()


def test_a_folder_without_images_and_a_file_are_refused(tmp_path, photos):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images or videos found"):
        benchmark_detect_folder(FolderBenchmarkRequest(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="not a folder"):
        benchmark_detect_folder(FolderBenchmarkRequest(photos / "p0.jpg"))
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"")
    with pytest.raises(ConfigError, match="videos but no images"):
        benchmark_detect_folder(FolderBenchmarkRequest(tmp_path / "clips"))
    (photos / "b.mp4").write_bytes(b"")
    with pytest.raises(ConfigError, match="videos too"):
        benchmark_detect_folder(FolderBenchmarkRequest(photos))


def test_a_checkpoint_has_no_ultralytics_twin(photos, tmp_path):
    with pytest.raises(ConfigError, match="drop --weights"):
        benchmark_detect_folder(FolderBenchmarkRequest(photos, tmp_path / "x.pt", compare_ultralytics=True))


def test_without_ultralytics_the_comparison_says_how_to_get_it(photos, monkeypatch):
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # import fails as when it is not installed
    with pytest.raises(ConfigError, match="pip install ultralytics"):
        benchmark_detect_folder(FolderBenchmarkRequest(photos, side=64, runs=1, warmup=0, compare_ultralytics=True))


def test_detkit_and_ultralytics_take_turns_over_the_same_folder(photos):
    pytest.importorskip("ultralytics")
    request = FolderBenchmarkRequest(photos, side=64, runs=2, warmup=1, compare_ultralytics=True)
    result = benchmark_detect_folder(request)
    assert result.peer is not None and len(result.peer.seconds) == len(result.detkit.seconds) == 2
    assert result.peer_name == "yolov8n" and result.ratio is not None and result.ratio > 0
    assert torch.get_num_threads() == result.threads  # Ultralytics did not change them
