"""The two COCO evaluators: faster-coco-eval (C++, the default) and pycocotools (the reference).

Both run the same protocol (10 IoU thresholds .50:.05:.95, 101 recall points, area ranges
small/medium/large, maxDets 1/10/100) and give the same 12 numbers; the tests hold them to that.
Each is handed the private copies of ``private.py`` and timed per step (``StepTimes``).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from detkit.errors import ConfigError, DetkitError
from detkit.evaluation.steps import StepTimes

BACKENDS = ("auto", "faster_coco_eval", "pycocotools")


def resolve_backend(backend: str) -> str:
    """The backend that will run: "faster_coco_eval" or "pycocotools"."""
    if backend not in BACKENDS:
        raise ConfigError(f"COCO eval backend {backend!r} is unknown; use one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "faster_coco_eval" if faster_coco_eval_available() else "pycocotools"
    if backend == "faster_coco_eval" and not faster_coco_eval_available():
        raise DetkitError(
            "COCO eval backend 'faster_coco_eval' was asked for but faster-coco-eval is not installed; "
            "run `pip install faster-coco-eval` or use backend 'pycocotools'"
        )
    return backend


@functools.cache
def faster_coco_eval_available() -> bool:
    """faster-coco-eval is a dependency; an install without it still scores, with pycocotools."""
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return False
    return True


def run_backend(
    backend: str,
    ground_truth: dict[str, Any],
    detections: list[dict[str, Any]],
    iou_type: str,
    image_ids: list[int],
    steps: StepTimes,
    *,
    category_ids: list[int] | None = None,
    summarise: bool = True,
) -> Any:
    """The evaluator after evaluate, accumulate and (``summarise``) summarize: ``.stats``,
    ``.eval["precision"]`` ``[T, R, K, A, M]``, ``.eval["recall"]`` ``[T, K, A, M]``, ``.params``.
    ``ground_truth``: a COCO dict; ``detections``: its results as ``loadRes`` makes them
    (``private_detections``); both on private ids, both written into. ``category_ids``: the
    categories scored (default: all of the ground truth's), in that order along K."""
    run = _run_faster_coco_eval if backend == "faster_coco_eval" else _run_pycocotools
    evaluator = run(ground_truth, _results_dataset(ground_truth, detections), iou_type, steps)
    evaluator.params.imgIds = list(image_ids)
    if category_ids is not None:
        evaluator.params.catIds = list(category_ids)
    with steps.step("evaluate"):
        evaluator.evaluate()
    with steps.step("accumulate"):
        evaluator.accumulate()
    if summarise:
        with steps.step("summarise"):
            evaluator.summarize()
    return evaluator


def empty_evaluator(backend: str, iou_type: str) -> Any:
    """An evaluator of ``backend`` with the protocol's parameters and no data: ``summarize`` of the
    ``.eval`` arrays put into it (``parallel.py``)."""
    if backend == "faster_coco_eval":
        return _faster_evaluator(None, None, iou_type)
    from pycocotools.cocoeval import COCOeval

    return COCOeval(iouType=iou_type)


def _results_dataset(ground_truth: dict[str, Any], detections: list[dict[str, Any]]) -> dict[str, Any]:
    """The COCO dict ``loadRes`` builds around result records: the ground truth's images and categories."""
    return {
        "info": copy.deepcopy(ground_truth.get("info", {})),
        "images": list(ground_truth["images"]),
        "categories": copy.deepcopy(ground_truth["categories"]),
        "annotations": detections,
    }


def _run_pycocotools(ground_truth: dict[str, Any], results: dict[str, Any], iou_type: str, steps: StepTimes) -> Any:
    with steps.step("load"):
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        coco_gt, coco_dt = COCO(), COCO()  # built from dicts: pycocotools' constructor only reads files
        coco_gt.dataset, coco_dt.dataset = ground_truth, results
        coco_gt.createIndex()
        coco_dt.createIndex()
        return COCOeval(coco_gt, coco_dt, iou_type)


def _run_faster_coco_eval(
    ground_truth: dict[str, Any], results: dict[str, Any], iou_type: str, steps: StepTimes
) -> Any:
    with steps.step("load"):
        from faster_coco_eval import COCO

        return _faster_evaluator(
            COCO(ground_truth, print_function=_silent), COCO(results, print_function=_silent), iou_type
        )


def _faster_evaluator(coco_gt: Any, coco_dt: Any, iou_type: str) -> Any:
    from faster_coco_eval import COCOeval_faster

    # Defaults already follow pycocotools' protocol; pin the switches that could change it: no LVIS
    # filtering, no extra match statistics. The per-image evaluate -> accumulate split mirrors
    # pycocotools' evaluateImg/accumulate, and on COCO val sizes it is a fifth faster than the fused one.
    return COCOeval_faster(
        coco_gt, coco_dt, iou_type, print_function=_silent, extra_calc=False, lvis_style=False, separate_eval=True
    )


def _silent(*args: Any, **kwargs: Any) -> None:
    return None
