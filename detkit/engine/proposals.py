"""``detkit proposals``: selective search over a dataset into the cache, with timing and recall.

Also what training a selective-search pipeline calls first, so its loaders only read the cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch

from detkit.config import ModelConfig, ProposalConfig
from detkit.data.coco import CocoDetection
from detkit.data.formats.coco_reader import default_image_dir
from detkit.data.image_files import find_images
from detkit.engine.events import EventCallback, Notice, StageAdvanced, StageFinished, StageStarted, ignore_events
from detkit.evaluation.proposal_recall import ProposalRecall, RecallCounter
from detkit.io import atomic_write_json
from detkit.pipelines import pipeline
from detkit.proposals.cache import ProposalCache
from detkit.proposals.parallel import ImageProposals, propose_files


@dataclass
class ProposalRun:
    """What one pass over a set of images cost and (with ground truth) how much it recalls."""

    num_images: int
    num_computed: int  # cache misses: selective search ran
    compute_seconds: float  # summed over the computed images (per worker process)
    cache_seconds: float  # summed over the cache hits
    wall_seconds: float
    proposals_per_image: float
    recall: ProposalRecall | None  # None for a folder of images without annotations

    @property
    def seconds_per_computed_image(self) -> float:
        return self.compute_seconds / max(self.num_computed, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_images": self.num_images,
            "num_computed": self.num_computed,
            "num_cached": self.num_images - self.num_computed,
            "seconds_per_computed_image": self.seconds_per_computed_image,
            "seconds_per_cached_image": self.cache_seconds / max(self.num_images - self.num_computed, 1),
            "wall_seconds": self.wall_seconds,
            "proposals_per_image": self.proposals_per_image,
            # num_objects, recall {"0.5": r, "0.7": r} and per_class, when there is ground truth
            **(
                {}
                if self.recall is None
                else {k: v for k, v in self.recall.to_dict().items() if k not in ("num_images", "proposals_per_image")}
            ),
        }


def propose_dataset(
    dataset: CocoDetection, cfg: ProposalConfig, *, workers: int = 0, on_event: EventCallback = ignore_events
) -> ProposalRun:
    """Proposals for every image of a COCO dataset, with recall against its (non-crowd) ground truth."""
    counter = RecallCounter(dataset.class_names)
    paths = [dataset.image_path(index) for index in range(len(dataset))]

    def score(index: int, result: ImageProposals) -> None:
        target = dataset.target_for(index, result.image_size).without_crowd()
        counter.add(torch.from_numpy(result.boxes), target.boxes, target.labels)

    run = _run(paths, cfg, workers, on_event, score)
    run.recall = counter.result()
    return run


def propose_and_report(
    dataset: CocoDetection, cfg: ProposalConfig, *, label: str, on_event: EventCallback = ignore_events
) -> ProposalRun:
    """``propose_dataset``, then one info notice of what it cost and what it recalls (training's first words)."""
    run = propose_dataset(dataset, cfg, on_event=on_event)
    measured = cast(ProposalRecall, run.recall)  # propose_dataset always measures it: it has ground truth
    recall = ", ".join(f"recall@{t} {r:.3f}" for t, r in measured.recall.items())
    on_event(
        Notice(
            f"{label} proposals: {run.num_images} images ({run.num_computed} computed in {run.wall_seconds:.0f} s), "
            f"{run.proposals_per_image:.0f} per image, {recall}",
            level="info",
        )
    )
    return run


def propose_images(
    paths: Sequence[Path], cfg: ProposalConfig, *, workers: int = 0, on_event: EventCallback = ignore_events
) -> ProposalRun:
    """Proposals for image files without annotations: cost and counts only."""
    return _run(list(paths), cfg, workers, on_event, lambda index, result: None)


def _run(
    paths: list[Path],
    cfg: ProposalConfig,
    workers: int,
    on_event: EventCallback,
    visit: Callable[[int, ImageProposals], None],
) -> ProposalRun:
    started = time.perf_counter()
    computed = num_boxes = 0
    compute_seconds = cache_seconds = 0.0
    on_event(StageStarted("proposals", total=len(paths), description=f"selective search ({cfg.mode})"))
    for done, (index, result) in enumerate(propose_files(paths, cfg, workers), start=1):
        visit(index, result)
        num_boxes += len(result.boxes)
        if result.cached:
            cache_seconds += result.seconds
        else:
            computed += 1
            compute_seconds += result.seconds
        on_event(StageAdvanced("proposals", done, {"computed": computed, "boxes_per_image": num_boxes / done}))
    on_event(StageFinished("proposals"))
    return ProposalRun(
        num_images=len(paths),
        num_computed=computed,
        compute_seconds=compute_seconds,
        cache_seconds=cache_seconds,
        wall_seconds=time.perf_counter() - started,
        proposals_per_image=num_boxes / max(len(paths), 1),
        recall=None,
    )


def warm_proposal_cache(
    model_cfg: ModelConfig, paths: Sequence[Path], *, workers: int = 0, on_event: EventCallback = ignore_events
) -> ProposalRun | None:
    """For a pipeline fed by selective search: compute the images' missing proposals on every core first,
    so that the model, which runs image by image, only reads the cache. None for other pipelines."""
    if not pipeline(model_cfg.pipeline).uses_selective_search:
        return None
    return propose_images(paths, model_cfg.proposals, workers=workers, on_event=on_event)


@dataclass(frozen=True)
class ProposalsRequest:
    """``detkit proposals``: a COCO json (recall is reported) or image files/folders, the selective
    search settings, and where the report json goes (None: nowhere)."""

    data: Path
    images: Path | None
    cfg: ProposalConfig
    workers: int = 0
    out: Path | None = None


@dataclass(frozen=True)
class ProposalsReport:
    run: ProposalRun
    cfg: ProposalConfig
    cache: Path  # the cache folder of these settings
    written: Path | None


def run_proposals(request: ProposalsRequest, on_event: EventCallback = ignore_events) -> ProposalsReport:
    """Compute (or read from the cache) the proposals of every image, and their recall on a COCO json."""
    if request.data.suffix.lower() == ".json":
        dataset = CocoDetection(request.data, request.images or default_image_dir(request.data))
        run = propose_dataset(dataset, request.cfg, workers=request.workers, on_event=on_event)
    else:
        run = propose_images(find_images([str(request.data)]), request.cfg, workers=request.workers, on_event=on_event)
    if request.out is not None:
        atomic_write_json(request.out, {"params": asdict(request.cfg), **run.to_dict()}, indent=2)
    return ProposalsReport(run, request.cfg, ProposalCache(request.cfg).folder, request.out)
