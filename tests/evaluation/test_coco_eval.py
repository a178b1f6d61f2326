"""COCO metrics: hand-computed cases, perfect detections on real COCO, and backend agreement."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from detkit.errors import ConfigError, DataError, DetkitError
from detkit.evaluation import backends
from detkit.evaluation.coco_eval import STAT_NAMES, CocoMetrics, evaluate_coco
from detkit.evaluation.results import ground_truth_as_results, write_results_json

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TINY_COCO = DATA / "tiny_coco" / "small_coco" / "instances_train2017_small.json"
HAS_FASTER = importlib.util.find_spec("faster_coco_eval") is not None
# pycocotools' mask.decode warns under numpy 2; the warning is the library's, not detkit's.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
BACKENDS = [
    "pycocotools",
    pytest.param(
        "faster_coco_eval", marks=pytest.mark.skipif(not HAS_FASTER, reason="faster-coco-eval is not installed")
    ),
]


# ----------------------------------------------------------------------------- hand-made cases


def _hand_ground_truth(boxes: list[list[float]]) -> dict:
    """One 100x100 image (id 1), one empty image (id 2), category 7 "thing"; boxes are xywh."""
    return {
        "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
        "categories": [{"id": 7, "name": "thing"}, {"id": 8, "name": "other"}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": 7, "bbox": box, "area": box[2] * box[3], "iscrowd": 0}
            for i, box in enumerate(boxes)
        ],
    }


def _det(box: list[float], score: float, image_id: int = 1, category_id: int = 7) -> dict:
    return {"image_id": image_id, "category_id": category_id, "bbox": box, "score": score}


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_exact_detection_scores_one(backend):
    metrics = evaluate_coco(_hand_ground_truth([[10, 10, 20, 20]]), [_det([10, 10, 20, 20], 0.9)], backend=backend)
    # pycocotools divides by tp + fp + eps, so a single hit has precision 1 - 2e-16.
    assert metrics.stats["AP"] == pytest.approx(1.0, abs=1e-12)
    assert metrics.stats["AR1"] == pytest.approx(1.0, abs=1e-12)
    assert metrics.per_class_ap == {"thing": pytest.approx(1.0, abs=1e-12)}
    # 20x20 = 400 px^2 is "small": the medium and large slices have no ground truth.
    assert metrics.stats["APm"] == -1 and metrics.stats["APl"] == -1
    assert metrics.backend == backend and metrics.num_images == 2 and metrics.num_detections == 1


@pytest.mark.parametrize(
    ("height", "expected_ap"),
    [
        # IoU 11.6 / 20 = 0.58: a hit at thresholds .50 and .55 only -> AP = 2/10.
        (11.6, 0.2),
        # IoU 12 / 20 = 0.6 exactly. linspace(.5, .95, 10)[2] is the double 0.6 too, and a match
        # needs IoU >= threshold, so the hit also counts at .60 -> AP = 3/10 (not 2/10).
        (12.0, 0.3),
    ],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_overlap_is_matched_at_the_thresholds_it_reaches(backend, height, expected_ap):
    metrics = evaluate_coco(_hand_ground_truth([[10, 10, 20, 20]]), [_det([10, 10, 20, height], 0.9)], backend=backend)
    assert metrics.stats["AP"] == pytest.approx(expected_ap, abs=1e-12)
    assert metrics.stats["AP50"] == pytest.approx(1.0, abs=1e-12)
    assert metrics.stats["AP75"] == 0.0
    assert metrics.stats["AR100"] == pytest.approx(expected_ap, abs=1e-12)  # recall 1 at those thresholds, else 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_101_point_interpolated_precision_by_hand(backend):
    # Two ground truths; detections by score: hit, miss, hit. Precision/recall after each:
    # (1, .5), (.5, .5), (2/3, 1). Interpolated precision is 1 for the 51 recall points
    # 0.00..0.50 and 2/3 for the 50 points 0.51..1.00: AP = (51 + 50 * 2/3) / 101 = 253/303.
    ground_truth = _hand_ground_truth([[0, 0, 20, 20], [50, 50, 20, 20]])
    results = [_det([0, 0, 20, 20], 0.9), _det([30, 0, 10, 10], 0.8), _det([50, 50, 20, 20], 0.7)]
    metrics = evaluate_coco(ground_truth, results, backend=backend)
    for name in ("AP", "AP50", "AP75", "APs"):
        assert metrics.stats[name] == pytest.approx(253 / 303, abs=1e-12)
    assert metrics.stats["AR1"] == pytest.approx(0.5, abs=1e-12)  # one detection per image: one hit
    assert metrics.stats["AR10"] == pytest.approx(1.0, abs=1e-12)
    assert metrics.per_class_ap50 == {"thing": pytest.approx(253 / 303, abs=1e-12)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_detections_on_an_image_without_ground_truth_are_false_positives(backend):
    ground_truth = _hand_ground_truth([[0, 0, 20, 20]])
    hit = _det([0, 0, 20, 20], 0.5)
    alone = evaluate_coco(ground_truth, [hit], backend=backend).stats["AP"]
    with_fp = evaluate_coco(ground_truth, [hit, _det([0, 0, 20, 20], 0.9, image_id=2)], backend=backend)
    assert alone == pytest.approx(1.0, abs=1e-12)
    # The false positive outranks the hit: precision 1/2 at every recall point.
    assert with_fp.stats["AP"] == pytest.approx(0.5, abs=1e-12)
    # Restricting to image 1 takes the empty image (and its false positive) out.
    only_first = evaluate_coco(
        ground_truth, [hit, _det([0, 0, 20, 20], 0.9, image_id=2)], backend=backend, image_ids=[1]
    )
    assert only_first.stats["AP"] == pytest.approx(1.0, abs=1e-12)
    assert only_first.num_images == 1 and only_first.num_detections == 1


def test_empty_results_give_zeros():
    metrics = evaluate_coco(_hand_ground_truth([[10, 10, 20, 20]]), [])
    assert metrics.stats == {name: 0.0 for name in STAT_NAMES}
    assert metrics.per_class_ap == {"thing": 0.0} and metrics.per_class_ap50 == {"thing": 0.0}
    assert metrics.num_detections == 0 and metrics.num_images == 2


def test_unknown_image_or_category_is_a_data_error():
    ground_truth = _hand_ground_truth([[10, 10, 20, 20]])
    with pytest.raises(DataError, match=r"record 1 has image_id 999.*annotation file"):
        evaluate_coco(ground_truth, [_det([0, 0, 5, 5], 0.5), _det([0, 0, 5, 5], 0.5, image_id=999)])
    with pytest.raises(DataError, match=r"category_id 3.*category ids"):
        evaluate_coco(ground_truth, [_det([0, 0, 5, 5], 0.5, category_id=3)])
    with pytest.raises(DataError, match="image id 5"):
        evaluate_coco(ground_truth, [_det([0, 0, 5, 5], 0.5)], image_ids=[1, 5])


def test_segm_needs_segmentations_in_the_ground_truth_and_the_records():
    ground_truth = _hand_ground_truth([[10, 10, 20, 20]])
    with pytest.raises(DataError, match=r"^ground truth: no annotation has a 'segmentation'.*--iou-type bbox"):
        evaluate_coco(ground_truth, [_det([0, 0, 5, 5], 0.5)], iou_type="segm")
    ground_truth["annotations"][0]["segmentation"] = [[10, 10, 30, 10, 30, 30, 10, 30]]
    with pytest.raises(DataError, match=r"^results: record 0 has no 'segmentation'.*--iou-type bbox"):
        evaluate_coco(ground_truth, [_det([0, 0, 5, 5], 0.5)], iou_type="segm")


def test_bad_options_and_missing_backend(monkeypatch):
    ground_truth = _hand_ground_truth([[10, 10, 20, 20]])
    with pytest.raises(ConfigError, match="iou_type"):
        evaluate_coco(ground_truth, [], iou_type="keypoints")
    with pytest.raises(ConfigError, match="backend"):
        evaluate_coco(ground_truth, [], backend="detectron2")
    monkeypatch.setattr(backends, "faster_coco_eval_available", lambda: False)
    assert backends.resolve_backend("auto") == "pycocotools"
    with pytest.raises(DetkitError, match="pip install faster-coco-eval"):
        evaluate_coco(ground_truth, [], backend="faster_coco_eval")


def test_inputs_from_files_and_missing_files(tmp_path):
    gt_path, results_path = tmp_path / "gt.json", tmp_path / "results.json"
    gt_path.write_text(json.dumps(_hand_ground_truth([[10, 10, 20, 20]])))
    write_results_json(results_path, [_det([10, 10, 20, 20], 0.9)])
    metrics = evaluate_coco(gt_path, results_path, backend="pycocotools")
    assert metrics.stats["AP"] == pytest.approx(1.0, abs=1e-12)
    assert isinstance(metrics, CocoMetrics) and metrics.to_dict()["stats"]["AP"] == metrics.stats["AP"]
    with pytest.raises(DataError, match="nope.json"):
        evaluate_coco(tmp_path / "nope.json", results_path)
    gt_path.write_text("{not json")
    with pytest.raises(DataError, match="gt.json"):
        evaluate_coco(gt_path, results_path)


# ----------------------------------------------------------------------------- real COCO annotations


@pytest.fixture(scope="module")
def tiny_coco() -> COCO:
    if not TINY_COCO.is_file():
        pytest.skip(f"{TINY_COCO} is not available")
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(TINY_COCO))


@pytest.fixture(scope="module")
def perturbed(tiny_coco: COCO) -> list[dict]:
    """Ground truth jittered (boxes scaled noise, masks shifted), some dropped, relabelled, and false positives."""
    rng = np.random.default_rng(0)
    category_ids = sorted(tiny_coco.getCatIds())
    results = []
    for record in ground_truth_as_results(tiny_coco, include_masks=True):
        if rng.random() < 0.15:
            continue
        x, y, w, h = record["bbox"]
        noise = rng.normal(0.0, 0.1, 4) * np.array([w, h, w, h])
        mask = np.roll(_decode(record["segmentation"]), tuple(rng.integers(-4, 5, 2)), axis=(0, 1))
        results.append(
            {
                **record,
                "category_id": int(rng.choice(category_ids)) if rng.random() < 0.1 else record["category_id"],
                "bbox": [x + noise[0], y + noise[1], max(1.0, w + noise[2]), max(1.0, h + noise[3])],
                "score": float(rng.random()),
                "segmentation": _encode(mask),
            }
        )
    image_ids = sorted(tiny_coco.getImgIds())
    for _ in range(40):
        image = tiny_coco.imgs[int(rng.choice(image_ids))]
        x, y = rng.random() * 0.8 * image["width"], rng.random() * 0.8 * image["height"]
        w, h = rng.uniform(2, 120, 2)
        mask = np.zeros((image["height"], image["width"]), dtype=np.uint8)
        mask[int(y) : int(y + h), int(x) : int(x + w)] = 1
        results.append(
            {
                "image_id": image["id"],
                "category_id": int(rng.choice(category_ids)),
                "bbox": [x, y, w, h],
                "score": float(rng.random()),
                "segmentation": _encode(mask),
            }
        )
    return results


def _decode(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})


def _encode(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode()}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_ground_truth_as_detections_scores_exactly_one(tiny_coco, iou_type, backend, capsys):
    results = ground_truth_as_results(tiny_coco, include_masks=iou_type == "segm")
    metrics = evaluate_coco(tiny_coco, results, iou_type=iou_type, backend=backend)
    assert metrics.stats["AP"] == 1.0
    assert metrics.stats["AP50"] == 1.0 and metrics.stats["AR100"] == 1.0
    assert metrics.num_images == len(tiny_coco.getImgIds()) and metrics.num_detections == len(results)
    assert all(ap == pytest.approx(1.0, abs=1e-12) for ap in metrics.per_class_ap.values())
    assert capsys.readouterr().out == ""  # library code prints nothing
    # Evaluation wrote into copies: the caller's polygons stay polygons, no 'ignore' flags appear.
    assert all("ignore" not in ann for ann in tiny_coco.dataset["annotations"])
    assert all(isinstance(ann["segmentation"], list) for ann in tiny_coco.dataset["annotations"] if not ann["iscrowd"])


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_perturbed_detections_score_below_one(tiny_coco, perturbed, iou_type):
    before = copy.deepcopy(perturbed)
    metrics = evaluate_coco(tiny_coco, perturbed, iou_type=iou_type, backend="pycocotools")
    assert 0.0 < metrics.stats["AP"] < 1.0 and 0.0 < metrics.stats["AP50"] < 1.0
    assert set(metrics.stats) == set(STAT_NAMES)
    assert all(0.0 <= ap <= 1.0 for ap in metrics.per_class_ap.values())
    assert perturbed == before  # evaluation works on copies of the caller's records


@pytest.mark.skipif(not HAS_FASTER, reason="faster-coco-eval is not installed")
@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_faster_coco_eval_matches_pycocotools(tiny_coco, perturbed, iou_type):
    reference = evaluate_coco(tiny_coco, perturbed, iou_type=iou_type, backend="pycocotools")
    fast = evaluate_coco(tiny_coco, perturbed, iou_type=iou_type, backend="faster_coco_eval")
    assert fast.backend == "faster_coco_eval"
    for name in STAT_NAMES:
        assert fast.stats[name] == pytest.approx(reference.stats[name], abs=1e-12), name
    assert fast.per_class_ap.keys() == reference.per_class_ap.keys()
    for name, ap in reference.per_class_ap.items():
        assert fast.per_class_ap[name] == pytest.approx(ap, abs=1e-12), name
        assert fast.per_class_ap50[name] == pytest.approx(reference.per_class_ap50[name], abs=1e-12), name


def test_image_ids_restrict_the_evaluation(tiny_coco, perturbed):
    first = sorted(tiny_coco.getImgIds())[:3]
    metrics = evaluate_coco(tiny_coco, perturbed, image_ids=first, backend="pycocotools")
    assert metrics.num_images == 3
    assert metrics.num_detections == sum(r["image_id"] in first for r in perturbed)
    classes_there = {
        tiny_coco.cats[a["category_id"]]["name"]
        for a in tiny_coco.loadAnns(tiny_coco.getAnnIds(imgIds=first, iscrowd=False))
    }
    assert set(metrics.per_class_ap) == classes_there


# ----------------------------------------------------------------------------- ids and names from files


@settings(max_examples=25, deadline=None)
@given(
    ids=st.lists(
        st.one_of(st.just(0), st.integers(-5, 5), st.integers(2**62, 2**66), st.integers(1, 10**30)),
        min_size=9,
        max_size=9,
        unique=True,
    )
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_ground_truth_as_detections_scores_one_whatever_the_ids(backend, ids):
    """Annotation id 0 (which both libraries read as "unmatched"), negative ids and ids past int64 score
    the ground truth as detections at exactly 1: the evaluators only ever see detkit's own ids 1..N."""
    image_ids, category_ids, ann_ids = ids[:2], ids[2:4], ids[4:]
    dataset = {
        "images": [{"id": i, "width": 100, "height": 100} for i in image_ids],
        "categories": [{"id": c, "name": f"c{n}"} for n, c in enumerate(category_ids)],
        "annotations": [
            {
                "id": a,
                "image_id": image_ids[k % 2],
                "category_id": category_ids[k // 3 % 2],
                "bbox": [5 + 15 * k, 10, 12, 20],
                "area": 240,
                "iscrowd": 0,
            }
            for k, a in enumerate(ann_ids)
        ],
    }
    metrics = evaluate_coco(dataset, ground_truth_as_results(_as_coco(dataset)), backend=backend)
    assert metrics.stats["AP"] == pytest.approx(1.0) and metrics.stats["AP50"] == pytest.approx(1.0)
    assert set(metrics.per_class_ap) == {"c0", "c1"}
    assert bool(metrics.notes) == (0 in ann_ids)


def _as_coco(dataset: dict):
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(dataset)
        coco.createIndex()
    return coco


def test_records_with_file_names_are_scored_on_the_image_of_that_name(tmp_path):
    """detect numbers images by position; its file_name decides which ground-truth image a record is for."""
    dataset = _hand_ground_truth([[10, 10, 30, 30]])
    dataset["images"][0]["file_name"], dataset["images"][1]["file_name"] = "b.jpg", "sub/a.jpg"
    swapped = [
        {**_det([10, 10, 30, 30], 0.9, image_id=1), "file_name": str(tmp_path / "b.jpg")}
    ]  # detect's id 1 is a.jpg
    swapped[0]["image_id"] = 2
    assert evaluate_coco(dataset, swapped, image_dir=tmp_path).stats["AP"] == pytest.approx(1.0)
    assert evaluate_coco(dataset, [{**swapped[0], "file_name": "b.jpg"}]).stats["AP"] == pytest.approx(1.0)  # exact
    assert evaluate_coco(dataset, [{**swapped[0], "file_name": "/elsewhere/b.jpg"}]).stats["AP"] == pytest.approx(
        1.0
    )  # base name
    with pytest.raises(DataError, match="record 0 has file_name 'c.jpg', which is no image of ground truth"):
        evaluate_coco(dataset, [{**swapped[0], "file_name": "c.jpg"}])
    dataset["images"][1]["file_name"] = "other/b.jpg"
    with pytest.raises(DataError, match=r"base name is shared by images \[1, 2\]"):
        evaluate_coco(dataset, [{**swapped[0], "file_name": "/elsewhere/b.jpg"}])
