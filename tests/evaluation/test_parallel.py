"""Scoring shares of the categories in forked processes gives exactly one process's numbers."""

from __future__ import annotations

import importlib.util
import sys
import threading

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from detkit.evaluation import parallel
from detkit.evaluation.coco_eval import evaluate_coco_types
from detkit.evaluation.steps import StepTimes

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="worker processes are forked on Linux only"),
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
]
BACKENDS = [
    "pycocotools",
    pytest.param(
        "faster_coco_eval",
        marks=pytest.mark.skipif(importlib.util.find_spec("faster_coco_eval") is None, reason="not installed"),
    ),
]


def _scene(seed: int = 0) -> tuple[dict, list[dict]]:
    """12 images of 48x40, 7 categories (id 70 has no ground truth, id 60 no detections), boxes with
    rectangle masks; detections: jittered copies (some relabelled) and random boxes, random scores."""
    rng = np.random.default_rng(seed)
    categories = [{"id": c, "name": f"c{c}"} for c in (3, 9, 14, 22, 41, 60, 70)]
    annotations, records = [], []
    for image_id in range(1, 13):
        for _ in range(int(rng.integers(1, 6))):
            w, h = (int(v) for v in rng.integers(4, 20, 2))
            x, y = int(rng.integers(0, 48 - w)), int(rng.integers(0, 40 - h))
            category = int(rng.choice([3, 9, 14, 22, 41, 60]))
            polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(rng.random() < 0.05),
                    "segmentation": [polygon],
                }
            )
    for ann in annotations:
        for _ in range(3):
            x, y, w, h = (float(v) + float(rng.normal(0, 1.5)) for v in ann["bbox"])
            category = ann["category_id"] if rng.random() > 0.2 else int(rng.choice([3, 9, 14, 22, 41, 70]))
            if category == 60:
                category = 70
            records.append(_record(ann["image_id"], category, [x, y, max(w, 1.0), max(h, 1.0)], rng))
    images = [{"id": i, "width": 48, "height": 40} for i in range(1, 13)]
    return {"images": images, "categories": categories, "annotations": annotations}, records


def _record(image_id: int, category: int, box: list[float], rng: np.random.Generator) -> dict:
    x, y, w, h = (int(round(v)) for v in box)
    mask = np.zeros((40, 48), dtype=np.uint8)
    mask[max(y, 0) : y + h, max(x, 0) : x + w] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    segmentation = {"size": [40, 48], "counts": rle["counts"].decode("ascii")}
    return {
        "image_id": image_id,
        "category_id": category,
        "bbox": box,
        "score": float(rng.random()),
        "segmentation": segmentation,
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_shares_in_processes_give_one_process_numbers(backend):
    if not parallel.can_fork():
        pytest.skip("a thread another test started is still running: this process does not fork")
    ground_truth, records = _scene()
    single = evaluate_coco_types(ground_truth, records, backend=backend, workers=1)
    steps = StepTimes()
    split = evaluate_coco_types(ground_truth, records, backend=backend, workers=3, steps=steps)
    assert "evaluate + accumulate (3 processes)" in steps.seconds  # the shares did run apart
    for iou_type in ("bbox", "segm"):
        assert split[iou_type].stats == single[iou_type].stats, iou_type  # bit for bit
        assert split[iou_type].per_class_ap == single[iou_type].per_class_ap
        assert split[iou_type].per_class_ap50 == single[iou_type].per_class_ap50
        assert 0.05 < single[iou_type].stats["AP"] < 0.95 and "c70" not in single[iou_type].per_class_ap


def test_a_process_with_other_threads_scores_alone():
    """A fork copies only the calling thread; with another thread alive, scoring stays in one process."""
    ground_truth, records = _scene(1)
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert not parallel.can_fork()
        steps = StepTimes()
        alone = evaluate_coco_types(ground_truth, records, iou_types=("bbox",), workers=3, steps=steps)
    finally:
        release.set()
        other.join()
    assert "evaluate" in steps.seconds and not any("processes" in step for step in steps.seconds)
    assert alone["bbox"].stats == evaluate_coco_types(ground_truth, records, iou_types=("bbox",))["bbox"].stats


def test_categories_are_shared_by_work():
    ground_truth = {"categories": [{"id": c} for c in (1, 2, 3, 4, 5)], "annotations": []}
    detections = [{"category_id": c} for c, count in ((1, 50), (2, 30), (3, 20), (4, 10)) for _ in range(count)]
    assert parallel.category_shares(ground_truth, detections, 2) == [[1, 4], [2, 3, 5]]  # work 62 and 53
    assert parallel.category_shares(ground_truth, detections, 9) == [[1], [2], [3], [4], [5]]  # no empty share
    assert parallel.default_workers(parallel.MIN_DETECTIONS_PER_WORKER - 1) == 1  # too few to share
