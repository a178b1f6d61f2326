"""The commands as a user runs them, through Typer's CliRunner."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from detkit.cli.main import app
from tests.cli.helpers import invoke, synthesize, train_on

runner = CliRunner()

TINY_CONFIG = """
solver: {epochs: 1, lr: 0.01, warmup_iters: 2}
data: {batch_size: 2}
model:
  backbone: {name: resnet18, pretrained: false, norm: bn, trainable_stages: 5, fpn_channels: 16, fpn_extra_pool: false}
  transform: {min_size: [64], max_size: 64}
  anchors:
    sizes: [[8], [16], [32], [64]]
    aspect_ratios: [[0.5, 1.0, 2.0], [0.5, 1.0, 2.0], [0.5, 1.0, 2.0], [0.5, 1.0, 2.0]]
  rpn: {pre_nms_topk_train: 100, post_nms_topk_train: 50, pre_nms_topk_test: 50, post_nms_topk_test: 20}
  roi_heads: {representation_size: 32, batch_size_per_image: 16}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Synth a tiny dataset, train one epoch on it; shared by the detect and eval tests."""
    root = tmp_path_factory.mktemp("cli")
    data = synthesize(root / "synthetic", num_train=6, num_val=3)
    config = root / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    result = train_on(data, config, root / "runs", "tiny")
    assert result.exit_code == 0, result.output
    return root, data


def test_help_is_fast_and_imports_no_torch():
    code = (
        "import sys; from typer.testing import CliRunner; from detkit.cli.main import app; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
        "assert 'train' in r.output and 'detect' in r.output and 'eval' in r.output; "
        "assert 'torch' not in sys.modules, 'detkit --help imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_train_writes_a_complete_run(trained):
    root, _ = trained
    run = root / "runs" / "tiny"
    for name in ("best.pt", "last.pt", "config.json", "metrics.jsonl", "curves.png"):
        assert (run / name).is_file(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("val" in r for r in records)
    assert json.loads((root / "runs" / "latest.json").read_text())["checkpoint"].endswith("best.pt")
    assert not list(run.glob(".*.tmp")), "no temporary files left behind"


def test_detect_writes_tables_images_and_results(trained, tmp_path):
    root, data = trained
    out = tmp_path / "dets"
    result = invoke(
        "detect",
        str(data / "val"),
        "--weights",
        str(root / "runs/tiny/best.pt"),
        "--out",
        str(out),
        "--score-thresh",
        "0.0",
        "--threads",
        "1",
    )
    assert result.exit_code == 0, result.output
    assert "detections" in result.output and "(1 CPU thread)" in result.output
    assert len(list(out.glob("*.png"))) == 3
    records = json.loads((out / "detections.json").read_text())
    assert all({"image_id", "category_id", "bbox", "score", "file_name"} <= r.keys() for r in records)
    assert all(r["image_id"] >= 1 for r in records)


def test_decoding_workers_and_batches_change_nothing_but_the_time(trained, tmp_path):
    root, data = trained
    weights = str(root / "runs/tiny/best.pt")
    streams = []
    for workers, batch in (("0", "1"), ("2", "2")):
        out = tmp_path / f"w{workers}"
        args = ("--weights", weights, "--out", str(out), "--score-thresh", "0.0", "--quiet")
        result = invoke("detect", str(data / "val"), *args, "--workers", workers, "--batch-size", batch)
        assert result.exit_code == 0, result.output
        speed = " ".join(result.output.split()).split("Speed: ")[1]
        assert all(f"{phase} " in speed for phase in ("decode", "wait", "preprocess", "model", "postprocess", "draw"))
        assert f"images/s over 3 images at batch {batch}" in speed and ("in 2 workers" in speed) == (workers == "2")
        streams.append([json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()])
        assert len(list(out.glob("*.png"))) == 3
    assert [r["file_name"] for r in streams[0]] == [r["file_name"] for r in streams[1]]
    for first, second in zip(*streams):
        assert [d["category_id"] for d in first["detections"]] == [d["category_id"] for d in second["detections"]]
        for a, b in zip(first["detections"], second["detections"]):
            assert a["bbox"] == pytest.approx(b["bbox"], abs=1e-3) and a["score"] == pytest.approx(b["score"], abs=1e-4)


def test_a_broken_image_read_by_a_worker_is_one_line(trained, tmp_path):
    root, data = trained
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes((data / "val" / "000001.png").read_bytes())
    (photos / "b.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    args = ("--weights", str(root / "runs/tiny/best.pt"), "--out", str(out), "--workers", "1", "--quiet")
    result = invoke("detect", str(photos), *args)
    assert result.exit_code == 2 and "b.png" in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("error")]) == 1
    assert [json.loads(line)["file_name"] for line in (out / "detections.jsonl").read_text().splitlines()] == [
        str(photos / "a.png")
    ]  # the image before it is kept


def test_detect_without_weights_uses_the_latest_run(trained, tmp_path, monkeypatch):
    root, data = trained
    monkeypatch.chdir(root)  # runs/latest.json is looked up in the working directory
    result = invoke("detect", str(data / "val" / "000001.png"), "--out", str(tmp_path / "d"), "--quiet")
    assert result.exit_code == 0, result.output


def test_eval_model_and_results_file(trained, tmp_path):
    root, data = trained
    annotations = data / "annotations/instances_val.json"
    out = tmp_path / "metrics.json"
    result = invoke(
        "eval",
        "--coco",
        str(annotations),
        "--images",
        str(data / "val"),
        "--weights",
        str(root / "runs/tiny/best.pt"),
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "CPU thread" in result.output  # the default count, whatever this machine's is
    assert set(json.loads(out.read_text())["stats"]) >= {"AP", "AP50", "AR100"}

    # The ground truth as a results file scores a perfect AP without any model.
    gt = json.loads(annotations.read_text())
    perfect = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in gt["annotations"]
    ]
    results = tmp_path / "perfect.json"
    results.write_text(json.dumps(perfect))
    result = invoke("eval", "--coco", str(annotations), "--results", str(results), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["stats"]["AP"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("args", "exit_code", "needle"),
    [
        (["detect", "no_such_image.jpg", "--weights", "x.pt"], 2, "no_such_image.jpg"),
        (["eval", "--coco", "missing.json", "--results", "r.json"], 2, "missing.json"),
        (["train", "--set", "solver.lrr=0.1"], 3, "did you mean 'solver.lr'"),
        (["train", "--pipeline", "detr"], 3, "unknown pipeline"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args, exit_code, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == exit_code, result.output
    assert needle in result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1


def test_corrupt_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint at all")
    image = tmp_path / "img.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    result = runner.invoke(app, ["detect", str(image), "--weights", str(bad)])
    assert result.exit_code == 4 and "broken.pt" in result.output and "Traceback" not in result.output


def test_resume_continues_with_the_runs_own_config(trained, tmp_path):
    """Only --epochs is given: the tiny model settings must come from the run's config.json."""
    import shutil

    from detkit.checkpoint import load_checkpoint

    root, _ = trained
    run = tmp_path / "tiny-copy"
    shutil.copytree(root / "runs" / "tiny", run)
    result = invoke("train", "--resume", str(run), "--epochs", "2")
    assert result.exit_code == 0, result.output
    state = load_checkpoint(run / "last.pt").training_state
    assert state["epoch"] == 2


def test_resume_of_a_folder_without_a_run_is_one_line(tmp_path):
    result = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert result.exit_code == 2 and "config.json" in result.output and "Traceback" not in result.output


def test_eval_refuses_categories_the_model_does_not_know(trained, tmp_path):
    root, data = trained
    gt = json.loads((data / "annotations/instances_val.json").read_text())
    gt["categories"].append({"id": 99, "name": "hexagon", "supercategory": "shape"})
    gt["annotations"][0]["category_id"] = 99
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps(gt))
    result = runner.invoke(
        app,
        ["eval", "--coco", str(foreign), "--images", str(data / "val"), "--weights", str(root / "runs/tiny/best.pt")],
    )
    assert result.exit_code == 2 and "[99]" in result.output and "Traceback" not in result.output
