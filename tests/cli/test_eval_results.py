"""``detkit eval --results``: a results file scored without torch, mask results (``--iou-type``),
annotation id 0, and the 12 numbers of both backends and of pycocotools alone on real COCO."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from typer.testing import CliRunner

from detkit.cli.main import app
from detkit.evaluation.coco_eval import STAT_NAMES

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
# pycocotools' mask.decode warns under numpy 2; the warning is the library's, not detkit's.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
BACKENDS = [
    "pycocotools",
    pytest.param(
        "faster_coco_eval",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("faster_coco_eval") is None, reason="faster-coco-eval is not installed"
        ),
    ),
]

# Calls the CLI in this process, then prints which heavy modules that loaded.
_DRIVER = """
import json, sys
from detkit.cli.main import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    heavy = ("torch", "torchvision", "detkit.pipelines", "detkit.modeling", "detkit.engine.evaluate")
    print(json.dumps(sorted(name for name in heavy if name in sys.modules)))
"""


def _ground_truth(first_id: int = 1, masks: bool = True) -> dict:
    """Two 40x30 images, two categories, five rectangles (xywh) with their polygons; annotation ids
    from ``first_id``."""
    boxes = [(1, 1, [2, 3, 12, 10]), (1, 2, [20, 5, 15, 20]), (1, 1, [5, 16, 10, 10]), (2, 2, [0, 0, 30, 25])]
    boxes.append((2, 1, [25, 2, 12, 8]))
    annotations = []
    for k, (image_id, category_id, (x, y, w, h)) in enumerate(boxes):
        ann = {
            "id": first_id + k,
            "image_id": image_id,
            "category_id": category_id,
            "bbox": [x, y, w, h],
            "area": w * h,
            "iscrowd": 0,
        }
        if masks:
            ann["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
        annotations.append(ann)
    return {
        "images": [{"id": i, "width": 40, "height": 30, "file_name": f"{i}.jpg"} for i in (1, 2)],
        "categories": [{"id": 1, "name": "square"}, {"id": 2, "name": "wide"}],
        "annotations": annotations,
    }


def _results(ground_truth: dict, *, boxes: bool = True, masks: bool = True, shift_masks: int = 0) -> list[dict]:
    """Each annotation detected exactly (box) and its mask as an RLE, moved ``shift_masks`` px right."""
    records = []
    for k, ann in enumerate(ground_truth["annotations"]):
        record = {"image_id": ann["image_id"], "category_id": ann["category_id"], "score": 0.9 - 0.1 * k}
        if boxes:
            record["bbox"] = list(ann["bbox"])
        if masks:
            rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], 30, 40))
            mask = np.roll(mask_utils.decode(rle), shift_masks, axis=1)
            encoded = mask_utils.encode(np.asfortranarray(mask))
            record["segmentation"] = {"size": [30, 40], "counts": encoded["counts"].decode("ascii")}
        records.append(record)
    return records


def _write(tmp_path: Path, ground_truth: dict, results: list[dict]) -> tuple[Path, Path]:
    (tmp_path / "gt.json").write_text(json.dumps(ground_truth))
    (tmp_path / "results.json").write_text(json.dumps(results))
    return tmp_path / "gt.json", tmp_path / "results.json"


def _eval(gt: Path, results: Path, *options: str):
    out = results.with_name("metrics.json")
    result = runner.invoke(app, ["eval", "--coco", str(gt), "--results", str(results), "--out", str(out), *options])
    return result, (json.loads(out.read_text()) if result.exit_code == 0 else None)


def test_scoring_a_results_file_imports_no_torch(tmp_path):
    gt, results = _write(tmp_path, _ground_truth(), _results(_ground_truth()))
    out = tmp_path / "metrics.json"
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, "eval", "--coco", str(gt), "--results", str(results), "--out", str(out)]
        + ["--workers", "2", "--timings"],
        cwd=ROOT,  # this checkout's detkit, whatever is installed
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []
    assert "evaluate + accumulate (2 processes)" in done.stdout  # and it forked its scoring processes
    document = json.loads(out.read_text())
    assert document["iou_type"] == "bbox" and document["segm"]["iou_type"] == "segm"  # boxes and masks: both


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_iou_types_follow_the_records_unless_asked(tmp_path, backend):
    """Masks 2 px off and exact boxes: box AP 1, mask AP below 1, so each number shows which type it is."""
    ground_truth = _ground_truth()
    gt, both = _write(tmp_path, ground_truth, _results(ground_truth, shift_masks=2))

    result, document = _eval(gt, both, "--backend", backend, "--timings")
    assert result.exit_code == 0, result.output
    assert document["iou_type"] == "bbox" and document["stats"]["AP"] == pytest.approx(1.0)
    assert document["segm"]["iou_type"] == "segm" and 0.0 < document["segm"]["stats"]["AP"] < 0.99
    assert "COCO segm: 2 images, 5 detections" in result.output
    assert "timings: find ground truth" in " ".join(result.output.split())

    result, document = _eval(gt, both, "--backend", backend, "--iou-type", "segm")
    assert document["iou_type"] == "segm" and "segm" not in document and document["stats"]["AP"] < 0.99
    assert "timings" not in result.output
    result, document = _eval(gt, both, "--backend", backend, "--iou-type", "bbox")
    assert document["iou_type"] == "bbox" and "segm" not in document

    masks_only = tmp_path / "masks_only.json"
    masks_only.write_text(json.dumps(_results(ground_truth, boxes=False)))
    result, document = _eval(gt, masks_only, "--backend", backend)
    assert result.exit_code == 0, result.output
    assert document["iou_type"] == "segm" and document["stats"]["AP"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("ground_truth_masks", "result_masks", "options", "needle"),
    [
        (True, False, ["--iou-type", "segm"], "results.json: record 0 has no 'segmentation'"),
        (False, True, [], "gt.json: no annotation has a 'segmentation'"),
        (False, True, ["--iou-type", "segm"], "gt.json: no annotation has a 'segmentation'"),
    ],
)
def test_masks_asked_for_and_missing_are_one_error_line(tmp_path, ground_truth_masks, result_masks, options, needle):
    ground_truth = _ground_truth(masks=True)
    results = _results(ground_truth, masks=result_masks)
    if not ground_truth_masks:
        ground_truth = _ground_truth(masks=False)
    gt, results_path = _write(tmp_path, ground_truth, results)
    result, _ = _eval(gt, results_path, *options)
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in " ".join(result.output.split()) and "--iou-type bbox" in result.output
    assert not results_path.with_name("metrics.json").exists()


@pytest.mark.filterwarnings("ignore:Found annotation id 0")  # faster-coco-eval's own warning, run alone below
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_match_to_annotation_id_0_counts(tmp_path, backend):
    """Both libraries read a matched id 0 as "no match"; detkit hands them its own ids, so the ground
    truth as detections still scores exactly 1, and a note says what the file has."""
    ground_truth = _ground_truth(first_id=0)
    gt, results = _write(tmp_path, ground_truth, _results(ground_truth, masks=False))
    result, document = _eval(gt, results, "--backend", backend)
    assert result.exit_code == 0, result.output
    assert document["stats"]["AP"] == pytest.approx(1.0, abs=1e-12)
    assert "annotation id 0" in " ".join(result.output.split()) and "detkit data check --fix" in document["notes"][0]
    # The hazard is real: the library alone, on the same files, loses the match to id 0.
    assert _library_stats(backend, gt, results, "bbox")[0] < 0.9


def _library_stats(backend: str, gt: Path, results: Path, iou_type: str) -> list[float]:
    """The 12 numbers of ``backend`` alone on the files, as a user's script would run it."""
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval as Evaluator
    else:
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as Evaluator
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt))
        evaluator = Evaluator(coco, coco.loadRes(str(results)), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(v) for v in evaluator.stats[:12]]


