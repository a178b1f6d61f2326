"""COCO box and mask metrics of result records against a ground truth.

The records (a results json, parsed once, or a list) are checked over all records at once
(``results_file``), matched to the ground truth's images by ``file_name`` where they carry one
(``file_names``), checked against its images and categories, and handed on detkit's private ids
(``private``) to faster-coco-eval or pycocotools (``backends``); each step is timed (``StepTimes``).

A stat of -1 means what it means in pycocotools: that slice has no ground truth (e.g. APs on a
dataset without small objects).
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from numbers import Integral
from typing import Any

import numpy as np

from detkit.errors import ConfigError, DataError
from detkit.evaluation.backends import BACKENDS, resolve_backend, run_backend
from detkit.evaluation.file_names import image_ids_by_file_name
from detkit.evaluation.ground_truth import id_zero_notes, load_ground_truth
from detkit.evaluation.parallel import can_fork, default_workers, run_in_processes
from detkit.evaluation.private import PrivateIds, private_detections, private_ground_truth
from detkit.evaluation.results_file import RESULTS_MISSING_FIX, ResultColumns, validate_results
from detkit.evaluation.steps import StepTimes
from detkit.io import read_json

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
IOU_TYPES = ("bbox", "segm")
_FIELD = {"bbox": "bbox", "segm": "segmentation"}
__all__ = ["BACKENDS", "IOU_TYPES", "STAT_NAMES", "CocoMetrics", "evaluate_coco", "evaluate_coco_types"]


@dataclass
class CocoMetrics:
    """Result of one COCO evaluation.

    stats: the 12 summary numbers keyed by ``STAT_NAMES``. per_class_ap / per_class_ap50: class
    name -> AP@[.50:.95] / AP@.50 (area all, maxDets 100); classes without ground truth in the
    evaluated images are left out rather than reported as NaN or -1.
    """

    iou_type: str
    stats: dict[str, float]
    per_class_ap: dict[str, float]
    per_class_ap50: dict[str, float]
    backend: str
    num_images: int
    num_detections: int
    notes: tuple[str, ...] = ()  # what the user should know about the inputs (e.g. an annotation id 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_coco(
    ground_truth: Any,
    results: list[dict[str, Any]] | str | os.PathLike[str],
    *,
    iou_type: str = "bbox",
    backend: str = "auto",
    image_ids: Sequence[int] | None = None,
    image_dir: str | os.PathLike[str] | None = None,
) -> CocoMetrics:
    """Evaluate COCO result records (xywh boxes, dataset category ids) against ground truth.

    ground_truth: a pycocotools ``COCO`` (or anything with a COCO ``.dataset`` dict), a COCO
    instances dict, or the path of an instances json. results: records as written by
    ``detections_to_coco_results`` (xywh boxes, dataset category ids) or the path of a results
    json. image_ids: the images to score (default: every image of the ground truth, including
    images without annotations, where any detection is a false positive). backend: "auto"
    (faster-coco-eval when installed, else pycocotools), "pycocotools" or "faster_coco_eval".
    A record with a ``file_name`` (as ``detkit detect`` writes) is scored on the ground-truth image of
    that name (``image_dir``: the folder the ground truth's names are relative to), whatever its
    ``image_id``: detect numbers images by position, not by any dataset's ids.
    """
    scored = evaluate_coco_types(
        ground_truth, results, iou_types=(iou_type,), backend=backend, image_ids=image_ids, image_dir=image_dir
    )
    return scored[iou_type]


def evaluate_coco_types(
    ground_truth: Any,
    results: list[dict[str, Any]] | str | os.PathLike[str],
    *,
    iou_types: Sequence[str] | None = None,
    backend: str = "auto",
    image_ids: Sequence[int] | None = None,
    image_dir: str | os.PathLike[str] | None = None,
    workers: int = 1,
    steps: StepTimes | None = None,
) -> dict[str, CocoMetrics]:
    """``evaluate_coco`` for several IoU types from one reading of the inputs: ``{iou_type: metrics}``.

    iou_types: None scores what the records carry (bbox for records with a ``bbox``, segm for
    records with a ``segmentation``: both for a mask model's). workers: processes that score
    shares of the categories (``parallel.py``; 0: ``default_workers``, by core count and detection
    count); one process where forking is not safe. steps: filled with the seconds of each step
    (parse, validate, read ground truth, load, evaluate, accumulate, summarise).
    """
    for iou_type in iou_types or ():
        if iou_type not in IOU_TYPES:
            raise ConfigError(f"iou_type {iou_type!r} is not supported; use one of {', '.join(IOU_TYPES)}")
    steps = steps if steps is not None else StepTimes()
    backend_name = resolve_backend(backend)
    with _cyclic_gc_paused():
        return _scored(ground_truth, results, iou_types, backend_name, image_ids, image_dir, workers, steps)


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Parsing and indexing half a million records allocates millions of containers, and every few
    hundred allocations start a cyclic collection that walks them: a third of json.loads' time and
    more in the libraries' indexing. Records form no cycles (reference counting frees them), so the
    collector waits until scoring is done."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _scored(
    ground_truth: Any,
    results: list[dict[str, Any]] | str | os.PathLike[str],
    iou_types: Sequence[str] | None,
    backend: str,
    image_ids: Sequence[int] | None,
    image_dir: str | os.PathLike[str] | None,
    workers: int,
    steps: StepTimes,
) -> dict[str, CocoMetrics]:
    records, columns, results_source, owned = _load_results(results, steps)
    types = tuple(iou_types) if iou_types else _types_carried(columns)
    with steps.step("read ground truth"):
        dataset, gt_source = load_ground_truth(ground_truth, types)
    with steps.step("match"):
        ids = PrivateIds.of(dataset)
        eval_image_ids = _evaluation_image_ids(dataset, image_ids, gt_source)
        private_image_ids = sorted(ids.image[i] for i in eval_image_ids)
        detections = _detections(
            records, columns, owned, dataset, ids, private_image_ids, types, image_dir, gt_source, results_source
        )
    notes = id_zero_notes(dataset)
    if not detections:
        return {t: _metrics_without_detections(dataset, t, backend, eval_image_ids, notes) for t in types}
    scored = {}
    for iou_type in types:
        with steps.step("copy ground truth"):
            private = private_ground_truth(dataset, ids)
        evaluator = _evaluated(backend, private, detections, iou_type, private_image_ids, workers, steps)
        per_class_ap, per_class_ap50 = _per_class_ap(evaluator, ids.names(dataset))
        scored[iou_type] = CocoMetrics(
            iou_type=iou_type,
            stats={name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats[: len(STAT_NAMES)])},
            per_class_ap=per_class_ap,
            per_class_ap50=per_class_ap50,
            backend=backend,
            num_images=len(eval_image_ids),
            num_detections=len(detections),
            notes=notes,
        )
    return scored


def _detections(
    records: list[dict[str, Any]],
    columns: ResultColumns,
    owned: bool,
    dataset: dict[str, Any],
    ids: PrivateIds,
    private_image_ids: list[int],
    iou_types: Sequence[str],
    image_dir: str | os.PathLike[str] | None,
    gt_source: str,
    source: str,
) -> list[dict[str, Any]]:
    """The records on the evaluated images as the libraries take them (``private_detections``), after
    their file names are matched and every record is checked against the ground truth."""
    record_image_ids = image_ids_by_file_name(
        records, columns.image_ids, dataset["images"], image_dir, source, gt_source
    )
    private_images = ids.images_of(record_image_ids)
    private_categories = ids.categories_of(columns.category_ids)
    _check_results_fit(columns, record_image_ids, private_images, private_categories, iou_types, gt_source, source)
    kept = np.flatnonzero(np.isin(private_images, private_image_ids))
    return private_detections(
        [records[i] if owned else dict(records[i]) for i in kept.tolist()],
        private_images[kept],
        private_categories[kept],
        columns.boxes[kept] if columns.boxes is not None else None,
        _image_sizes(dataset, ids, gt_source) if columns.boxes is None and len(kept) else {},
    )


def _evaluated(
    backend: str,
    ground_truth: dict[str, Any],
    detections: list[dict[str, Any]],
    iou_type: str,
    image_ids: list[int],
    workers: int,
    steps: StepTimes,
) -> Any:
    """The backend's evaluator after summarize, in ``workers`` processes where that is safe."""
    processes = workers or default_workers(len(detections))
    # Both libraries print progress to stdout; detkit's library code never prints.
    with contextlib.redirect_stdout(io.StringIO()):
        if processes > 1 and can_fork():
            return run_in_processes(backend, ground_truth, detections, iou_type, image_ids, processes, steps)
        return run_backend(backend, ground_truth, detections, iou_type, image_ids, steps)


# ----------------------------------------------------------------------------- inputs


def _load_results(results: Any, steps: StepTimes) -> tuple[list[dict[str, Any]], ResultColumns, str, bool]:
    """Records, their columns, a name for messages, and whether the records are ours to change
    (parsed here from a file) or the caller's (changed only in copies)."""
    if isinstance(results, (str, os.PathLike)):
        with steps.step("parse results"):
            records = read_json(results, what="results file", missing_fix=RESULTS_MISSING_FIX)
        with steps.step("validate results"):
            return records, validate_results(records, str(results)), str(results), True
    with steps.step("validate results"):
        return results, validate_results(results, "results"), "results", False


def _types_carried(columns: ResultColumns) -> tuple[str, ...]:
    """The IoU types the records carry: bbox for boxes, segm for masks (no records: bbox)."""
    carried = tuple(
        iou_type
        for iou_type, present in (("bbox", columns.has_bbox), ("segm", columns.has_segmentation))
        if present.any()
    )
    return carried or ("bbox",)


def _evaluation_image_ids(dataset: dict[str, Any], image_ids: Sequence[int] | None, source: str) -> list[int]:
    known = sorted({int(image["id"]) for image in dataset["images"]})
    if image_ids is None:
        return known
    known_set = set(known)
    for image_id in image_ids:
        if int(image_id) not in known_set:
            raise DataError(
                f"{source}: image id {image_id} asked for is not in the ground truth; "
                "pass ids from the ground truth's 'images' or leave image_ids unset"
            )
    return sorted({int(i) for i in image_ids})


def _check_results_fit(
    columns: ResultColumns,
    record_image_ids: list[Any],
    private_images: np.ndarray,
    private_categories: np.ndarray,
    iou_types: Sequence[str],
    gt_source: str,
    source: str,
) -> None:
    """Every record must name a known image (``private_images`` 0: not) and category and carry what
    each of ``iou_types`` scores, and all records the same fields; the first record that does not is
    named. Checked over all records at once, in the order a record-by-record check would find them."""
    problems: list[tuple[np.ndarray, Any]] = [
        (
            private_images == 0,
            lambda i: (
                f"has image_id {record_image_ids[i]}, which is not in {gt_source}; evaluate against the "
                "annotation file the detections were made for, or drop those records"
            ),
        ),
        (
            private_categories == 0,
            lambda i: (
                f"has category_id {columns.category_ids[i]}, which is not a category of {gt_source}; map "
                "labels to dataset category ids (detections_to_coco_results does)"
            ),
        ),
    ]
    for iou_type in iou_types:
        present = columns.has_bbox if iou_type == "bbox" else columns.has_segmentation
        problems.append((~present, lambda i, t=iou_type: _missing_field(t)))
    # The libraries' loadRes picks one way of reading every record from the first, so the fields it
    # chooses by must agree: the box always, the mask when masks are scored.
    agreeing = [("bbox", columns.has_bbox)]
    if "segm" in iou_types:
        agreeing.append(("segmentation", columns.has_segmentation))
    for field, present in agreeing:
        problems.append(
            (
                present != present[:1],
                lambda i, f=field, p=present: (
                    f"{'lacks' if p[0] else 'has'} a '{f}' unlike record 0; write every record with the same fields"
                ),
            )
        )
    first = [int(np.argmax(bad)) if bad.any() else len(columns) for bad, _ in problems]
    index = min(first, default=len(columns))
    if index < len(columns):
        message = problems[first.index(index)][1](index)
        raise DataError(f"{source}: record {index} {message}")


def _missing_field(iou_type: str) -> str:
    other = "segm" if iou_type == "bbox" else "bbox"
    return (
        f"has no '{_FIELD[iou_type]}', which {iou_type} evaluation needs; score the "
        f"{'masks' if other == 'segm' else 'boxes'} alone with --iou-type {other}, or write a {_FIELD[iou_type]} "
        "for every record"
    )


def _image_sizes(dataset: dict[str, Any], ids: PrivateIds, source: str) -> dict[int, tuple[int, int]]:
    """``(H, W)`` by private image id: a mask without a box is measured in its image's frame."""
    sizes = {}
    for index, image in enumerate(dataset["images"]):
        height, width = image.get("height"), image.get("width")
        if not isinstance(height, Integral) or not isinstance(width, Integral):
            raise DataError(
                f"{source}: images[{index}] has no integer 'height' and 'width', which scoring masks without boxes "
                "needs; add them (`detkit data check --fix` fills them from the image files)"
            )
        sizes[ids.image[image["id"]]] = (int(height), int(width))
    return sizes


# ----------------------------------------------------------------------------- outputs


def _per_class_ap(evaluator: Any, names: dict[int, str]) -> tuple[dict[str, float], dict[str, float]]:
    """AP@[.5:.95] and AP@.5 per category from ``eval["precision"]`` ``[T, R, K, A, M]``."""
    params = evaluator.params
    precision = np.asarray(evaluator.eval["precision"])
    area = params.areaRngLbl.index("all")
    max_dets = list(params.maxDets).index(100)
    iou50 = int(np.flatnonzero(np.isclose(params.iouThrs, 0.5))[0])
    per_class_ap: dict[str, float] = {}
    per_class_ap50: dict[str, float] = {}
    for k, category_id in enumerate(params.catIds):
        curve = precision[:, :, k, area, max_dets]  # [T, R]; -1 where the class has no ground truth
        if not (curve > -1).any():
            continue
        name = names[int(category_id)]
        per_class_ap[name] = float(curve[curve > -1].mean())
        at50 = curve[iou50]
        per_class_ap50[name] = float(at50[at50 > -1].mean())
    return per_class_ap, per_class_ap50


def _metrics_without_detections(
    dataset: dict[str, Any], iou_type: str, backend: str, image_ids: list[int], notes: tuple[str, ...] = ()
) -> CocoMetrics:
    """No detections: every stat is 0 (pycocotools' ``loadRes`` cannot even take an empty list)."""
    wanted = set(image_ids)
    names = {c["id"]: str(c.get("name", c["id"])) for c in dataset["categories"]}
    present = {
        ann["category_id"]
        for ann in dataset["annotations"]
        if ann["image_id"] in wanted and not ann.get("iscrowd", 0) and ann["category_id"] in names
    }
    zeros = {names[c]: 0.0 for c in sorted(present)}
    return CocoMetrics(
        iou_type=iou_type,
        stats={name: 0.0 for name in STAT_NAMES},
        per_class_ap=dict(zeros),
        per_class_ap50=dict(zeros),
        backend=backend,
        num_images=len(image_ids),
        num_detections=0,
        notes=notes,
    )
