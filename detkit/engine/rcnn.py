"""Training R-CNN as a staged pipeline (DESIGN.md section 2): each stage's output is on disk under the
run directory with the key of everything it was made from, and a stage whose output is current is skipped.

    proposals   the shared selective-search cache (train + val), recall reported
    finetune    cnn.pt: the CNN fine-tuned on warped regions (K+1-way softmax); skipped when finetune_iters = 0
    features    features/<key>/shard-*.pt: float16 features of every ground truth and proposal
    svms        svms.pt: per-class linear SVMs with hard-negative mining (+ the feature scale)
    regressors  regressors.pt: per-class ridge box regressors
    then        validation AP, best.pt / last.pt holding the CNN, the SVMs and the regressors together

Keys chain: features depend on the data, the proposals and the CNN's weights (hashed), the SVMs and
regressors on the features and their own settings. Changing any input gives a new key, so a stale
output is recomputed, never silently reused; ``stages.json`` records each stage's key, time and numbers.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from detkit.checkpoint import Checkpoint, save_checkpoint
from detkit.config import ExperimentConfig
from detkit.config.overrides import config_to_dict
from detkit.data.coco import CocoDetection
from detkit.data.seeded import hash_ints
from detkit.engine.device import resolve_device, seed_everything
from detkit.engine.distributed import SINGLE_PROCESS, Rank, barrier, broadcast_buffers_from_main, broadcast_from_main
from detkit.engine.evaluate import evaluate_detector
from detkit.engine.events import EventCallback, Notice, StageAdvanced, StageFinished, StageStarted, ignore_events
from detkit.engine.fine_tune import start_from_checkpoint
from detkit.engine.proposals import propose_and_report
from detkit.engine.runs import CONFIG, TrainResult, new_run_dir, record_latest, removed_on_failure
from detkit.engine.solver import build_optimizer, build_scheduler
from detkit.engine.training_data import epoch_loader
from detkit.errors import ConfigError
from detkit.io import atomic_write, atomic_write_text, read_regular_bytes
from detkit.pipelines.rcnn.features import (
    SHARD_IMAGES,
    RegionSet,
    read_feature_shards,
    shard_bytes,
    write_feature_shards,
)
from detkit.pipelines.rcnn.model import RCNNDetector
from detkit.pipelines.rcnn.regression import fit_box_regressors
from detkit.pipelines.rcnn.svm import SVMRound, train_svms
from detkit.proposals.cache import ProposalCache, params_digest

STAGES_FILE = "stages.json"


def train_rcnn(
    cfg: ExperimentConfig, *, rank: Rank = SINGLE_PROCESS, device: torch.device | None = None,
    resume_from: Path | None = None, on_event: EventCallback = ignore_events,
):
    """Run (or resume) every stage; returns the engine's ``TrainResult``.

    Data-parallel: one process per machine fills the proposal cache, fine-tuning is DDP, every
    process extracts the features of its own shards, rank 0 fits the SVMs and regressors (the
    others read them from the run directory) and evaluation is shared.
    """
    started = time.perf_counter()
    seed_everything(cfg.seed)
    device = device or resolve_device(cfg.device)
    train_set, val_set = _datasets(cfg)
    cfg = replace(cfg, model=replace(cfg.model, num_classes=train_set.num_classes))
    run_dir = broadcast_from_main(_run_dir(cfg, resume_from) if rank.is_main else None)
    with removed_on_failure(run_dir, fresh=resume_from is None, owner=rank.is_main):
        log = _StageLog(run_dir / STAGES_FILE, writable=rank.is_main)
        model = RCNNDetector(cfg.model)
        if resume_from is None and cfg.model.init_weights:
            start_from_checkpoint(model, cfg, on_event if rank.is_main else ignore_events)
        model = model.to(device)

        with _local_main_first(rank):
            data_key = _proposal_stage(cfg, train_set, val_set, run_dir, log, on_event)
        _finetune_stage(cfg, model, train_set, data_key, run_dir, log, device, rank, on_event)
        features_key = _digest(data_key, _state_digest(model.cnn), cfg.model.rcnn.crop_size, cfg.model.rcnn.context_padding, SHARD_IMAGES)
        regions = _features_stage(model, train_set, features_key, run_dir, log, rank, on_event)
        if rank.is_main:
            _svm_stage(cfg, model, regions, features_key, run_dir, log, on_event)
            _regressor_stage(cfg, model, regions, features_key, run_dir, log, on_event)
        barrier()
        if not rank.is_main:
            _apply_svms(model, torch.load(run_dir / "svms.pt", weights_only=True))
            model.regressor_weight.copy_(torch.load(run_dir / "regressors.pt", weights_only=True))

        stage_started = time.perf_counter()
        metrics = evaluate_detector(model, val_set, device=device, batch_size=cfg.data.batch_size, on_event=on_event)
        if rank.is_main:
            log.record("evaluate", "", time.perf_counter() - stage_started, {"AP": metrics["AP"], "AP50": metrics["AP50"]})
            checkpoint = Checkpoint(
                config=cfg, model_state=model.state_dict(), class_names=train_set.class_names,
                category_ids=train_set.category_ids, metrics=metrics, training_state={},
            )
            for name in ("last.pt", "best.pt"):
                save_checkpoint(run_dir / name, checkpoint)
            record_latest(cfg.output_dir, run_dir / "best.pt")
    barrier()
    return TrainResult(run_dir, run_dir / "best.pt", run_dir / "last.pt", metrics, time.perf_counter() - started)


def _run_dir(cfg: ExperimentConfig, resume_from: Path | None) -> Path:
    """A new run directory, or the one being resumed; either way with the resolved config in it."""
    run_dir = Path(resume_from) if resume_from is not None else new_run_dir(cfg.output_dir, cfg.name)
    if resume_from is not None and not (run_dir / CONFIG).is_file():
        raise ConfigError(f"{run_dir}: no {CONFIG} here; pass the run directory of an rcnn training run")
    atomic_write_text(run_dir / CONFIG, json.dumps(config_to_dict(cfg), indent=2))
    return run_dir


@contextmanager
def _local_main_first(rank: Rank) -> Iterator[None]:
    """The first process of each machine runs the block, then the others (which then find its outputs)."""
    if rank.local_rank != 0:
        barrier()
    yield
    if rank.local_rank == 0:
        barrier()


def _datasets(cfg: ExperimentConfig) -> tuple[CocoDetection, CocoDetection]:
    data = cfg.data
    if not data.train_annotations or not data.train_images:
        raise ConfigError("no training data: pass --data, or set data.train_annotations and data.train_images")
    cache = ProposalCache(cfg.model.proposals)
    train_set = CocoDetection(data.train_annotations, data.train_images, proposals=cache.proposals_for)
    val_set = CocoDetection(
        data.val_annotations or data.train_annotations, data.val_images or data.train_images, category_ids=train_set.category_ids,
    )
    for dataset in (train_set, val_set):
        dataset.require_image_files()
    return train_set, val_set


# --- stages -----------------------------------------------------------------------------------


def _proposal_stage(cfg, train_set, val_set, run_dir, log, on_event) -> str:
    """Fill the proposal cache (cheap when already full) and return the key of data + proposals."""
    started = time.perf_counter()
    info: dict[str, Any] = {}
    for split, dataset in (("train", train_set), ("val", val_set)):
        run = propose_and_report(dataset, cfg.model.proposals, label=split, on_event=on_event)
        info[split] = {"images": run.num_images, "computed": run.num_computed, "proposals_per_image": run.proposals_per_image,
                       **{f"recall@{t}": r for t, r in run.recall.recall.items()}}
    key = _digest(_file_digest(train_set.annotation_file), _images_digest(train_set), params_digest(cfg.model.proposals))
    if not (log.is_current("proposals", key, run_dir) and not any(split["computed"] for split in info.values())):
        log.record("proposals", key, time.perf_counter() - started, info)  # a pure cache check keeps the first run's time
    return key


def _finetune_stage(cfg, model: RCNNDetector, train_set, data_key, run_dir, log, device, rank: Rank, on_event) -> None:
    rcnn = cfg.model.rcnn
    if rcnn.finetune_iters <= 0:
        return
    key = _digest(data_key, _state_digest(model.cnn), _settings(rcnn, "finetune_", "crop_size", "context_padding"), asdict(cfg.solver), cfg.seed)
    path = run_dir / "cnn.pt"
    if log.is_current("finetune", key, path):
        model.cnn.load_state_dict(torch.load(path, weights_only=True))
        on_event(Notice(f"finetune: current, loaded {path}", level="info"))
        return
    started = time.perf_counter()
    losses = _finetune(cfg, model, train_set, device, rank, on_event)
    broadcast_buffers_from_main(model)  # every process extracts features with rank 0's CNN
    if rank.is_main:
        state = model.cnn.state_dict()
        atomic_write(path, lambda handle: torch.save(state, handle))
    log.record("finetune", key, time.perf_counter() - started, {"iters": rcnn.finetune_iters, "final_loss": losses[-1] if losses else None})


def _finetune(cfg, model: RCNNDetector, train_set, device, rank: Rank, on_event) -> list[float]:
    """SGD/AdamW (the solver config) on the K+1-way window classification loss, ``finetune_iters`` steps
    (data-parallel across the processes, each on its slice of every global batch)."""
    iters = cfg.model.rcnn.finetune_iters
    optimizer = build_optimizer(model.cnn, cfg.solver)
    scheduler = build_scheduler(optimizer, replace(cfg.solver, epochs=1), iters)
    trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if rank.joined else model
    model.train()
    losses, running, step, epoch = [], None, 0, 0
    on_event(StageStarted("finetune", total=iters, description="fine-tuning the CNN on warped regions"))
    while step < iters:
        for images, targets in epoch_loader(train_set, cfg, epoch, rank=rank):
            torch.manual_seed(hash_ints(cfg.seed, rank.rank, step))  # window sampling: the same after a re-run
            loss = trained([i.to(device) for i in images], [t.to(device) for t in targets]).losses["loss_cls"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(float(loss.detach()))
            running = losses[-1] if running is None else 0.9 * running + 0.1 * losses[-1]
            on_event(StageAdvanced("finetune", step, {"loss_cls": running}))
            if step == iters:
                break
        epoch += 1
    on_event(StageFinished("finetune"))
    model.eval()
    return losses


def _features_stage(model, train_set, key, run_dir, log, rank: Rank, on_event) -> RegionSet | None:
    """Every process writes its own missing shards; rank 0 then reads them all (the others get None)."""
    root = run_dir / "features"
    folder = root / key[:16]
    if rank.is_main:
        for stale in (p for p in root.glob("*") if p.is_dir() and p != folder):
            shutil.rmtree(stale)  # features of another CNN or data: never to be read again
    barrier()
    started = time.perf_counter()
    on_event(StageStarted("features", total=len(train_set), description="extracting region features"))
    write_feature_shards(
        model, train_set, folder, on_progress=lambda done: on_event(StageAdvanced("features", done)), rank=rank.rank, world_size=rank.world_size,
    )
    on_event(StageFinished("features"))
    barrier()
    if not rank.is_main:
        return None
    regions = read_feature_shards(folder, len(train_set))
    size = shard_bytes(folder)
    if not log.is_current("features", key, folder):
        log.record("features", key, time.perf_counter() - started, {"regions": len(regions), "cache_bytes": size})
    on_event(Notice(f"feature cache: {len(regions)} regions x {regions.features.shape[1]} float16 = {size / 2**20:.1f} MiB in {folder}", level="info"))
    return regions


def _svm_stage(cfg, model: RCNNDetector, regions: RegionSet, features_key, run_dir, log, on_event) -> None:
    rcnn = cfg.model.rcnn
    key = _digest(features_key, _settings(rcnn, "svm_", "feature_norm"), cfg.seed)
    path = run_dir / "svms.pt"
    if log.is_current("svms", key, path):
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
            (features.float() * scale).half(), regions.is_gt.to(features.device), regions.labels.to(features.device),
            regions.class_iou.to(features.device), rcnn, model.num_classes, on_round, generator,
        )
        on_event(StageAdvanced("svms", model.num_classes))
        on_event(StageFinished("svms"))
        saved = {"weight": weight.cpu(), "bias": bias.cpu(), "feature_scale": scale.cpu()}
        atomic_write(path, lambda handle: torch.save(saved, handle))
        log.record("svms", key, time.perf_counter() - started, {"rounds": [asdict(r) for r in rounds]})
    _apply_svms(model, saved)


def _apply_svms(model: RCNNDetector, saved: dict[str, torch.Tensor]) -> None:
    model.svm_weight.copy_(saved["weight"])
    model.svm_bias.copy_(saved["bias"])
    model.feature_scale.copy_(saved["feature_scale"])


def _regressor_stage(cfg, model: RCNNDetector, regions: RegionSet, features_key, run_dir, log, on_event) -> None:
    rcnn = cfg.model.rcnn
    key = _digest(features_key, rcnn.bbox_reg_iou, rcnn.ridge_lambda, rcnn.feature_norm)
    path = run_dir / "regressors.pt"
    if log.is_current("regressors", key, path):
        weight = torch.load(path, weights_only=True)
    else:
        started = time.perf_counter()
        features = regions.features.float() * model.feature_scale.cpu()
        weight, counts = fit_box_regressors(
            features, regions.boxes, regions.gt_boxes, regions.labels, regions.max_iou, regions.is_gt,
            model.num_classes, rcnn.bbox_reg_iou, rcnn.ridge_lambda, model.box_coder,
        )
        atomic_write(path, lambda handle: torch.save(weight, handle))
        log.record("regressors", key, time.perf_counter() - started, {"pairs_per_class": counts})
    model.regressor_weight.copy_(weight)


# --- keys and the stage log -------------------------------------------------------------------


class _StageLog:
    """``stages.json``: per stage its key, wall seconds and numbers; what decides whether a stage is current."""

    def __init__(self, path: Path, writable: bool = True) -> None:
        self.path, self.writable = path, writable  # data-parallel, only rank 0 writes it
        self.entries: dict[str, Any] = json.loads(read_regular_bytes(path)) if path.is_file() else {}

    def is_current(self, stage: str, key: str, output: Path) -> bool:
        return self.entries.get(stage, {}).get("key") == key and output.exists()

    def record(self, stage: str, key: str, seconds: float, info: dict[str, Any]) -> None:
        self.entries[stage] = {"key": key, "seconds": round(seconds, 3), **info}
        if self.writable:
            atomic_write_text(self.path, json.dumps(self.entries, indent=2))


def _settings(rcnn, *prefixes: str) -> dict[str, Any]:
    """The RCNNConfig fields a stage depends on (named, or starting with a prefix): only they key it."""
    return {name: value for name, value in asdict(rcnn).items() if any(name.startswith(p) for p in prefixes)}


def _digest(*parts: Any) -> str:
    return hashlib.blake2b(json.dumps(parts, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()


def _file_digest(path: Path) -> str:
    return hashlib.blake2b(read_regular_bytes(path), digest_size=16).hexdigest()


def _images_digest(dataset: CocoDetection) -> str:
    """Names, sizes and modification times of the image files: an image replaced in place changes the key."""
    stats = []
    for index in range(len(dataset)):
        path = dataset.image_path(index)
        stat = path.stat()
        stats.append((str(path), stat.st_size, stat.st_mtime_ns))
    return _digest(stats)


def _state_digest(module: torch.nn.Module) -> str:
    """Hash of a module's weights and buffers: features from other weights get another key."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
