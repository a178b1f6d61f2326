"""Run a detector over a dataset and score it with COCO metrics."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Subset

from detkit.checkpoint import Checkpoint
from detkit.data.coco import CocoDetection
from detkit.data.formats.coco_reader import default_image_dir
from detkit.data.loaders import build_loader
from detkit.engine.distributed import broadcast_from_main, gather_to_all, is_distributed, shard_indices
from detkit.engine.events import EventCallback, StageAdvanced, StageFinished, StageStarted, ignore_events
from detkit.errors import DataError
from detkit.evaluation.coco_eval import CocoMetrics, evaluate_coco_types
from detkit.evaluation.results import detections_to_coco_results
from detkit.structures import Detections, Target


@torch.inference_mode()
def predict_dataset(
    model: nn.Module,
    dataset: CocoDetection | Subset[tuple[Tensor, Target]],
    *,
    device: torch.device,
    batch_size: int = 4,
    on_event: EventCallback = ignore_events,
    stage: str = "eval",
) -> list[Detections]:
    """Detections for every image of ``dataset`` in order, on the CPU, in each image's original frame."""
    was_training = model.training
    model.eval()
    loader = build_loader(dataset, batch_size=batch_size, shuffle=False)
    detections: list[Detections] = []
    on_event(StageStarted(stage, total=len(dataset)))
    for images, _targets in loader:
        output = model([image.to(device, non_blocking=True) for image in images])
        detections.extend(d.to("cpu") for d in output.detections)
        on_event(StageAdvanced(stage, completed=len(detections)))
    on_event(StageFinished(stage))
    model.train(was_training)
    return detections


def score_detections(
    dataset: CocoDetection,
    detections: list[Detections],
    iou_types: tuple[str, ...] = ("bbox",),
    backend: str = "auto",
) -> dict[str, CocoMetrics]:
    """COCO metrics of ``detections`` (one per dataset image, in order) per IoU type."""
    results = detections_to_coco_results(detections, dataset.image_ids, dataset.category_ids)
    # A model may know classes the ground truth does not list; COCO scoring ignores them anyway.
    known = set(dataset.coco.getCatIds())
    results = [r for r in results if r["category_id"] in known]
    # One check of the records and one set of private ids for both types of a mask model.
    return evaluate_coco_types(dataset.coco, results, iou_types=iou_types, image_ids=dataset.image_ids, backend=backend)


def evaluate_detector(
    model: nn.Module,
    dataset: CocoDetection,
    *,
    device: torch.device,
    batch_size: int = 4,
    on_event: EventCallback = ignore_events,
) -> dict[str, float]:
    """Validation numbers of ``model`` on ``dataset``: the 12 box stats (``AP``, ``AP50``...) and, for a
    model that predicts masks, the 12 mask stats prefixed ``mask_`` (``mask_AP``...).

    Data-parallel, every process must call this: each predicts its share of the images, rank 0 scores
    the gathered detections and every process returns rank 0's numbers.
    """
    detections = predict_across_processes(model, dataset, device=device, batch_size=batch_size, on_event=on_event)
    stats = None
    if detections is not None:
        metrics = score_detections(dataset, detections, iou_types_of(detections))
        stats = dict(metrics["bbox"].stats)
        if "segm" in metrics:
            stats.update({f"mask_{name}": value for name, value in metrics["segm"].stats.items()})
    return cast(dict[str, float], broadcast_from_main(stats))  # rank 0's, which scored the detections


def predict_across_processes(
    model: nn.Module,
    dataset: CocoDetection,
    *,
    device: torch.device,
    batch_size: int = 4,
    on_event: EventCallback = ignore_events,
) -> list[Detections] | None:
    """Every image's detections, in dataset order, on rank 0 (None on the other ranks); each process
    predicts every ``world_size``-th image. One process: ``predict_dataset``."""
    if not is_distributed():
        return predict_dataset(model, dataset, device=device, batch_size=batch_size, on_event=on_event)
    indices = list(shard_indices(len(dataset), dist.get_rank(), dist.get_world_size()))
    mine = predict_dataset(model, Subset(dataset, indices), device=device, batch_size=batch_size, on_event=on_event)
    gathered = gather_to_all(list(zip(indices, mine)))
    if dist.get_rank() != 0:
        return None
    by_index = dict(pair for part in gathered for pair in part)
    return [by_index[index] for index in range(len(dataset))]


def iou_types_of(detections: list[Detections]) -> tuple[str, ...]:
    """("bbox", "segm") when the detections carry masks, else ("bbox",)."""
    return ("bbox", "segm") if any(d.masks is not None for d in detections) else ("bbox",)


def dataset_for_checkpoint(
    checkpoint: Checkpoint, annotations: Path, images: Path | None, with_masks: bool = False
) -> CocoDetection:
    """``annotations`` (images in ``default_image_dir`` unless given) with the checkpoint's class
    mapping; every category of the ground truth must be one the model was trained on, by id and name."""
    dataset = CocoDetection(
        annotations,
        images or default_image_dir(annotations),
        category_ids=checkpoint.category_ids,
        with_masks=with_masks,
    )
    missing = sorted(set(dataset.coco.getCatIds()) - set(checkpoint.category_ids))
    if missing:
        raise DataError(
            f"{annotations}: category ids {missing[:5]} are not among the {len(checkpoint.category_ids)} classes of "
            f"{checkpoint.source}; evaluate with a model trained on these categories"
        )
    model_names = dict(zip(checkpoint.category_ids, checkpoint.class_names))
    renamed = [
        cat_id
        for cat_id, cat in dataset.coco.cats.items()
        if str(cat.get("name", "")).lower() != model_names[cat_id].lower()
    ]
    if renamed:
        cat_id = renamed[0]
        raise DataError(
            f"{annotations}: category {cat_id} is {dataset.coco.cats[cat_id].get('name')!r} here but "
            f"{model_names[cat_id]!r} in {checkpoint.source} ({len(renamed)} of {len(dataset.coco.cats)} categories "
            "differ); evaluate with a model trained on these categories, or give the json the model's category ids"
        )
    return dataset
