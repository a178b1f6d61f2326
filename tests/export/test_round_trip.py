"""Each exportable pipeline through each format: the file's detections are the eager model's, on images
with detections and without, at every size a dynamic file takes; its metadata reads back."""

from __future__ import annotations

import json

import pytest
import torch

from detkit.engine.predict import load_detector
from detkit.export.graphs import second_size
from detkit.export.runtime import ExportedDetector
from detkit.export.verify import FP32_TOLERANCE, Agreement, compare_detections
from detkit.version import __version__
from tests.export.conftest import EXPORTABLE, FORMATS, SCORE_THRESH, blank, scenes
from tests.export.models import CATEGORY_IDS, CLASS_NAMES, CONFIGS

CPU = torch.device("cpu")
RUNTIME = {"onnx": "onnxruntime", "torchscript": "torchscript"}


def sizes_of(runner: ExportedDetector) -> list[tuple[int, int]]:
    size = runner.metadata.input_size
    return [size, second_size(size)] if runner.metadata.dynamic else [size]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("pipeline", EXPORTABLE)
def test_the_file_detects_what_the_eager_model_detects(pipeline, fmt, exported):
    item = exported(pipeline, fmt)
    assert "within tolerance" in item.output and "labels agree" in item.output
    eager, _ = load_detector(item.weights, CPU)
    runner, checkpoint = load_detector(item.path, CPU)
    assert isinstance(runner, ExportedDetector) and runner.runtime == RUNTIME[fmt]
    assert checkpoint.class_names == CLASS_NAMES and checkpoint.category_ids == CATEGORY_IDS
    cfg = CONFIGS[pipeline]
    nms_thresh = cfg.yolo.nms_thresh if pipeline == "yolo" else cfg.roi_heads.nms_thresh
    agreement = Agreement()
    with torch.inference_mode():
        for size in sizes_of(runner):
            for image in scenes(size, 1):
                want, got = eager([image]).detections[0], runner([image]).detections[0]
                assert len(want) > 0 and len(got) == len(want)
                assert got.boxes.dtype == torch.float32 and got.labels.dtype == torch.int64
                assert torch.equal(torch.sort(got.labels).values, torch.sort(want.labels).values)
                compare_detections(want, got, FP32_TOLERANCE, score_thresh=SCORE_THRESH[pipeline],
                                    detections_per_image=50, nms_thresh=nms_thresh, into=agreement)  # fmt: skip
    assert agreement.unmatched == agreement.borderline == 0 and agreement.matched == agreement.eager_detections
    assert agreement.max_box_diff < 0.05 and agreement.max_score_diff < 1e-3 and agreement.labels_agree
    if pipeline == "mask_rcnn":
        assert agreement.min_mask_iou is not None and agreement.min_mask_iou > 0.9


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("pipeline", EXPORTABLE)
def test_an_image_without_detections_gives_empty_outputs(pipeline, fmt, exported):
    item = exported(pipeline, fmt)
    eager, _ = load_detector(item.weights, CPU)
    runner, _ = load_detector(item.path, CPU)
    size = runner.metadata.input_size
    with torch.inference_mode():
        assert len(eager([blank(size)]).detections[0]) == 0  # the premise: nothing scores above the threshold
        (got,) = runner([blank(size)]).detections
    assert got.boxes.shape == (0, 4) and got.scores.shape == (0,) and got.labels.shape == (0,)
    assert got.boxes.dtype == torch.float32 and got.labels.dtype == torch.int64
    if pipeline == "mask_rcnn":
        assert got.masks is not None and got.masks.shape == (0, *size)
    else:
        assert got.masks is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_dynamic_file_is_checked_at_two_sizes_and_runs_a_third(fmt, exported):
    item = exported("yolo", fmt)
    runner, _ = load_detector(item.path, CPU)
    first, second = sizes_of(runner)
    assert f"at {first[0]}x{first[1]} and {second[0]}x{second[1]}" in item.output
    assert runner.fixed_size is None
    eager, _ = load_detector(item.weights, CPU)
    (image,) = scenes((40, 90), 1)  # neither of the checked sizes, and not a multiple of the strides
    with torch.inference_mode():
        want, got = eager([image]).detections[0], runner([image]).detections[0]
    assert len(got) == len(want) > 0 and float((got.boxes - want.boxes).abs().max()) < 0.05


def test_a_fixed_size_file_letterboxes_other_sizes(exported):
    item = exported("fast_rcnn", "onnx")
    runner, _ = load_detector(item.path, CPU)
    assert runner.fixed_size == runner.metadata.input_size and not runner.metadata.dynamic
    (image,) = scenes((70, 50), 1)  # portrait, into the landscape input
    with torch.inference_mode():
        (got,) = runner([image]).detections
    assert len(got) > 0
    assert float(got.boxes[:, 2].max()) <= 50 + 1e-3 and float(got.boxes[:, 3].max()) <= 70 + 1e-3


@pytest.mark.parametrize("fmt", FORMATS)
def test_metadata_reads_back(fmt, exported):
    item = exported("mask_rcnn", fmt)
    properties = _raw_metadata(item.path, fmt)
    assert properties["detkit.format"] == "detkit-export-v1" and properties["detkit.version"] == __version__
    assert properties["detkit.pipeline"] == "mask_rcnn" and properties["detkit.precision"] == "fp32"
    assert json.loads(properties["detkit.class_names"]) == CLASS_NAMES
    assert json.loads(properties["detkit.category_ids"]) == CATEGORY_IDS
    transform = CONFIGS["mask_rcnn"].transform
    normalization = json.loads(properties["detkit.normalization"])
    assert normalization["mean"] == pytest.approx(list(transform.image_mean))
    assert normalization["std"] == pytest.approx(list(transform.image_std))
    assert normalization["scale"] == pytest.approx(1 / 255)
    assert json.loads(properties["detkit.input_size"]) == [64, 85] and json.loads(properties["detkit.dynamic"])
    inputs = json.loads(properties["detkit.inputs"])
    outputs = [o["name"] for o in json.loads(properties["detkit.outputs"])]
    assert inputs[0]["name"] == "image" and inputs[0]["dtype"] == "uint8" and len(inputs) == 1
    assert outputs == ["boxes", "scores", "labels", "masks"]
    assert json.loads(properties["detkit.score_thresh"]) == SCORE_THRESH["mask_rcnn"]
    assert json.loads(properties["detkit.config"])["model"]["pipeline"] == "mask_rcnn"


def test_fast_rcnn_takes_proposals_as_a_second_input(exported):
    properties = _raw_metadata(exported("fast_rcnn", "onnx").path, "onnx")
    assert [i["name"] for i in json.loads(properties["detkit.inputs"])] == ["image", "proposals"]
    import onnxruntime as ort

    session = ort.InferenceSession(str(exported("fast_rcnn", "onnx").path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [
        ("image", "tensor(uint8)"),
        ("proposals", "tensor(float)"),
    ]
    assert isinstance(session.get_inputs()[1].shape[0], str)  # any number of proposals


def _raw_metadata(path, fmt) -> dict[str, str]:
    """The file's key/value pairs, read with the format's own library rather than detkit's reader."""
    if fmt == "onnx":
        import onnx

        return {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    from detkit.export.metadata import KEYS

    extra = dict.fromkeys(KEYS, "")
    torch.jit.load(str(path), _extra_files=extra)
    return {k: v.decode() for k, v in extra.items() if v}
