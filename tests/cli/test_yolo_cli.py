"""YOLO through train, detect and eval, with EMA, mosaic and colour jitter on."""

import json

from tests.cli.helpers import invoke, train_pipeline

YOLO_CONFIG = """
solver: {epochs: 2, optimizer: adamw, lr: 0.001, warmup_iters: 2, ema_decay: 0.99, ema_ramp_steps: 2}
data: {batch_size: 2, mosaic_prob: 1.0, mosaic_off_epochs: 1, color_jitter: 0.2}
model:
  backbone: {name: resnet18, pretrained: false, norm: bn}
  yolo: {image_size: 64, train_sizes: [64, 96], width_multiple: 0.125}
"""


def test_yolo_trains_detects_and_evaluates(tmp_path):
    result, synthetic = train_pipeline(tmp_path, "yolo", YOLO_CONFIG, "yolo")
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs/yolo"
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"]["pipeline"] == "yolo" and saved["data"]["mosaic_prob"] == 1.0

    out = tmp_path / "dets"
    result = invoke(
        "detect",
        str(synthetic / "val"),
        "--weights",
        str(run / "best.pt"),
        "--out",
        str(out),
        "--score-thresh",
        "0",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    records = json.loads((out / "detections.json").read_text())
    assert records and all(len(r["bbox"]) == 4 and 0 <= r["score"] <= 1 for r in records)

    metrics = tmp_path / "metrics.json"
    result = invoke(
        "eval",
        "--coco",
        str(synthetic / "annotations/instances_val.json"),
        "--images",
        str(synthetic / "val"),
        "--weights",
        str(run / "best.pt"),
        "--out",
        str(metrics),
    )
    assert result.exit_code == 0, result.output
    assert {"AP", "AP50"} <= set(json.loads(metrics.read_text())["stats"])


def test_mosaic_with_selective_search_proposals_is_refused(tmp_path):
    result, _ = train_pipeline(tmp_path, "fast_rcnn", "data: {mosaic_prob: 0.5}\n", "fast")
    assert result.exit_code != 0 and "data.mosaic_prob" in result.output