def _synthetic_detections(ground_truth: dict, count: int, seed: int) -> list[dict]:
    """Jittered ground-truth boxes (some relabelled) and random boxes, random scores."""
    rng = np.random.default_rng(seed)
    category_ids = [c["id"] for c in ground_truth["categories"]]
    sizes = {image["id"]: (image["width"], image["height"]) for image in ground_truth["images"]}
    anns = [a for a in ground_truth["annotations"] if not a.get("iscrowd")]
    records = []
    for k in range(count):
        if k % 3 and anns:
            ann = anns[int(rng.integers(len(anns)))]
            x, y, w, h = ann["bbox"]
            image_id, category = ann["image_id"], ann["category_id"]
            box = [x + rng.normal(0, 0.1) * w, y + rng.normal(0, 0.1) * h, w * rng.uniform(0.8, 1.2), h]
            category = category if rng.random() > 0.1 else int(rng.choice(category_ids))
        else:
            image_id = int(rng.choice(list(sizes)))
            width, height = sizes[image_id]
            box = [rng.uniform(0, width / 2), rng.uniform(0, height / 2), rng.uniform(4, width / 2), 30.0]
            category = int(rng.choice(category_ids))
        records.append({"image_id": image_id, "category_id": category, "bbox": box, "score": float(rng.random())})
    return records


