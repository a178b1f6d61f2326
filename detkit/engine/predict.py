"""Detection on image files: find them, run a trained detector in batches, return per-image results.

``load_detector`` is where every command gets its model: a detkit checkpoint, a torchvision ``.pth``, a
pretrained name, or an exported file (``detkit export``: ``.onnx`` run by onnxruntime, ``.torchscript``
by ``torch.jit``), which comes back as an ``export.runtime.ExportedDetector`` with the same call
contract and a ``Checkpoint`` built from the file's metadata (class names, category ids, config).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn

from detkit.checkpoint import LOCATION_FIELDS, Checkpoint, load_checkpoint, model_from_checkpoint
from detkit.config import ExperimentConfig
from detkit.config.overrides import apply_overrides, config_from_dict, without_keys
from detkit.data.images import image_to_tensor
from detkit.data.prefetch import prefetched_images
from detkit.engine.detect_timing import DetectTiming
from detkit.engine.device import resolve_device, use_cpu_threads
from detkit.engine.events import EventCallback, Notice, StageAdvanced, StageFinished, StageStarted, ignore_events
from detkit.engine.runs import latest_checkpoint
from detkit.errors import CheckpointError, ConfigError
from detkit.export.files import exported_format, open_exported
from detkit.export.metadata import ExportMetadata
from detkit.export.runtime import ExportedDetector
from detkit.modeling.box_head import MLPBoxHead
from detkit.modeling.fuse import fold_batch_norms
from detkit.modeling.precomputed_proposals import PrecomputedProposals
from detkit.modeling.stages import record_stages
from detkit.pipelines import PIPELINES, pipeline
from detkit.structures import Detections


@dataclass
class ImageDetections:
    path: Path
    image_id: int  # 1-based position in the input list: the id written to the results json
    image: np.ndarray  # uint8 [H, W, 3] RGB as read
    detections: Detections


@dataclass(frozen=True)
class ModelChoice:
    """Which trained model a command runs, and how: its checkpoint (None: the last ``detkit train``'s,
    named by ``runs/latest.json``), device, test-time ``--set`` overrides, SVD rank, score threshold,
    images per forward pass and CPU threads (None: ``engine.device.default_cpu_threads``)."""

    weights: Path | None = None
    device: str = "auto"
    overrides: tuple[str, ...] = ()
    svd_rank: int | None = None
    score_thresh: float | None = None
    batch_size: int = 1
    threads: int | None = None


def load_chosen(
    choice: ModelChoice, on_event: EventCallback = ignore_events
) -> tuple[nn.Module, Checkpoint, torch.device]:
    """``load_detector`` of ``choice`` on its device, for inference only (``for_inference``); says which
    checkpoint ``runs/latest.json`` gave. The process's CPU threads are set here, where computing starts."""
    use_cpu_threads(choice.threads)
    device = resolve_device(choice.device)
    model, checkpoint = load_detector(
        choice.weights,
        device,
        score_thresh=choice.score_thresh,
        svd_rank=choice.svd_rank,
        overrides=list(choice.overrides),
        for_inference=True,
    )
    if choice.weights is None:
        on_event(Notice(f"{checkpoint.source} (the last `detkit train`, from runs/latest.json)", level="weights"))
    if isinstance(model, ExportedDetector) and model.fixed_size is not None:
        height, width = model.fixed_size
        on_event(
            Notice(
                f"{checkpoint.source} takes {height}x{width} images only: others are letterboxed into it "
                "(export with --dynamic to run each image at its own size)",
                level="info",
            )
        )
    return model, checkpoint, device


def load_detector(
    weights: str | Path | None,
    device: torch.device,
    score_thresh: float | None = None,
    svd_rank: int | None = None,
    overrides: list[str] | None = None,
    *,
    for_inference: bool = False,
) -> tuple[nn.Module, Checkpoint]:
    """The model in a checkpoint (default: the latest ``detkit train``), in eval mode on ``device``.

    ``overrides`` (``key=value``) change the checkpoint's config before the model is built: test-time
    settings such as ``model.rcnn.box_regression=false`` or ``model.roi_heads.nms_thresh=0.6``;
    ``score_thresh`` is one of them, at the pipeline's own key (``PipelineSpec.score_thresh_key``).
    ``svd_rank`` (default: the checkpoint's ``model.roi_heads.svd_rank``) > 0 factorizes the box
    head's FC layers by truncated SVD (Fast R-CNN section 3.1): faster, slightly less accurate.
    ``for_inference`` readies a model that only runs inference (``prepare_for_inference``): its state dict
    is then no checkpoint's, so never for one that is saved or trained afterwards.
    An exported file (``exported_format``) is loaded by ``load_exported``.
    """
    if weights is not None and exported_format(weights) is not None:
        return load_exported(Path(weights), device, score_thresh, svd_rank, overrides)
    checkpoint = load_checkpoint(weights if weights is not None else latest_checkpoint())
    spec = pipeline(checkpoint.pipeline)
    assignments = [
        *(overrides or []),
        *([f"{spec.score_thresh_key}={score_thresh}"] if score_thresh is not None else []),
    ]
    if assignments:
        checkpoint = replace(checkpoint, config=apply_overrides(checkpoint.config, assignments))
    model = model_from_checkpoint(checkpoint)
    rank = checkpoint.config.model.roi_heads.svd_rank if svd_rank is None else svd_rank
    if rank > 0:
        if not spec.svd_box_head:
            raise ConfigError(
                f"--svd-rank {rank}: truncated SVD applies to the FC box head of "
                f"{', '.join(name for name, s in PIPELINES.items() if s.svd_box_head)} models"
            )
        cast(MLPBoxHead, model.get_submodule("roi_heads.box_head")).truncate(rank)
    model.eval()
    if for_inference:
        return prepare_for_inference(model, device), checkpoint
    return model.to(device), checkpoint


