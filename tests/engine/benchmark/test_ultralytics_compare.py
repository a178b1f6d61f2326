"""`benchmark --compare ultralytics`: a clear line without Ultralytics, and a real alternated run with it.

Ultralytics is never installed by detkit (AGPL); the second test runs only where a user or developer
has it (docs/development.md: the separate environment our measurements use).
"""

from __future__ import annotations

import sys

import pytest
import torch

from detkit.engine.benchmark.ultralytics_compare import compare_with_ultralytics, letterbox
from detkit.errors import ConfigError
from tests.cli.helpers import invoke


def test_without_ultralytics_the_command_says_how_to_get_it_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # import fails as when it is not installed
    out = tmp_path / "bench"
    result = invoke("benchmark", "--pipelines", "yolo", "--compare", "ultralytics", "--out", str(out))
    assert result.exit_code == 3
    assert "pip install ultralytics" in result.output and "AGPL" in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_the_letterbox_keeps_the_aspect_and_pads_to_the_stride_around_the_centre():
    image = torch.ones(3, 50, 64)
    batch, scale, (left, top) = letterbox(image, 128)
    assert batch.shape == (1, 3, 128, 128) and scale == 2.0 and (left, top) == (0, 14)  # 100 rows padded to 128
    assert batch[0, :, 14:114].min() == 1.0 and batch[0, :, :14].max() < 0.5  # grey above the image
    assert letterbox(torch.ones(3, 48, 64), 128)[0].shape == (1, 3, 96, 128)  # 4:3 stays rectangular


def test_detkit_yolo_and_yolov8n_are_timed_in_turn_on_the_same_images():
    pytest.importorskip("ultralytics")
    images = [torch.rand(3, 96, 128)]
    comparison = compare_with_ultralytics(images, side=128, runs=2, warmup=1)
    assert comparison.peer == "yolov8n" and len(comparison.detkit_ms) == len(comparison.peer_ms) == 2
    assert 2.5e6 < comparison.detkit_params < comparison.peer_params < 3.3e6  # matched sizes
    assert comparison.ratio == comparison.detkit_median_ms / comparison.peer_median_ms > 0
    assert comparison.to_dict()["threads"] == torch.get_num_threads()


def test_the_comparison_is_cpu_float32_only():
    pytest.importorskip("ultralytics")
    from detkit.engine.benchmark.runner import BenchmarkRequest, BenchmarkSettings, run_benchmark
    from detkit.engine.precision import Precision

    settings = BenchmarkSettings(torch.device("cpu"), precision=Precision("bf16"), isolate=False)
    with pytest.raises(ConfigError, match="CPU in float32"):
        run_benchmark(BenchmarkRequest(settings, pipelines=("yolo",), compare_ultralytics=True))