def test_both_backends_give_pycocotools_numbers_on_coco128(tmp_path, shared_data):
    """coco128's genuine annotations x 2,000 synthetic detections, from the files: detkit with either
    backend and pycocotools alone agree on all 12 numbers."""
    gt = shared_data("coco128", "annotations", "instances_train2017.json")
    results = tmp_path / "results.json"
    results.write_text(json.dumps(_synthetic_detections(json.loads(gt.read_text()), 2000, seed=0)))
    reference = _library_stats("pycocotools", gt, results, "bbox")
    assert 0.01 < reference[0] < 0.9  # a score with work in it, not a trivial 0 or 1
    for backend in ("pycocotools", "faster_coco_eval"):
        result, document = _eval(gt, results, "--backend", backend)
        assert result.exit_code == 0, result.output
        assert document["backend"] == backend
        assert [document["stats"][name] for name in STAT_NAMES] == pytest.approx(reference, abs=1e-12), backend


@pytest.mark.parametrize("boxes", [True, False])
def test_mask_results_match_pycocotools_alone_on_tiny_coco(tmp_path, shared_data, boxes):
    """Real polygons and a crowd RLE, masks moved a few px, random scores: with and without a box per
    record (without, the mask gives the area and box, as pycocotools' loadRes does) detkit's segm
    numbers are pycocotools' own on the same files."""
    gt = shared_data("tiny_coco", "small_coco", "instances_train2017_small.json")
    dataset = json.loads(gt.read_text())
    rng = np.random.default_rng(1)
    with contextlib.redirect_stdout(io.StringIO()):
        from pycocotools.coco import COCO

        coco = COCO(str(gt))
    records = []
    for ann in dataset["annotations"]:
        if ann["iscrowd"]:
            continue
        mask = np.roll(coco.annToMask(ann), tuple(rng.integers(-3, 4, 2)), axis=(0, 1))
        rle = mask_utils.encode(np.asfortranarray(mask))
        record = {"image_id": ann["image_id"], "category_id": ann["category_id"], "score": float(rng.random())}
        record["segmentation"] = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
        if boxes:
            record["bbox"] = ann["bbox"]
        records.append(record)
    results = tmp_path / "results.json"
    results.write_text(json.dumps(records))
    reference = _library_stats("pycocotools", gt, results, "segm")
    assert 0.05 < reference[0] < 0.95
    for backend in ("pycocotools", "faster_coco_eval"):
        result, document = _eval(gt, results, "--backend", backend, "--iou-type", "segm")
        assert result.exit_code == 0, result.output
        assert [document["stats"][name] for name in STAT_NAMES] == pytest.approx(reference, abs=1e-12), backend


def test_the_ground_truth_given_is_not_changed(tmp_path):
    """Scoring writes into copies: the records and annotations of a caller's dicts stay as they were."""
    from detkit.evaluation.coco_eval import evaluate_coco_types

    ground_truth = _ground_truth()
    results = _results(ground_truth)
    before = copy.deepcopy((ground_truth, results))
    scored = evaluate_coco_types(ground_truth, results, backend="pycocotools")
    assert set(scored) == {"bbox", "segm"} and (ground_truth, results) == before
