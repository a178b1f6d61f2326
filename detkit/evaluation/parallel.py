"""COCO scoring split by category over processes.

The protocol matches detections to ground truth per image and category, and accumulates precision
and recall per category (pycocotools' ``evaluateImg`` and ``accumulate`` loop over categories
independently; faster-coco-eval ports those loops). So each of N processes scores a share of the
categories with the same library, the parent places their ``precision [T, R, K, A, M]`` and
``recall [T, K, A, M]`` slices side by side along K, and the library's own ``summarize`` reads the
whole: the arrays a single process would have made, so the same 12 numbers.

The processes are forked once the private copies are built, so they inherit them instead of
reading the files again; forking is used on Linux only, and only from a process whose sole thread
is the caller's (a fork copies no other thread, and a lock another thread held stays held in the
child). Anywhere else scoring stays in one process.

It pays only where cores are free: each process redoes a little (its share's index, its arrays
sent back), about a tenth more CPU in all. On a 2-core machine shared with other work (where
detkit's measurements were made) two processes were no faster than one, so one is the default.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections import Counter
from typing import Any

import numpy as np

from detkit.evaluation.backends import empty_evaluator, run_backend
from detkit.evaluation.steps import StepTimes

# Below this a process costs more than it saves: forking, indexing its share, sending its arrays
# back. Measured on coco128 x 50,000 detections, two processes took 1.78 s of CPU to one's 1.50 s.
MIN_DETECTIONS_PER_WORKER = 100_000
MAX_WORKERS = 8

# What the forked processes score: set just before the fork, read by _score_share in the child.
_SHARED: dict[str, Any] = {}


def default_workers(num_detections: int) -> int:
    """Processes worth using for ``num_detections``: one per available core, at most ``MAX_WORKERS``
    and one per ``MIN_DETECTIONS_PER_WORKER`` detections; 1 where forking is not safe."""
    if not can_fork():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, MAX_WORKERS, num_detections // MIN_DETECTIONS_PER_WORKER))


def can_fork() -> bool:
    """Linux, and no thread but this one."""
    return sys.platform.startswith("linux") and threading.active_count() == 1


def category_shares(ground_truth: dict[str, Any], detections: list[dict[str, Any]], workers: int) -> list[list[int]]:
    """The categories in ``workers`` groups of about equal work (ground truth + detections per
    category, largest first into the lightest group); each group sorted, no group empty."""
    load = Counter(ann["category_id"] for ann in ground_truth["annotations"])
    load.update(det["category_id"] for det in detections)
    category_ids = sorted((c["id"] for c in ground_truth["categories"]), key=lambda c: -load[c])
    groups: list[list[int]] = [[] for _ in range(min(workers, len(category_ids)))]
    totals = [0] * len(groups)
    for category_id in category_ids:
        lightest = totals.index(min(totals))
        groups[lightest].append(category_id)
        totals[lightest] += load[category_id] + 1
    return [sorted(group) for group in groups if group]


def run_in_processes(
    backend: str,
    ground_truth: dict[str, Any],
    detections: list[dict[str, Any]],
    iou_type: str,
    image_ids: list[int],
    workers: int,
    steps: StepTimes,
) -> Any:
    """``run_backend`` over ``workers`` forked processes, one share of the categories each: an
    evaluator of ``backend`` with ``.stats``, ``.eval["precision"]``, ``.eval["recall"]`` and
    ``.params`` (``catIds``: every category) as one process would give."""
    shares = category_shares(ground_truth, detections, workers)
    _SHARED.update(
        backend=backend, ground_truth=ground_truth, detections=detections, iou_type=iou_type, image_ids=image_ids
    )
    try:
        with steps.step(f"evaluate + accumulate ({len(shares)} processes)"):
            with multiprocessing.get_context("fork").Pool(len(shares)) as pool:
                parts = pool.map(_score_share, shares, chunksize=1)
    finally:
        _SHARED.clear()
    category_ids = sorted(c["id"] for c in ground_truth["categories"])
    evaluator = empty_evaluator(backend, iou_type)
    evaluator.params.imgIds = list(image_ids)
    evaluator.params.catIds = category_ids
    evaluator.eval = _merged(parts, category_ids)
    with steps.step("summarise"):
        evaluator.summarize()
    return evaluator


def _score_share(category_ids: list[int]) -> tuple[list[int], np.ndarray, np.ndarray]:
    """In a forked process: ``category_ids``' precision and recall, on the inherited copies."""
    wanted = set(category_ids)
    ground_truth = _SHARED["ground_truth"]
    share = {**ground_truth, "annotations": [a for a in ground_truth["annotations"] if a["category_id"] in wanted]}
    detections = [d for d in _SHARED["detections"] if d["category_id"] in wanted]
    evaluator = run_backend(
        _SHARED["backend"],
        share,
        detections,
        _SHARED["iou_type"],
        _SHARED["image_ids"],
        StepTimes(),
        category_ids=category_ids,
        summarise=False,
    )
    return category_ids, np.asarray(evaluator.eval["precision"]), np.asarray(evaluator.eval["recall"])


def _merged(parts: list[tuple[list[int], np.ndarray, np.ndarray]], category_ids: list[int]) -> dict[str, Any]:
    """The shares' ``precision`` and ``recall`` at their categories' places along K."""
    position = {category_id: k for k, category_id in enumerate(category_ids)}
    _, first_precision, first_recall = parts[0]
    precision = -np.ones(first_precision.shape[:2] + (len(category_ids),) + first_precision.shape[3:])
    recall = -np.ones(first_recall.shape[:1] + (len(category_ids),) + first_recall.shape[2:])
    for share, share_precision, share_recall in parts:
        places = [position[category_id] for category_id in share]
        precision[:, :, places] = share_precision
        recall[:, places] = share_recall
    return {"precision": precision, "recall": recall}
