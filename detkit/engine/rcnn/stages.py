"""The training stages of R-CNN, in order; each takes the run's ``StageContext`` and the key of what it
is made from, and records itself in the stage log (``context.py``). The outputs, under the run directory:

    proposals   (the shared selective-search cache; nothing in the run directory)
    finetune    cnn.pt
    features    features/<key[:16]>/shard-*.pt (``features.py``)
    svms        svms.pt: {"weight" [K, D], "bias" [K], "feature_scale" []}
    regressors  regressors.pt: [K, D + 1, 4]
    evaluate    (validation AP and AP50, in the log only)
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor

from detkit.engine.distributed import barrier, broadcast_buffers_from_main
from detkit.engine.evaluate import evaluate_detector
from detkit.engine.events import Notice, StageAdvanced, StageFinished, StageStarted
from detkit.engine.proposals import propose_and_report
from detkit.engine.rcnn.context import (
    StageContext,
    digest,
    file_digest,
    images_digest,
    settings,
    state_digest,
)
from detkit.engine.rcnn.features import (
    SHARD_IMAGES,
    read_feature_shards,
    shard_bytes,
    write_feature_shards,
)
from detkit.engine.rcnn.finetune import finetune_cnn
from detkit.io import atomic_write
from detkit.pipelines.rcnn.features import RegionSet
from detkit.pipelines.rcnn.model import RCNNDetector
from detkit.pipelines.rcnn.regression import fit_box_regressors
from detkit.pipelines.rcnn.svm import SVMRound, train_svms
from detkit.proposals.cache import params_digest


def proposal_stage(ctx: StageContext) -> str:
    """Fill the proposal cache (cheap when already full) and return the key of data + proposals."""
    cfg, log = ctx.cfg, ctx.log
    started = time.perf_counter()
    info: dict[str, Any] = {}
    for split, dataset in (("train", ctx.train_set), ("val", ctx.val_set)):
        run = propose_and_report(dataset, cfg.model.proposals, label=split, on_event=ctx.on_event)
        recall = run.recall.recall if run.recall is not None else {}  # a dataset has ground truth: always set
        info[split] = {
            "images": run.num_images,
            "computed": run.num_computed,
            "proposals_per_image": run.proposals_per_image,
            **{f"recall@{t}": r for t, r in recall.items()},
        }
    train_set = ctx.train_set
    key = digest(file_digest(train_set.annotation_file), images_digest(train_set), params_digest(cfg.model.proposals))
    if not (log.is_current("proposals", key, ctx.run_dir) and not any(split["computed"] for split in info.values())):
        # A pure cache check keeps the first run's time.
        log.record("proposals", key, time.perf_counter() - started, info)
    return key


def finetune_stage(ctx: StageContext, data_key: str) -> None:
    """``cnn.pt``: the fine-tuned CNN (``finetune.py``), or nothing when ``finetune_iters`` is 0."""
    cfg, rcnn, model = ctx.cfg, ctx.rcnn, ctx.model
    if rcnn.finetune_iters <= 0:
        return
    key = digest(
        data_key,
        state_digest(model.cnn),
        settings(rcnn, "finetune_", "crop_size", "context_padding"),
        asdict(cfg.solver),
        cfg.seed,
    )
    path = ctx.run_dir / "cnn.pt"
    if ctx.log.is_current("finetune", key, path):
        model.cnn.load_state_dict(torch.load(path, weights_only=True))
        ctx.on_event(Notice(f"finetune: current, loaded {path}", level="info"))
        return
    started = time.perf_counter()
    losses = finetune_cnn(ctx)
    broadcast_buffers_from_main(model)  # every process extracts features with rank 0's CNN
    if ctx.rank.is_main:
        state = model.cnn.state_dict()
        atomic_write(path, lambda handle: torch.save(state, handle))
    final_loss = losses[-1] if losses else None
    info = {"iters": rcnn.finetune_iters, "final_loss": final_loss}
    ctx.log.record("finetune", key, time.perf_counter() - started, info)


def features_key(ctx: StageContext, data_key: str) -> str:
    """The key of the feature cache: the data and proposals, the CNN's weights, the warp and the shard layout."""
    rcnn = ctx.rcnn
    return digest(data_key, state_digest(ctx.model.cnn), rcnn.crop_size, rcnn.context_padding, SHARD_IMAGES)


