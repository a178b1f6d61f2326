"""``detkit benchmark``: every model through the same measurements, on the same inputs, in one process.

Per model, in this order, over the same calls of ``batch_size`` images (with ``fold_norms``, on the
model with its batch norms folded into its convs, as ``detect`` and ``eval`` run it):

1. warm-up passes, the first one counting FLOPs (eager: the counter cannot see into compiled graphs;
   with ``compile`` the trunk is compiled after it and warmed up again);
2. timed passes (end-to-end latency, nothing synchronizes inside a call);
3. one stage-recorded pass (per-stage times: it syncs at stage boundaries, so it is kept apart from 2);
4. peak memory over 1-3; AP and AP50 on ``eval_dataset`` for a trained model;
5. with ``train``: training steps, last, on the model built again with its norms (no copy holds a
   second set of weights while memory is measured).
"""

from __future__ import annotations

import datetime
import multiprocessing
import platform
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import Tensor

from detkit.checkpoint import load_checkpoint
from detkit.data.coco import CocoDetection
from detkit.data.formats.coco_reader import default_image_dir
from detkit.engine.benchmark.cost import counted_flops, parameter_count
from detkit.engine.benchmark.inputs import dataset_inputs, four_by_three, scene_inputs
from detkit.engine.benchmark.memory import PeakMemory, current_rss_mib, reset_rss_peak
from detkit.engine.benchmark.models import (
    COCO_CLASSES,
    BenchmarkModel,
    checkpoint_model,
    exported_model,
    random_model,
    rebuilt_model,
)
from detkit.engine.benchmark.report import BenchmarkReport, PipelineResult
from detkit.engine.benchmark.runtime_compare import RuntimeComparison, compare_runtimes, exported_groups
from detkit.engine.benchmark.timing import Latency, stage_breakdown, time_repeatedly, warm_up
from detkit.engine.benchmark.torchvision_compare import (
    COMPARABLE_PIPELINES,
    TORCHVISION_BUILDERS,
    ComparisonResult,
    compare_with_torchvision,
)
from detkit.engine.benchmark.training import training_images_per_second
from detkit.engine.benchmark.ultralytics_compare import (
    UltralyticsComparison,
    compare_with_ultralytics,
    import_ultralytics,
)
from detkit.engine.evaluate import dataset_for_checkpoint, predict_dataset, score_detections
from detkit.engine.events import EventCallback, Notice, ignore_events
from detkit.engine.precision import Precision
from detkit.engine.predict import load_exported
from detkit.errors import ConfigError
from detkit.export.files import exported_format
from detkit.modeling.fuse import fold_batch_norms
from detkit.modeling.stages import STAGE_ORDER
from detkit.pipelines import pipeline
from detkit.pipelines.spec import RegionTally
from detkit.structures import Target
from detkit.version import __version__

DEFAULT_LONG_SIDE = 640
DEFAULT_IMAGES = 4


@dataclass(frozen=True)
class BenchmarkSettings:
    device: torch.device
    precision: Precision = Precision()
    batch_size: int = 1
    runs: int = 10
    warmup: int = 1  # passes over the inputs; at least 1 (it counts the FLOPs)
    max_seconds: float = 30.0  # per model and phase: once spent, no further timed pass starts
    train: bool = False
    fold_norms: bool = True  # time inference as detect and eval run it: batch norms folded into the convs
    # Measure each model in a fresh process: the allocator keeps what earlier models freed, so in
    # one process every row after the first would report (and inherit) their memory.
    isolate: bool = True


