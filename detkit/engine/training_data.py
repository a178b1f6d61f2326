"""The data a training run reads: its datasets, checked for something to learn, and each epoch's loader.

Shared by the gradient loop (``train.py``) and the staged R-CNN (``rcnn/``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detkit.config import ExperimentConfig
from detkit.data.coco import CocoDetection
from detkit.data.loaders import build_batch_loader
from detkit.data.mosaic import MosaicDataset
from detkit.data.sampler import DetectionBatchSampler
from detkit.data.seeded import SeededItems
from detkit.data.transforms import Compose, RandomHorizontalFlip, RandomPhotometric, Transform
from detkit.engine.distributed import SINGLE_PROCESS, Rank
from detkit.engine.events import EventCallback, Notice
from detkit.errors import ConfigError, DataError
from detkit.io import same_file
from detkit.pipelines import pipeline
from detkit.proposals.cache import ProposalCache

if TYPE_CHECKING:
    from torch.utils.data import DataLoader


def load_datasets(cfg: ExperimentConfig, *, augment: bool = True) -> tuple[CocoDetection, CocoDetection]:
    """Train and validation sets; a selective-search pipeline's training targets carry cached proposals,
    a mask pipeline's carry instance masks. ``augment=False`` leaves the training images as they are
    (R-CNN: its feature cache stores every region of every image once, unflipped)."""
    data = cfg.data
    spec = pipeline(cfg.model.pipeline)
    with_masks = spec.masks
    if not data.train_annotations or not data.train_images:
        raise ConfigError("no training data: pass --data, or set data.train_annotations and data.train_images")
    proposals = None
    if spec.uses_selective_search:
        if data.mosaic_prob > 0:
            raise ConfigError(
                f"data.mosaic_prob={data.mosaic_prob}: {cfg.model.pipeline} trains on selective-search proposals of "
                "whole images, which a mosaic does not have; set data.mosaic_prob=0"
            )
        proposals = ProposalCache(cfg.model.proposals).proposals_for
    train_set = CocoDetection(
        data.train_annotations,
        data.train_images,
        transforms=_train_transforms(cfg) if augment else None,
        with_masks=with_masks,
        proposals=proposals,
    )
    val_set = CocoDetection(
        data.val_annotations or data.train_annotations,
        data.val_images or data.train_images,
        category_ids=train_set.category_ids,  # scored against the json's own polygons/RLE: no decoding needed
    )
    for dataset in (train_set, val_set):
        dataset.require_image_files()
    require_something_to_train(train_set)
    return train_set, val_set


def require_something_to_train(dataset: CocoDetection) -> None:
    """A run over no image, or over images without one box to learn from, would write a checkpoint of
    untrained weights and point ``runs/latest.json`` at it: refuse it instead."""
    if len(dataset) == 0:
        raise DataError(f"{dataset.annotation_file}: lists no images; there is nothing to train on")
    if dataset.num_trainable_boxes == 0:
        report = dataset.report
        raise DataError(
            f"{dataset.annotation_file}: no box to train on ({report.num_annotations} annotations; none is a usable, "
            f"non-crowd box of a known category); check it with `detkit data check {dataset.annotation_file}`"
        )


def validation_notice(cfg: ExperimentConfig) -> Notice | None:
    """Say so when validation runs on the training data: its scores measure the fit, not accuracy."""
    data = cfg.data
    if data.val_annotations and not same_file(data.val_annotations, data.train_annotations):
        return None
    return Notice(
        f"validating on the training data ({data.train_annotations}): scores measure the fit to it, not accuracy "
        "on new images; pass --val-data (or a dataset with a val split) to measure that"
    )


def epoch_loader(
    dataset: CocoDetection,
    cfg: ExperimentConfig,
    epoch: int,
    *,
    rank: Rank = SINGLE_PROCESS,
    start: int = 0,
    pin_memory: bool = False,
) -> DataLoader[Any]:
    """This process's loader for ``epoch``, skipping the first ``start`` global batches (a resumed run)."""
    data = cfg.data
    groups = dataset.orientations() if data.group_by_aspect else None
    items: CocoDetection | MosaicDataset = dataset
    if data.mosaic_prob > 0 and epoch < cfg.solver.epochs - data.mosaic_off_epochs:
        items, groups = (
            MosaicDataset(dataset, prob=data.mosaic_prob, scale_range=data.mosaic_scale),
            None,
        )  # mosaics are square
    sampler = DetectionBatchSampler(
        len(dataset),
        batch_size=data.batch_size,
        seed=cfg.seed,
        epoch=epoch,
        groups=groups,
        rank=rank.rank,
        world_size=rank.world_size,
        start=start,
    )
    return build_batch_loader(
        SeededItems(items, seed=cfg.seed, epoch=epoch), sampler, num_workers=data.num_workers, pin_memory=pin_memory
    )


def _train_transforms(cfg: ExperimentConfig) -> Compose:
    """Per-image augmentation: flip, then colour jitter when ``data.color_jitter`` > 0."""
    transforms: list[Transform] = [RandomHorizontalFlip(cfg.data.hflip_prob)]
    if cfg.data.color_jitter > 0:
        amount = cfg.data.color_jitter
        if amount >= 1:
            raise ConfigError(f"data.color_jitter={amount} must be in [0, 1): factors are drawn from [1 - a, 1 + a]")
        transforms.append(RandomPhotometric(brightness=amount, contrast=amount, saturation=amount))
    return Compose(transforms)


def report_dataset(dataset: CocoDetection, on_event: EventCallback) -> None:
    """A notice of the boxes the dataset's construction clipped, dropped or left to the image files' sizes."""
    report = dataset.report
    outside = report.num_outside_json_frame
    if report.num_clipped or report.num_dropped_degenerate or outside:
        on_event(
            Notice(
                f"{dataset.annotation_file}: {report.num_clipped} boxes past their image's border (clipped), "
                f"{report.num_dropped_degenerate} degenerate boxes dropped"
                + (
                    f", {outside} boxes outside the json's width/height (the image files' sizes decide)"
                    if outside
                    else ""
                )
                + " (run `detkit data check` for details)"
            )
        )
