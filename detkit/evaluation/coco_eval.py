"""COCO box and mask metrics: pycocotools ``COCOeval``, or faster-coco-eval's C++ port of it.

Both backends run the same protocol (10 IoU thresholds .50:.05:.95, 101 recall points, area
ranges small/medium/large, maxDets 1/10/100) and must give the same 12 numbers; the tests hold
them to that. Neither library's COCO objects are shared with the caller: evaluation writes into
annotation dicts (``ignore`` flags, polygons replaced by RLEs, cached RLEs), so each run works on
shallow copies and the caller's ground truth and results stay as they were.

A stat of -1 means what it means in pycocotools: that slice has no ground truth (e.g. APs on a
dataset without small objects).

The copies also number images, categories and annotations 1..N (``_renumbered``). Both libraries
store the id of the ground truth a detection matched and read 0 as "no match", so a file whose
annotation ids start at 0 would score a perfect detection of that object as a false positive; and
faster-coco-eval indexes ids as 64-bit integers. With private ids neither can happen, whatever ids
the file uses, and the numbers are the ones the protocol defines.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detkit.errors import ConfigError, DataError, DetkitError
from detkit.evaluation.results import load_results_json, match_file_names, validate_results
from detkit.io import read_json

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
IOU_TYPES = ("bbox", "segm")
BACKENDS = ("auto", "pycocotools", "faster_coco_eval")


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
    if iou_type not in IOU_TYPES:
        raise ConfigError(f"iou_type {iou_type!r} is not supported; use one of {', '.join(IOU_TYPES)}")
    backend_name = resolve_backend(backend)
    dataset, gt_source = _load_ground_truth(ground_truth, iou_type)
    records, results_source = _load_results(results)
    records = match_file_names(records, dataset["images"], image_dir, results_source, gt_source)
    eval_image_ids = _evaluation_image_ids(dataset, image_ids, gt_source)
    _check_results_fit(records, dataset, iou_type, gt_source, results_source)
    notes = _notes(dataset)

    wanted = set(eval_image_ids)
    records = [record for record in records if record["image_id"] in wanted]
    if not records:
        return _metrics_without_detections(dataset, iou_type, backend_name, eval_image_ids, notes)

    run = _run_faster_coco_eval if backend_name == "faster_coco_eval" else _run_pycocotools
    private = _renumbered(dataset, records, eval_image_ids)
    # Both libraries print progress to stdout; detkit's library code never prints.
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = run(private.dataset, private.records, iou_type, private.image_ids)
    per_class_ap, per_class_ap50 = _per_class_ap(evaluator, private.names)
    return CocoMetrics(
        iou_type=iou_type,
        stats={name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats[: len(STAT_NAMES)])},
        per_class_ap=per_class_ap,
        per_class_ap50=per_class_ap50,
        backend=backend_name,
        num_images=len(eval_image_ids),
        num_detections=len(records),
        notes=notes,
    )


# ----------------------------------------------------------------------------- backends


def resolve_backend(backend: str) -> str:
    """The backend that will run: "pycocotools" or "faster_coco_eval"."""
    if backend not in BACKENDS:
        raise ConfigError(f"COCO eval backend {backend!r} is unknown; use one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "faster_coco_eval" if _faster_coco_eval_available() else "pycocotools"
    if backend == "faster_coco_eval" and not _faster_coco_eval_available():
        raise DetkitError(
            "COCO eval backend 'faster_coco_eval' was asked for but faster-coco-eval is not installed; "
            "run `pip install faster-coco-eval` or use backend 'pycocotools'"
        )
    return backend


@functools.cache
def _faster_coco_eval_available() -> bool:
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return False
    return True


def _run_pycocotools(
    dataset: dict[str, Any], records: list[dict[str, Any]], iou_type: str, image_ids: list[int]
) -> Any:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco_gt = COCO()  # built from the dict: pycocotools' constructor only reads files
    coco_gt.dataset = dataset
    coco_gt.createIndex()
    evaluator = COCOeval(coco_gt, coco_gt.loadRes(records), iou_type)
    evaluator.params.imgIds = list(image_ids)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator


def _run_faster_coco_eval(
    dataset: dict[str, Any], records: list[dict[str, Any]], iou_type: str, image_ids: list[int]
) -> Any:
    from faster_coco_eval import COCO, COCOeval_faster

    def silent(*args: Any, **kwargs: Any) -> None:
        return None

    coco_gt = COCO(dataset, print_function=silent)
    coco_dt = coco_gt.loadRes(records)
    # Defaults already follow pycocotools' protocol; pin the switches that could change it:
    # no LVIS filtering, no extra match statistics, and the per-image evaluate -> accumulate
    # split that mirrors pycocotools' evaluateImg/accumulate.
    evaluator = COCOeval_faster(
        coco_gt,
        coco_dt,
        iou_type,
        print_function=silent,
        extra_calc=False,
        lvis_style=False,
        separate_eval=True,
    )
    evaluator.params.imgIds = list(image_ids)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator


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


# ----------------------------------------------------------------------------- inputs


def _load_ground_truth(ground_truth: Any, iou_type: str) -> tuple[dict[str, Any], str]:
    """The ground truth's COCO dict and a name for messages."""
    if isinstance(ground_truth, (str, os.PathLike)):
        path = Path(ground_truth)
        source = str(path)
        dataset = read_json(
            path, what="ground-truth annotation file", missing_fix="pass the instances json of the dataset"
        )
    elif isinstance(ground_truth, dict):
        dataset = ground_truth
        source = "ground truth"
    else:
        dataset = getattr(ground_truth, "dataset", None)
        source = str(getattr(ground_truth, "annotation_file", None) or "ground truth")
    _check_ground_truth(dataset, source, iou_type)
    return dataset, source