def features_stage(ctx: StageContext, key: str) -> RegionSet | None:
    """Every process writes its own missing shards; rank 0 then reads them all (the others get None)."""
    rank, on_event = ctx.rank, ctx.on_event
    root = ctx.run_dir / "features"
    folder = root / key[:16]
    if rank.is_main:
        for stale in (p for p in root.glob("*") if p.is_dir() and p != folder):
            shutil.rmtree(stale)  # features of another CNN or data: never to be read again
    barrier()
    started = time.perf_counter()
    on_event(StageStarted("features", total=len(ctx.train_set), description="extracting region features"))
    write_feature_shards(
        ctx.model,
        ctx.train_set,
        folder,
        on_progress=lambda done: on_event(StageAdvanced("features", done)),
        rank=rank.rank,
        world_size=rank.world_size,
    )
    on_event(StageFinished("features"))
    barrier()
    if not rank.is_main:
        return None
    regions = read_feature_shards(folder, len(ctx.train_set))
    size = shard_bytes(folder)
    if not ctx.log.is_current("features", key, folder):
        info = {"regions": len(regions), "cache_bytes": size}
        ctx.log.record("features", key, time.perf_counter() - started, info)
    dim = regions.features.shape[1]
    message = f"feature cache: {len(regions)} regions x {dim} float16 = {size / 2**20:.1f} MiB in {folder}"
    on_event(Notice(message, level="info"))
    return regions


def svm_stage(ctx: StageContext, regions: RegionSet, features_key: str) -> None:
    """``svms.pt``: per-class SVMs on the scaled features, with hard-negative mining; applied to the model."""
    cfg, rcnn, model, on_event = ctx.cfg, ctx.rcnn, ctx.model, ctx.on_event
    key = digest(features_key, settings(rcnn, "svm_", "feature_norm"), cfg.seed)
    path = ctx.run_dir / "svms.pt"
    if ctx.log.is_current("svms", key, path):
        saved = torch.load(path, weights_only=True)
    else:
        started = time.perf_counter()
        features = regions.features.to(model.svm_weight.device)
        scale = rcnn.feature_norm / features.float().norm(dim=1).mean().clamp_min(1e-6)
        rounds: list[SVMRound] = []
        on_event(StageStarted("svms", total=model.num_classes, description="SVMs with hard-negative mining"))

        def on_round(entry: SVMRound) -> None:
            rounds.append(entry)
            on_event(StageAdvanced("svms", entry.label, {"round": entry.round, "negatives": entry.negatives}))

        generator = torch.Generator().manual_seed(cfg.seed)
        weight, bias = train_svms(
            (features.float() * scale).half(),
            regions.is_gt.to(features.device),
            regions.labels.to(features.device),
            regions.class_iou.to(features.device),
            rcnn,
            model.num_classes,
            on_round,
            generator,
        )
        on_event(StageAdvanced("svms", model.num_classes))
        on_event(StageFinished("svms"))
        saved = {"weight": weight.cpu(), "bias": bias.cpu(), "feature_scale": scale.cpu()}
        atomic_write(path, lambda handle: torch.save(saved, handle))
        ctx.log.record("svms", key, time.perf_counter() - started, {"rounds": [asdict(r) for r in rounds]})
    apply_svms(model, saved)


def apply_svms(model: RCNNDetector, saved: dict[str, Tensor]) -> None:
    """Copy the contents of ``svms.pt`` into the detector's buffers."""
    model.svm_weight.copy_(saved["weight"])
    model.svm_bias.copy_(saved["bias"])
    model.feature_scale.copy_(saved["feature_scale"])


def regressor_stage(ctx: StageContext, regions: RegionSet, features_key: str) -> None:
    """``regressors.pt``: per-class ridge box regressors on the scaled features; applied to the model."""
    rcnn, model = ctx.rcnn, ctx.model
    key = digest(features_key, rcnn.bbox_reg_iou, rcnn.ridge_lambda, rcnn.feature_norm)
    path = ctx.run_dir / "regressors.pt"
    if ctx.log.is_current("regressors", key, path):
        weight = torch.load(path, weights_only=True)
    else:
        started = time.perf_counter()
        features = regions.features.float() * model.feature_scale.cpu()
        weight, counts = fit_box_regressors(
            features,
            regions.boxes,
            regions.gt_boxes,
            regions.labels,
            regions.max_iou,
            regions.is_gt,
            model.num_classes,
            rcnn.bbox_reg_iou,
            rcnn.ridge_lambda,
            model.box_coder,
        )
        atomic_write(path, lambda handle: torch.save(weight, handle))
        ctx.log.record("regressors", key, time.perf_counter() - started, {"pairs_per_class": counts})
    model.regressor_weight.copy_(weight)


def evaluate_stage(ctx: StageContext) -> dict[str, float]:
    """COCO box metrics of the finished detector on the validation set (every process takes part)."""
    started = time.perf_counter()
    metrics = evaluate_detector(
        ctx.model,
        ctx.val_set,
        device=ctx.device,
        batch_size=ctx.cfg.data.batch_size,
        on_event=ctx.on_event,
    )
    if ctx.rank.is_main:
        ctx.log.record("evaluate", "", time.perf_counter() - started, {"AP": metrics["AP"], "AP50": metrics["AP50"]})
    return metrics
