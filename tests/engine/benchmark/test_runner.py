"""The whole benchmark on tiny inputs: every pipeline, training, a checkpoint with AP, the four output files."""

import json
from dataclasses import replace

import cv2
import pytest
import torch

from detkit.checkpoint import Checkpoint, save_checkpoint
from detkit.data.synthetic import CATEGORY_IDS, CLASS_NAMES, generate_synthetic_coco
from detkit.engine.benchmark.models import random_model
from detkit.engine.benchmark.outputs import save_report
from detkit.engine.benchmark.runner import BenchmarkRequest, BenchmarkSettings, run_benchmark
from detkit.engine.precision import Precision
from detkit.modeling.stages import STAGE_ORDER
from detkit.pipelines import PIPELINES

PIPELINE_NAMES = tuple(PIPELINES)
CPU = torch.device("cpu")
TINY = BenchmarkSettings(
    device=CPU, precision=Precision(), batch_size=2, runs=2, warmup=1, max_seconds=30.0, isolate=False
)
# Small heads and crops, so five pipelines fit in seconds; every override exists in every config.
SMALL = (
    "model.rcnn.crop_size=32",
    "model.rcnn.context_padding=2",
    "model.roi_heads.representation_size=64",
    "model.rpn.post_nms_topk_test=50",
    "model.rpn.pre_nms_topk_test=100",
    "model.yolo.width_multiple=0.25",
    "model.backbone.fpn_channels=32",
    "model.proposals.topk=50",
)


@pytest.fixture(scope="module")
def report():
    request = BenchmarkRequest(
        settings=replace(TINY, train=True),
        pipelines=PIPELINE_NAMES,
        backbone="resnet18",
        long_side=64,
        images=2,
        overrides=SMALL,
    )
    return run_benchmark(request)


def test_every_pipeline_is_measured_in_every_column(report):
    rows = {r.pipeline: r for r in report.results}
    assert list(rows) == list(PIPELINE_NAMES)
    for r in report.results:
        assert len(r.latency.ms) in (2, 4) and min(r.latency.ms) > 0  # one or two passes over 1 call of 2 images
        assert r.latency.images_per_call == 2 and r.ms_per_image > 0
        assert set(r.stages_ms) <= set(STAGE_ORDER) and "backbone" in r.stages_ms
        assert r.params > 0 and r.gflops > 0 and r.peak_rss_mib > 0 and r.cuda_peak_mib is None
        assert r.train_images_per_second > 0 and r.ap is None
    assert {"proposals", "svms"} <= set(rows["rcnn"].stages_ms) and rows["rcnn"].regions_per_image > 0
    assert "proposals" in rows["fast_rcnn"].stages_ms and "rpn" in rows["faster_rcnn"].stages_ms
    assert "mask_head" in rows["mask_rcnn"].stages_ms and "dense_head" in rows["yolo"].stages_ms
    assert rows["faster_rcnn"].relative_to_reference == 1.0
    assert rows["yolo"].relative_to_reference == pytest.approx(
        rows["yolo"].ms_per_image / rows["faster_rcnn"].ms_per_image
    )
    env = report.environment
    assert env["device"] == "cpu" and env["precision"] == "fp32" and env["threads"] == torch.get_num_threads()
    assert env["torch"] == torch.__version__ and env["input"] == "2 synthetic scenes of 48x64"


def test_the_four_outputs_are_written_whole(report, tmp_path):
    paths = save_report(report, tmp_path / "bench")
    record = json.loads(paths["json"].read_text())
    assert [r["pipeline"] for r in record["results"]] == list(PIPELINE_NAMES)
    assert record["environment"]["batch_size"] == 2 and record["results"][0]["images_per_second"] > 0
    markdown = paths["markdown"].read_text()
    assert all(f"| {name} | random |" in markdown for name in PIPELINE_NAMES) and "Per-stage time" in markdown
    for kind in ("stages", "accuracy"):
        image = cv2.imread(str(paths[kind]))
        assert image is not None and image.shape[1] == 1280 and image.min() < 100  # drawn on, not blank
    assert sorted(p.name for p in (tmp_path / "bench").iterdir()) == sorted(p.name for p in paths.values())


def test_a_checkpoint_on_annotated_data_gets_its_ap(tmp_path):
    data = generate_synthetic_coco(tmp_path / "data", num_train=1, num_val=3, image_size=(64, 64), seed=2)
    annotations, images = data["val"]
    entry = random_model(
        "yolo", "resnet18", 64, num_classes=len(CLASS_NAMES), overrides=["model.yolo.width_multiple=0.25"]
    )
    weights = tmp_path / "yolo.pt"
    save_checkpoint(weights, Checkpoint(entry.config, entry.model.state_dict(), list(CLASS_NAMES), list(CATEGORY_IDS)))
    # Measured in a fresh process, as the command does by default.
    request = BenchmarkRequest(
        settings=replace(TINY, isolate=True), weights=(weights,), data=annotations, data_images=images, images=2
    )
    (result,) = run_benchmark(request).results
    assert result.weights == str(weights) and result.name == "yolo" and result.pipeline == "yolo"
    assert 0.0 <= result.ap <= 1.0 and 0.0 <= result.ap50 <= 1.0
    assert result.latency.images_per_call == 2 and result.relative_to_reference is None