def _check_ground_truth(dataset: Any, source: str, iou_type: str) -> None:
    if not isinstance(dataset, dict):
        raise DataError(f"{source}: not a COCO dataset (expected an object); pass an instances json or a COCO object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            raise DataError(f"{source}: has no '{key}' list; pass a COCO instances json")
    for key in ("images", "categories"):
        for index, record in enumerate(dataset[key]):
            if not isinstance(record, dict) or not _is_int(record.get("id")):
                raise DataError(
                    f"{source}: {key}[{index}] has no integer 'id'; fix the record (`detkit data check` lists them all)"
                )
    required = ("id", "image_id", "category_id", "bbox", "area") + (("segmentation",) if iou_type == "segm" else ())
    for index, ann in enumerate(dataset["annotations"]):
        if not isinstance(ann, dict):
            raise DataError(
                f"{source}: annotation {index} is not an object; fix or drop it (`detkit data check --fix`)"
            )
        missing = [key for key in required if key not in ann]
        if missing:
            raise DataError(
                f"{source}: annotation {index} has no '{missing[0]}'; add it or drop the record "
                f"({iou_type} evaluation needs {', '.join(required)})"
            )


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _load_results(results: Any) -> tuple[list[dict[str, Any]], str]:
    if isinstance(results, (str, os.PathLike)):
        return load_results_json(results), str(results)
    validate_results(results, "results")
    return results, "results"


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
    records: list[dict[str, Any]], dataset: dict[str, Any], iou_type: str, gt_source: str, source: str
) -> None:
    """Every record must name a known image and category and carry what ``iou_type`` scores."""
    image_ids = {int(image["id"]) for image in dataset["images"]}
    category_ids = {int(c["id"]) for c in dataset["categories"]}
    field = "bbox" if iou_type == "bbox" else "segmentation"
    has_bbox = bool(records) and "bbox" in records[0]
    for index, record in enumerate(records):
        if record["image_id"] not in image_ids:
            raise DataError(
                f"{source}: record {index} has image_id {record['image_id']}, which is not in {gt_source}; "
                "evaluate against the annotation file the detections were made for, or drop those records"
            )
        if record["category_id"] not in category_ids:
            raise DataError(
                f"{source}: record {index} has category_id {record['category_id']}, which is not a category of "
                f"{gt_source}; map labels to dataset category ids (detections_to_coco_results does)"
            )
        if field not in record:
            raise DataError(f"{source}: record {index} has no '{field}', which {iou_type} evaluation needs")
        # loadRes picks one parsing branch from the first record, so the fields must agree.
        if ("bbox" in record) != has_bbox:
            raise DataError(
                f"{source}: record {index} {'lacks' if has_bbox else 'has'} a 'bbox' unlike record 0; "
                "write every record with the same fields"
            )


@dataclass(frozen=True)
class _Private:
    """What the backends see: copies with ids 1..N, the results and image ids in those ids, and the
    category names by private id."""

    dataset: dict[str, Any]
    records: list[dict[str, Any]]
    image_ids: list[int]
    names: dict[int, str]


def _renumbered(dataset: dict[str, Any], records: list[dict[str, Any]], image_ids: list[int]) -> _Private:
    """Copies evaluation may write into, with images, categories and annotations numbered 1..N (see
    the module docstring). Annotations naming an image or category the file does not list cannot
    match anything scored and are left out."""
    image_id = {int(image["id"]): new for new, image in enumerate(dataset["images"], start=1)}
    category_id = {int(c["id"]): new for new, c in enumerate(dataset["categories"], start=1)}
    annotations: list[dict[str, Any]] = []
    for ann in dataset["annotations"]:
        if ann["image_id"] in image_id and ann["category_id"] in category_id:
            annotations.append(
                {
                    **ann,
                    "id": len(annotations) + 1,
                    "image_id": image_id[ann["image_id"]],
                    "category_id": category_id[ann["category_id"]],
                }
            )
    private = {
        "info": dataset.get("info", {}),
        "images": [{**image, "id": image_id[int(image["id"])]} for image in dataset["images"]],
        "categories": [{**c, "id": category_id[int(c["id"])]} for c in dataset["categories"]],
        "annotations": annotations,
    }
    renamed = [
        {**r, "image_id": image_id[r["image_id"]], "category_id": category_id[r["category_id"]]} for r in records
    ]
    names = {category_id[int(c["id"])]: str(c.get("name", c["id"])) for c in dataset["categories"]}
    return _Private(private, renamed, sorted(image_id[i] for i in image_ids), names)


def _notes(dataset: dict[str, Any]) -> tuple[str, ...]:
    if any(ann.get("id") == 0 for ann in dataset["annotations"]):
        return (
            "the ground truth has an annotation id 0, which pycocotools alone would score as unmatched (a perfect "
            "detection of it counted as a false positive); detkit scores with its own ids; "
            "`detkit data check --fix` writes a file without it",
        )
    return ()
