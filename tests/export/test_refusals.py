"""What `detkit export` and the runners refuse: one line naming the file and the fix, the right exit
code, and no file left behind."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from detkit.checkpoint import Checkpoint, save_checkpoint
from detkit.config import BackboneConfig, ExperimentConfig, ModelConfig, RCNNConfig
from detkit.pipelines import PIPELINES
from tests.cli.helpers import invoke
from tests.export.models import CATEGORY_IDS, CLASS_NAMES


def an_image(folder) -> str:
    """A folder holding one small image: detect reads its inputs before it loads the model."""
    folder.mkdir(exist_ok=True)
    cv2.imwrite(str(folder / "a.png"), np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return str(folder)


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


@pytest.fixture(scope="module")
def rcnn_checkpoint(tmp_path_factory):
    cfg = ModelConfig(
        pipeline="rcnn",
        num_classes=len(CLASS_NAMES),
        backbone=BackboneConfig(name="resnet18", fpn=False, returned_stages=(3,)),
        rcnn=RCNNConfig(crop_size=32, context_padding=2),
    )
    torch.manual_seed(0)
    model = PIPELINES["rcnn"].build(cfg)
    path = tmp_path_factory.mktemp("rcnn") / "rcnn.pt"
    save_checkpoint(path, Checkpoint(ExperimentConfig(model=cfg), model.state_dict(), CLASS_NAMES, CATEGORY_IDS))
    return path


def test_rcnn_is_refused_with_the_reason(rcnn_checkpoint, tmp_path):
    out = tmp_path / "rcnn.onnx"
    result = invoke("export", str(rcnn_checkpoint), "--out", str(out))
    assert result.exit_code == 3
    line = one_error_line(result.output)
    assert "rcnn" in line and "warped" in line and "SVMs" in line and "--part cnn" in line
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_rcnn_region_cnn_exports_with_part_cnn(rcnn_checkpoint, tmp_path):
    out = tmp_path / "cnn.torchscript"
    result = invoke(
        "export", str(rcnn_checkpoint), "--part", "cnn", "--format", "torchscript", "--out", str(out),
        "--check-count", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "largest feature difference" in result.output and out.is_file()
    features = torch.jit.load(str(out))(torch.rand(2, 3, 32, 32))
    assert features.shape == (2, 128)  # ResNet-18's stage 3 channels, pooled
    detect = invoke("detect", an_image(tmp_path / "images"), "--weights", str(out), "--out", str(tmp_path / "dets"))
    assert detect.exit_code == 3 and "--part cnn" in one_error_line(detect.output)


def test_a_missing_extra_names_it(checkpoints, monkeypatch, tmp_path):
    weights = checkpoints("yolo")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    out = tmp_path / "yolo.onnx"
    result = invoke("export", str(weights), "--out", str(out))
    assert result.exit_code == 1
    line = one_error_line(result.output)
    assert "onnxruntime" in line and "pip install 'detkit[export]'" in line
    assert not out.exists()


def test_a_corrupt_onnx_file_is_a_checkpoint_error(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07this is not protobuf" * 10)
    result = invoke("detect", an_image(tmp_path / "images"), "--weights", str(bad), "--out", str(tmp_path / "dets"))
    assert result.exit_code == 4
    line = one_error_line(result.output)
    assert str(bad) in line and "detkit export" in line
    assert not (tmp_path / "dets").exists()


def test_an_onnx_file_not_made_by_detkit_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["image"], ["boxes"])
    graph = helper.make_graph(
        [node],
        "foreign",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [3, 8, 8])],
        [helper.make_tensor_value_info("boxes", TensorProto.UINT8, [3, 8, 8])],
    )
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(foreign))
    result = invoke("eval", "--coco", str(tmp_path / "none.json"), "--weights", str(foreign))
    assert result.exit_code == 4 and "not a detkit export" in one_error_line(result.output)


def test_a_missing_exported_file_is_a_checkpoint_error(tmp_path):
    result = invoke("detect", an_image(tmp_path / "images"), "--weights", str(tmp_path / "gone.torchscript"))
    assert result.exit_code == 4 and "gone.torchscript" in one_error_line(result.output)


def test_runtime_settings_an_export_fixed_are_refused(exported, tmp_path):
    path, images = exported("yolo", "torchscript").path, an_image(tmp_path / "images")
    low = invoke("detect", images, "--weights", str(path), "--score-thresh", "0.1", "--out", str(tmp_path / "d"))
    assert low.exit_code == 3 and "below the 0.35 exported" in one_error_line(low.output)
    overridden = invoke("detect", images, "--weights", str(path), "--set", "model.yolo.nms_thresh=0.5")
    assert overridden.exit_code == 3 and "detkit export" in one_error_line(overridden.output)


def test_a_file_beyond_tolerance_is_removed(checkpoints, tmp_path):
    """Frozen TorchScript folds BatchNorm into the convolutions: boxes move by ~1e-3 px, past a 1e-9 tolerance."""
    weights = checkpoints("faster_rcnn")
    out = tmp_path / "faster.torchscript"
    result = invoke(
        "export", str(weights), "--format", "torchscript", "--out", str(out), "--box-tol", "1e-9",
        "--score-tol", "1e-9", "--check-count", "1",
    )  # fmt: skip
    assert result.exit_code == 1
    line = one_error_line(result.output)
    assert "differ from the eager model's" in line and "the file was removed" in line
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "tflite"], "--format tflite: choose onnx or torchscript"),
        (["--image-size", "16", "64"], "each side must be >= 32"),
        (["--opset", "13"], "opset 18 and later"),
        (["--format", "torchscript", "--opset", "18"], "--opset applies to --format onnx only"),
        (["--part", "head"], "--part head: choose detector"),
        (["--part", "cnn"], "--part cnn applies to rcnn only"),
        (["--format", "torchscript"], "a torchscript file named as onnx; name it .torchscript"),
    ],
)
def test_bad_options_are_one_line(checkpoints, tmp_path, args, message):
    weights = checkpoints("yolo")
    result = invoke("export", str(weights), "--out", str(tmp_path / "x.onnx"), *args)
    assert result.exit_code == 3 and message in one_error_line(result.output)
    assert list(tmp_path.iterdir()) == []


def test_detkit_and_its_commands_import_no_export_extra():
    """`import detkit`, the CLI and every engine module load without onnx, onnxruntime and onnxscript."""
    code = (
        "import sys, detkit, detkit.cli.main, detkit.engine.predict, detkit.engine.export, "
        "detkit.engine.benchmark.runner, detkit.export.files, detkit.export.runtime; "
        "print(sorted({'onnx', 'onnxruntime', 'onnxscript'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