def prepare_for_inference(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` (in eval mode, on the CPU) with each batch norm folded into the conv before it, on
    ``device``, its conv weights channels-last (NHWC): the same detections up to float rounding, faster.

    Folding (``modeling.fuse``) drops one pass over each normalized feature map; NHWC lets oneDNN (and
    cuDNN) skip reordering each conv's input and output. Measured at 640 px on one CPU thread (this
    thread's CPU time, medians of 15 alternated calls, random heads on the ImageNet MobileNetV2 trunk):
    YOLO 381 ms -> 297 folded -> 294 folded NHWC, Faster R-CNN MobileNetV2-FPN 506 -> 449 -> 421 ms.
    """
    fold_batch_norms(model)  # on the CPU, before the move: the scales in float64, which not every device has
    return model.to(device).to(memory_format=torch.channels_last)


def load_exported(
    path: Path,
    device: torch.device,
    score_thresh: float | None = None,
    svd_rank: int | None = None,
    overrides: list[str] | None = None,
) -> tuple[ExportedDetector, Checkpoint]:
    """An exported file as a detector and the ``Checkpoint`` its metadata describes (no weights: the graph
    holds them). Its settings were fixed at export: ``--set`` and ``--svd-rank`` belong to ``detkit export``;
    a ``score_thresh`` at or above the graph's own filters its detections."""
    if overrides or svd_rank:
        option = "--set" if overrides else "--svd-rank"
        raise ConfigError(f"{path}: an exported graph's settings are fixed; pass {option} to `detkit export` instead")
    session, metadata = open_exported(path, device)
    checkpoint = exported_checkpoint(metadata, path)
    proposals = PrecomputedProposals(checkpoint.config.model.proposals) if metadata.needs_proposals else None
    model = ExportedDetector(session, metadata, str(path), proposal_generator=proposals, score_thresh=score_thresh)
    return model.to(device).eval(), checkpoint


def exported_checkpoint(metadata: ExportMetadata, path: Path) -> Checkpoint:
    """What the rest of detkit reads of a checkpoint, from an exported file's metadata. As for a checkpoint,
    the config's locations are dropped: a file never chooses where detkit reads or writes."""
    try:
        config: ExperimentConfig = config_from_dict(ExperimentConfig, without_keys(metadata.config, LOCATION_FIELDS))
    except ConfigError as error:
        raise CheckpointError(
            f"{path}: its detkit.config does not fit this detkit ({error}); export it again"
        ) from None
    if config.model.pipeline != metadata.pipeline or config.model.num_classes != len(metadata.class_names):
        raise CheckpointError(
            f"{path}: its detkit.config describes a {config.model.pipeline} model of {config.model.num_classes} "
            f"classes, its metadata a {metadata.pipeline} of {len(metadata.class_names)}; export it again"
        )
    return Checkpoint(
        config=replace(config, name=config.model.pipeline),
        model_state={},
        class_names=list(metadata.class_names),
        category_ids=list(metadata.category_ids),
        detkit_version=metadata.detkit_version,
        source=str(path),
    )


@torch.inference_mode()
def detect_images(
    model: nn.Module,
    paths: list[Path],
    device: torch.device,
    *,
    batch_size: int = 1,
    workers: int = 0,
    timing: DetectTiming | None = None,
    on_event: EventCallback = ignore_events,
) -> Iterator[ImageDetections]:
    """Yield each image's detections (original frame, on the CPU) as soon as its batch is done; ``workers``
    processes decode images ahead of the model (``data.prefetch``). ``timing`` (when given) gets the
    decode, wait and model-stage seconds of every image."""
    timing = timing if timing is not None else DetectTiming()
    on_event(StageStarted("predict", total=len(paths)))
    decoded = prefetched_images(paths, workers)
    done = 0
    while done < len(paths):
        waited = time.perf_counter()
        batch = [next(decoded) for _ in range(min(batch_size, len(paths) - done))]
        timing.add("wait", time.perf_counter() - waited)
        for item in batch:
            timing.add("decode", item.seconds)
        started = time.perf_counter()
        with record_stages(device) as recorder:
            output = model([image_to_tensor(item.image).to(device) for item in batch])
        timing.add_call(time.perf_counter() - started, recorder.seconds)
        timing.images += len(batch)
        for item, dets in zip(batch, output.detections):
            yield ImageDetections(item.path, item.index + 1, item.image, dets.to("cpu"))
        done += len(batch)
        on_event(StageAdvanced("predict", completed=done))
    on_event(StageFinished("predict"))