def benchmark_model(
    entry: BenchmarkModel,
    images: list[Tensor],
    targets: list[Target],
    settings: BenchmarkSettings,
    eval_dataset: CocoDetection | None = None,
    on_event: EventCallback = ignore_events,
) -> PipelineResult:
    """Measure one model on ``images`` (CPU tensors; moved to the device here). An exported file runs as
    its runtime runs it: no memory format, autocast or compile of ours, and no FLOPs or parameters (its
    runtime holds them); ``--train`` does not apply to it."""
    device, precision = settings.device, settings.precision
    eager = entry.runtime == "eager"
    model = entry.model.eval()
    params = parameter_count(model) if eager else None  # the model's own: folding drops the norms' parameters
    if eager:
        if settings.fold_norms:
            fold_batch_norms(model)
        model = precision.prepare(model.to(device))
    batches = _batches([image.to(device) for image in images], settings.batch_size)
    calls = [lambda batch=batch: model(batch) for batch in batches]

    memory = PeakMemory(device)
    rss_at_start = current_rss_mib()
    memory.start()
    counting = "FLOPs counted" if eager else entry.runtime
    on_event(Notice(f"{entry.name}: warming up ({len(images)} images, {counting})", level="info"))
    with torch.inference_mode(), precision.autocast(device) if eager else nullcontext():
        gflops: float | None = None
        if eager:
            gflops = counted_flops(calls) / 1e9 / len(images)
            precision.compile_dense(model, pipeline(entry.pipeline).dense_network)
        else:
            warm_up(calls, 1)  # the first warm-up pass; torch cannot count what a runtime computes
        warm_up(calls, settings.warmup - 1 + (precision.compile and eager))
        on_event(Notice(f"{entry.name}: timing", level="info"))
        times = time_repeatedly(calls, device, settings.runs, settings.max_seconds)
        tally = _reset_region_tally(entry.pipeline, model)
        stages = stage_breakdown(calls, device, num_images=len(images))
    result = PipelineResult(
        name=entry.name,
        pipeline=entry.pipeline,
        weights=entry.weights,
        backbone=entry.config.model.backbone.name,
        latency=Latency(times, settings.batch_size),
        stages_ms={s: stages[s] for s in STAGE_ORDER if s in stages},
        params=params,
        gflops=gflops,
        peak_rss_mib=memory.rss_mib(),
        rss_at_start_mib=rss_at_start,
        cuda_peak_mib=memory.cuda_mib(),
        regions_per_image=tally.regions / tally.images if tally is not None and tally.images else None,
        runtime=entry.runtime,
    )
    if eval_dataset is not None and entry.checkpoint is not None:
        on_event(
            Notice(f"{entry.name}: AP on {len(eval_dataset)} images of {eval_dataset.annotation_file}", level="info")
        )
        result.ap, result.ap50 = _average_precision(model, eval_dataset, settings, on_event)
    if settings.train and not eager:
        on_event(Notice(f"{entry.name}: an exported {entry.runtime} graph does not train; no training speed"))
    elif settings.train:
        on_event(Notice(f"{entry.name}: training steps", level="info"))
        trainee = precision.prepare(rebuilt_model(entry).to(device)) if settings.fold_norms else model
        result.train_images_per_second = training_images_per_second(
            trainee,
            entry.config,
            images,
            targets,
            batch_size=settings.batch_size,
            device=device,
            precision=precision,
            runs=settings.runs,
            warmup=settings.warmup,
            max_seconds=settings.max_seconds,
        )
    return result


