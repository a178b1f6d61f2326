"""``detkit train|detect|eval`` with the staged R-CNN pipeline."""

import json

from typer.testing import CliRunner

from detkit.cli.main import app
from tests.cli.helpers import invoke, train_pipeline

runner = CliRunner()

TINY_RCNN = """
solver: {optimizer: adamw, lr: 0.001, warmup_iters: 1}
data: {batch_size: 2}
model:
  backbone: {name: resnet18, pretrained: false, fpn: false, returned_stages: [5]}
  rcnn: {crop_size: 32, context_padding: 3, finetune_iters: 1, svm_steps: 20, svm_initial_negatives: 20}
"""


def test_rcnn_trains_by_stages_then_detects_and_evaluates(tmp_path):
    result, synthetic = train_pipeline(tmp_path, "rcnn", TINY_RCNN, "rcnn")
    assert result.exit_code == 0, result.output
    assert "feature cache" in result.output and "MiB" in result.output
    weights = tmp_path / "runs/rcnn/best.pt"

    result = invoke(
        "detect",
        str(synthetic / "val"),
        "--weights",
        str(weights),
        "--out",
        str(tmp_path / "dets"),
        "--score-thresh",
        "0",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "dets/detections.json").is_file()

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
        "--set",
        "model.rcnn.box_regression=false",
    )
    assert result.exit_code == 0, result.output
    assert (
        "regions x" in result.output and "per region" in result.output and "backbone" in result.output
    )  # the test-time breakdown
    assert {"AP", "AP50"} <= set(json.loads(metrics.read_text())["stats"])

    result = runner.invoke(
        app,
        [
            "eval",
            "--coco",
            str(synthetic / "annotations/instances_val.json"),
            "--images",
            str(synthetic / "val"),
            "--weights",
            str(weights),
            "--set",
            "model.rcnn.box_regresion=false",
        ],
    )
    assert result.exit_code == 3 and "box_regression" in result.output
