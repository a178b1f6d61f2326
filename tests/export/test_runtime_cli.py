"""`detkit detect` and `detkit eval` run exported files as they run checkpoints: the same files, the same
records, the same numbers (a dynamic file runs each image at its own size, as eager does)."""

from __future__ import annotations

import json

import pytest

from detkit.data.synthetic import generate_synthetic_coco
from tests.cli.helpers import invoke


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three 64 px synthetic images with their COCO json (the test models' class ids are its first three)."""
    return generate_synthetic_coco(tmp_path_factory.mktemp("coco"), num_train=1, num_val=3, image_size=(64, 64))["val"]


def detect(weights, images, out):
    result = invoke("detect", str(images), "--weights", str(weights), "--out", str(out), "--score-thresh", "0.6")
    assert result.exit_code == 0, result.output
    return json.loads((out / "detections.json").read_text()), [
        json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()
    ]


def test_detect_writes_what_it_writes_for_the_checkpoint(exported, dataset, tmp_path):
    item = exported("mask_rcnn", "onnx")
    _, images = dataset
    eager_results, eager_lines = detect(item.weights, images, tmp_path / "eager")
    results, lines = detect(item.path, images, tmp_path / "onnx")
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == sorted(
        p.name for p in (tmp_path / "eager").iterdir()
    )
    assert len(results) == len(eager_results) > 0
    for got, want in zip(results, eager_results):
        assert got.keys() == want.keys() and got["category_id"] == want["category_id"]
        assert got["image_id"] == want["image_id"] and abs(got["score"] - want["score"]) < 1e-3
        assert max(abs(a - b) for a, b in zip(got["bbox"], want["bbox"])) < 0.05
        assert got["segmentation"]["size"] == want["segmentation"]["size"]
    assert [line.keys() for line in lines] == [line.keys() for line in eager_lines]


def test_eval_scores_the_file_as_the_checkpoint(exported, dataset, tmp_path):
    item = exported("faster_rcnn", "torchscript")
    annotations, images = dataset
    numbers = {}
    for name, weights in (("eager", item.weights), ("torchscript", item.path)):
        out = tmp_path / f"{name}.json"
        result = invoke(
            "eval", "--coco", str(annotations), "--images", str(images), "--weights", str(weights),
            "--score-thresh", "0.6", "--out", str(out),
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        numbers[name] = json.loads(out.read_text())
    assert numbers["torchscript"].keys() == numbers["eager"].keys()
    assert numbers["torchscript"]["stats"] == pytest.approx(numbers["eager"]["stats"], abs=1e-3)
    assert numbers["torchscript"]["num_detections"] == numbers["eager"]["num_detections"] > 0