def environment(settings: BenchmarkSettings, input_description: str) -> dict[str, object]:
    """What every result is conditional on: hardware, software, precision, threads and input."""
    device = settings.device
    cuda = device.type == "cuda"
    return {
        "detkit": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else _cpu_name(),
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,  # type: ignore[no-untyped-call]  # unannotated in torch
        "threads": torch.get_num_threads(),
        "precision": settings.precision.name,
        "channels_last": settings.precision.channels_last,
        "compile": settings.precision.compile,
        "fold_norms": settings.fold_norms,
        "batch_size": settings.batch_size,
        "runs": settings.runs,
        "warmup": settings.warmup,
        "max_seconds": settings.max_seconds,
        "input": input_description,
        "rss_peak": "since each model's first inference" if reset_rss_peak() else "process lifetime",
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _batches(images: list[Tensor], batch_size: int) -> list[list[Tensor]]:
    return [images[start : start + batch_size] for start in range(0, len(images), batch_size)]


def _reset_region_tally(pipeline_name: str, model: torch.nn.Module) -> RegionTally | None:
    """The count of images and regions of a pipeline that keeps one (R-CNN), zeroed so it covers the
    recorded pass only; None for the others."""
    count = pipeline(pipeline_name).region_tally
    tally = count(model) if count is not None else None
    if tally is not None:
        tally.images = tally.regions = 0
    return tally


def _average_precision(
    model: torch.nn.Module, dataset: CocoDetection, settings: BenchmarkSettings, on_event: EventCallback
) -> tuple[float, float]:
    with settings.precision.autocast(settings.device):
        detections = predict_dataset(
            model, dataset, device=settings.device, batch_size=settings.batch_size, on_event=on_event
        )
    stats = score_detections(dataset, detections)["bbox"].stats
    return stats["AP"], stats["AP50"]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class BenchmarkRequest:
    """Everything ``detkit benchmark`` was asked for (see the command's help for each field)."""

    settings: BenchmarkSettings
    pipelines: tuple[str, ...] = ()  # random-weight rows, one per pipeline
    weights: tuple[Path, ...] = ()  # checkpoint rows
    backbone: str | None = "mobilenet_v2"  # for the random-weight rows; None: each preset's own
    long_side: int | None = None  # None: 640 for random weights, each checkpoint's own size
    images: int | None = None  # None: 4 synthetic scenes, or the first 4 images of --data
    data: Path | None = None
    data_images: Path | None = None
    compare_torchvision: bool = False
    compare_ultralytics: bool = False  # detkit's yolo against YOLOv8n (needs ultralytics installed)
    compare_arch: str = "resnet50_fpn"
    overrides: tuple[str, ...] = ()  # key=value for the random-weight rows


def run_benchmark(request: BenchmarkRequest, on_event: EventCallback = ignore_events) -> BenchmarkReport:
    """Measure every requested model in turn on the same inputs, then compare with torchvision."""
    settings = request.settings
    _check_inputs(request)
    report = BenchmarkReport(environment(settings, _input_description(request)))
    rows = [("random", pipeline) for pipeline in request.pipelines] + [
        ("checkpoint", str(path)) for path in request.weights
    ]
    for row in rows:
        if settings.isolate:
            on_event(Notice(f"{row[1]}: measuring in a fresh process", level="info"))
            result = _in_fresh_process(measure_row, request, row, torch.get_num_threads())
        else:
            result = measure_row(request, row, on_event=on_event)
        report.results.append(result)
    report.relate_to_reference()
    report.runtime_comparisons = _runtime_comparisons(request, on_event)
    if request.compare_torchvision:
        report.comparisons = _torchvision_comparisons(request, report, on_event)
    if request.compare_ultralytics:
        report.ultralytics = [_ultralytics_comparison(request, on_event)]
    return report


def measure_row(
    request: BenchmarkRequest,
    row: tuple[str, str],
    threads: int | None = None,
    on_event: EventCallback = ignore_events,
) -> PipelineResult:
    """Build one row's model (``("random", pipeline)`` or ``("checkpoint", path)``) and its inputs, and
    measure it. A top-level function of picklable arguments: it is what a fresh process runs."""
    if threads is not None:
        torch.set_num_threads(threads)
    entry = _row_model(request, row)
    dataset, images, targets = _row_inputs(request, entry)
    eval_dataset = dataset if entry.checkpoint is not None else None
    return benchmark_model(entry, images, targets, request.settings, eval_dataset, on_event)


def _row_model(request: BenchmarkRequest, row: tuple[str, str]) -> BenchmarkModel:
    """A row's model: ``("random", pipeline)``, or ``("checkpoint", path)`` of a checkpoint or exported file."""
    kind, name = row
    if kind == "random":
        long_side = request.long_side or DEFAULT_LONG_SIDE
        return random_model(name, request.backbone, long_side, _num_classes(request), request.overrides)
    if exported_format(name) is not None:
        return exported_model(name, request.settings.device)
    return checkpoint_model(name, request.long_side)


def _row_inputs(
    request: BenchmarkRequest, entry: BenchmarkModel
) -> tuple[CocoDetection | None, list[Tensor], list[Target]]:
    """The dataset a row reads (None: synthetic scenes) and its images and targets."""
    dataset = _dataset_for(entry, request)
    count = request.images or DEFAULT_IMAGES
    if dataset is None:
        long_side = request.long_side or DEFAULT_LONG_SIDE
        images, targets = scene_inputs(four_by_three(long_side), count, entry.config.model.num_classes)
    else:
        images, targets = dataset_inputs(dataset, count)
    return dataset, images, targets


def _runtime_comparisons(request: BenchmarkRequest, on_event: EventCallback) -> list[RuntimeComparison]:
    """Each checkpoint row against the exported files of it among the rows, alternating on its images."""
    files = [path for path in request.weights if exported_format(path) is not None]
    if not files:
        return []
    entries = [_row_model(request, ("checkpoint", str(path))) for path in request.weights]
    settings, comparisons = request.settings, []
    for eager, exported in exported_groups(entries):
        on_event(Notice(f"{eager.name}: eager against {', '.join(e.name for e in exported)}", level="info"))
        _, images, _ = _row_inputs(request, eager)
        comparisons.append(
            compare_runtimes(
                eager,
                exported,
                images,
                runs=settings.runs,
                warmup=settings.warmup,
                device=settings.device,
                precision=settings.precision,
            )
        )
    return comparisons


def _in_fresh_process(function: Callable[..., PipelineResult], *args: object) -> PipelineResult:
    """``function(*args)`` in a new interpreter (spawned: no forked torch threads or CUDA context)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def _check_inputs(request: BenchmarkRequest) -> None:
    """Read every checkpoint and the dataset once before anything is timed: a bad file fails in
    seconds, not after the pipelines before it have run for minutes."""
    for path in request.weights:
        if exported_format(path) is not None:
            load_exported(Path(path), request.settings.device)
        else:
            load_checkpoint(path)
    if request.data is not None:
        CocoDetection(request.data, request.data_images or default_image_dir(request.data))
    if request.compare_ultralytics:
        import_ultralytics()  # not installed: say so before anything is timed
        if request.settings.device.type != "cpu" or request.settings.precision.name != "fp32":
            raise ConfigError("--compare ultralytics runs on the CPU in float32: drop --device and --amp")


def _num_classes(request: BenchmarkRequest) -> int:
    """Classes of the random-weight models: the dataset's, else COCO's 80."""
    if request.data is None:
        return COCO_CLASSES
    return CocoDetection(request.data, request.data_images or default_image_dir(request.data)).num_classes


def _dataset_for(entry: BenchmarkModel, request: BenchmarkRequest) -> CocoDetection | None:
    if request.data is None:
        return None
    with_masks = pipeline(entry.pipeline).masks
    if entry.checkpoint is not None:
        return dataset_for_checkpoint(entry.checkpoint, request.data, request.data_images, with_masks=with_masks)
    return CocoDetection(request.data, request.data_images or default_image_dir(request.data), with_masks=with_masks)


def _torchvision_comparisons(
    request: BenchmarkRequest, report: BenchmarkReport, on_event: EventCallback
) -> list[ComparisonResult]:
    """detkit vs torchvision for each comparable pipeline in the table (both when none is), on the
    first batch of synthetic scenes."""
    settings = request.settings
    long_side, count = request.long_side or DEFAULT_LONG_SIDE, request.images or DEFAULT_IMAGES
    benchmarked = [p for p in COMPARABLE_PIPELINES if any(r.pipeline == p for r in report.results)] or list(
        COMPARABLE_PIPELINES
    )
    pipelines = [p for p in benchmarked if (p, request.compare_arch) in TORCHVISION_BUILDERS]
    image_size = four_by_three(long_side)
    images, _ = scene_inputs(image_size, min(count, settings.batch_size), COCO_CLASSES)
    comparisons = []
    for pipeline_name in pipelines:
        on_event(Notice(f"{pipeline_name}: detkit against torchvision {request.compare_arch}", level="info"))
        comparisons.append(
            compare_with_torchvision(
                pipeline_name,
                request.compare_arch,
                image_size,
                images=[image.to(settings.device) for image in images],
                runs=settings.runs,
                warmup=settings.warmup,
                device=settings.device,
                precision=settings.precision,
                fold_norms=settings.fold_norms,
            )
        )
    return comparisons


def _ultralytics_comparison(request: BenchmarkRequest, on_event: EventCallback) -> UltralyticsComparison:
    """detkit's yolo against YOLOv8n on the first batch of synthetic scenes, letterboxed to the long side."""
    settings = request.settings
    long_side, count = request.long_side or DEFAULT_LONG_SIDE, request.images or DEFAULT_IMAGES
    images, _ = scene_inputs(four_by_three(long_side), min(count, settings.batch_size), COCO_CLASSES)
    on_event(Notice(f"yolo: detkit against Ultralytics at {long_side} px", level="info"))
    return compare_with_ultralytics(images, long_side, runs=settings.runs, warmup=max(settings.warmup, 2))


def _input_description(request: BenchmarkRequest) -> str:
    count, long_side = request.images or DEFAULT_IMAGES, request.long_side or DEFAULT_LONG_SIDE
    if request.data is not None:
        return f"the first {count} images of {request.data}"
    height, width = four_by_three(long_side)
    return f"{count} synthetic scenes of {height}x{width}"
