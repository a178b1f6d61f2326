"""``detkit proposals`` and the fast_rcnn pipeline through train, detect and eval."""

import json

import pytest
from typer.testing import CliRunner

from detkit.cli.main import app
from tests.cli.helpers import invoke, synthesize, train_on

runner = CliRunner()

TINY_FAST_RCNN = """
solver: {epochs: 1, lr: 0.01, warmup_iters: 2}
data: {batch_size: 2}
model:
  backbone: {name: resnet18, pretrained: false, fpn: false}
  transform: {min_size: [64], max_size: 64}
  roi_heads: {representation_size: 32, batch_size_per_image: 16}
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast_cli")
    synthesize(root / "synthetic", num_train=6, num_val=3)
    return root


def test_proposals_report_recall_and_the_second_run_reads_the_cache(data, tmp_path):
    annotations = data / "synthetic/annotations/instances_val.json"
    args = [
        "proposals",
        str(annotations),
        "--images",
        str(data / "synthetic/val"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--workers",
        "1",
    ]
    result = invoke(*args, "--out", str(tmp_path / "first.json"))
    assert result.exit_code == 0, result.output
    assert "recall @ IoU 0.5" in result.output and "circle" in result.output
    first = json.loads((tmp_path / "first.json").read_text())
    assert first["num_images"] == 3 and first["num_computed"] == 3 and first["proposals_per_image"] > 0
    assert set(first["recall"]) == {"0.5", "0.7"} and 0.0 <= first["recall"]["0.5"] <= 1.0
    result = invoke(*args, "--out", str(tmp_path / "second.json"))
    second = json.loads((tmp_path / "second.json").read_text())
    assert second["num_computed"] == 0 and second["recall"] == first["recall"]


def test_proposals_of_an_image_folder_and_of_a_bad_mode(data, tmp_path):
    result = invoke("proposals", str(data / "synthetic/val"), "--cache-dir", str(tmp_path), "--workers", "1")
    assert result.exit_code == 0, result.output and "recall" not in result.output
    result = runner.invoke(
        app, ["proposals", str(data / "synthetic/val"), "--mode", "slow", "--cache-dir", str(tmp_path)]
    )
    assert result.exit_code == 3 and "fast, quality" in result.output


def test_fast_rcnn_trains_detects_and_evaluates(data, tmp_path):
    synthetic = data / "synthetic"
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_FAST_RCNN)
    result = train_on(synthetic, config, tmp_path / "runs", "fast", "--pipeline", "fast_rcnn")
    assert result.exit_code == 0, result.output
    assert "recall@0.5" in result.output  # the proposal pass reported what it covers
    weights = tmp_path / "runs/fast/best.pt"
    saved = json.loads((tmp_path / "runs/fast/config.json").read_text())
    assert saved["model"]["pipeline"] == "fast_rcnn" and saved["model"]["roi_heads"]["pooler"] == "roi_pool"

    out = tmp_path / "dets"
    result = invoke(
        "detect",
        str(synthetic / "val"),
        "--weights",
        str(weights),
        "--out",
        str(out),
        "--score-thresh",
        "0",
        "--quiet",
        "--svd-rank",
        "8",
    )
    assert result.exit_code == 0, result.output
    assert (out / "detections.json").is_file()

    metrics = tmp_path / "metrics.json"
    result = invoke(
        "eval",
        "--coco",
        str(synthetic / "annotations/instances_val.json"),
        "--images",
        str(synthetic / "val"),
        "--weights",
        str(weights),
        "--out",
        str(metrics),
    )
    assert result.exit_code == 0, result.output
    assert set(json.loads(metrics.read_text())["stats"]) >= {"AP", "AP50"}
