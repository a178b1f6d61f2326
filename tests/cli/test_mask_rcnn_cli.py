"""Mask R-CNN through train, detect and eval: masks trained, drawn, written as RLE and scored as segm."""

import json

from tests.cli.helpers import invoke, train_pipeline
from tests.cli.test_cli import TINY_CONFIG


def test_mask_rcnn_trains_detects_with_rle_and_scores_segm(tmp_path):
    result, synthetic = train_pipeline(
        tmp_path, "mask_rcnn", TINY_CONFIG + "  mask: {conv_channels: 8, num_convs: 1}\n", "mask"
    )
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (tmp_path / "runs/mask/metrics.jsonl").read_text().splitlines()]
    assert any("mask_AP" in record.get("val", {}) for record in log)
    weights = tmp_path / "runs/mask/best.pt"

    out = tmp_path / "dets"
    result = invoke(
        "detect", str(synthetic / "val"), "--weights", str(weights), "--out", str(out), "--score-thresh", "0", "--quiet"
    )
    assert result.exit_code == 0, result.output
    records = json.loads((out / "detections.json").read_text())
    assert records and all(set(r["segmentation"]) == {"size", "counts"} for r in records)

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
    assert result.exit_code == 0, result.output and "COCO segm" in result.output
    report = json.loads(metrics.read_text())
    assert {"AP", "AP50"} <= set(report["stats"]) and {"AP", "AP50"} <= set(report["segm"]["stats"])
