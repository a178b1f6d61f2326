"""What ``detkit detect`` asks for (``DetectRequest``) and what it did (``DetectSummary``).

Each image's detections are announced as an ``ImageDetected`` event as soon as its batch is done
(the CLI prints its table) and streamed to ``detections.jsonl`` (``detect_outputs``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from detkit.data.image_files import find_images
from detkit.engine.detect_outputs import DetectionWriter
from detkit.engine.events import EventCallback, ImageDetected, ignore_events
from detkit.engine.predict import ModelChoice, detect_images, load_chosen
from detkit.engine.proposals import ProposalRun, warm_proposal_cache


@dataclass(frozen=True)
class DetectRequest:
    images: tuple[str, ...]  # files, folders or glob patterns
    model: ModelChoice = field(default_factory=lambda: ModelChoice(score_thresh=0.5))
    out: Path = Path("detections")
    save_images: bool = True


@dataclass(frozen=True)
class DetectSummary:
    num_images: int
    num_detections: int
    results: Path  # detections.json
    out: Path
    images_written: int
    proposals: ProposalRun | None  # the selective-search pass before the model ran


def run_detection(request: DetectRequest, on_event: EventCallback = ignore_events) -> DetectSummary:
    paths = find_images(list(request.images))
    model, checkpoint, device = load_chosen(request.model, on_event)
    writer = DetectionWriter(
        request.out,
        paths,
        checkpoint.class_names,
        checkpoint.category_ids,
        save_images=request.save_images,
        read_also=(Path(checkpoint.source),),
    )
    try:
        warm = warm_proposal_cache(checkpoint.config.model, paths, on_event=on_event)
        for item in detect_images(model, paths, device, batch_size=request.model.batch_size, on_event=on_event):
            on_event(ImageDetected(item.path, item.detections, checkpoint.class_names))
            writer.add(item)
    except BaseException:
        writer.abort()  # detections.jsonl keeps every image done so far
        raise
    results = writer.close()
    return DetectSummary(len(paths), len(writer.results), results, request.out, writer.images_written, warm)
