"""Fuzzing the files detkit keeps or is pointed at besides datasets: proposal cache entries, config
files and ``runs/latest.json``. Whatever their bytes, the answer is a value, a cache miss or one
line of the right error class, never another exception, a hang or a huge allocation.

Example counts (``max_examples``, ``deadline=None``): cache entries 150, config files 150,
latest.json 100. Checkpoints have their own target (test_checkpoint_fuzz.py), datasets theirs
(data/test_fuzz_readers.py).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detkit.config import ExperimentConfig
from detkit.config.overrides import load_config_file
from detkit.engine.runs import LATEST, latest_checkpoint
from detkit.errors import CheckpointError, ConfigError
from detkit.proposals.cache import read_entry
from tests.data.test_fuzz_readers import mutated

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


GOOD_ENTRY = _npy(np.arange(40, dtype=np.float32).reshape(10, 4))
OTHER_ENTRIES = [
    _npy(np.zeros((10, 4), np.float64)),
    _npy(np.zeros((3, 5), np.float32)),
    _npy(np.zeros((2000, 4), np.float32)),
    _npy(np.asfortranarray(np.zeros((6, 4), np.float32))),
    _npy(np.zeros((0, 4), np.float32)),
    GOOD_ENTRY.replace(b"(10, 4)", b"(1000000000000, 4)"),  # a header declaring 10^12 rows
]


@settings(FUZZ, max_examples=150)
@given(data=st.sampled_from([GOOD_ENTRY, *OTHER_ENTRIES]).flatmap(lambda seed: st.just(seed) | mutated(seed)))
def test_a_cache_entry_is_boxes_or_a_miss(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("entry") / "e.npy"
    path.write_bytes(data)
    boxes = read_entry(path, max_rows=100)
    if boxes is not None:
        assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) <= 100
        assert len(data) >= 16 * len(boxes)  # never more than the file holds
    if data == GOOD_ENTRY:
        assert boxes is not None and boxes.tolist() == np.arange(40, dtype=np.float32).reshape(10, 4).tolist()


GOOD_CONFIG = b"""solver: {epochs: 2, lr: 0.01, warmup_iters: 2}
data: {batch_size: 2}
model:
  backbone: {name: resnet18, pretrained: false}
  transform: {min_size: [64, 96], max_size: 128}
  anchors: {sizes: [[8], [16]], aspect_ratios: [[0.5, 1.0], [1.0, 2.0]]}
name: tiny
"""


@settings(FUZZ, max_examples=150)
@given(
    data=mutated(GOOD_CONFIG)
    | mutated(json.dumps({"solver": {"lr": 0.01}, "model": {"yolo": {"image_size": 320}}}).encode())
)
def test_a_config_file_is_a_config_or_one_config_error_line(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("config")
    for suffix in (".yaml", ".json"):
        path = folder / f"run{suffix}"
        path.write_bytes(data)
        try:
            cfg = load_config_file(ExperimentConfig(), path)
        except ConfigError as error:
            assert "\n" not in str(error) and len(str(error)) < 600 and str(path) in str(error)
            continue
        assert isinstance(cfg, ExperimentConfig)


@settings(FUZZ, max_examples=100)
@given(data=mutated(b'{\n  "checkpoint": "CHECKPOINT"\n}') | st.binary(max_size=64))
def test_latest_json_points_at_a_checkpoint_or_is_one_checkpoint_error(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("runs")
    (folder / "best.pt").write_bytes(b"PK\x03\x04")
    (folder / LATEST).write_bytes(data.replace(b"CHECKPOINT", str(folder / "best.pt").encode()))
    try:
        found = latest_checkpoint(folder)
    except CheckpointError as error:
        assert "\n" not in str(error) and str(folder / LATEST) in str(error)
        return
    assert isinstance(found, Path) and found.is_file()


def test_latest_json_that_is_a_fifo_does_not_hang(tmp_path):
    import os

    os.mkfifo(tmp_path / LATEST)
    with pytest.raises(CheckpointError, match="damaged pointer file"):
        latest_checkpoint(tmp_path)
