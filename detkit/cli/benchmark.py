"""``detkit benchmark``: speed, memory, FLOPs and accuracy of every pipeline, side by side, on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from detkit.engine.benchmark.runner import BenchmarkSettings

from detkit.cli.common import console, reports_errors
from detkit.cli.options import AllowOutsideImages, DeviceOption, ThreadsOption

ALL = "all"


@reports_errors
def benchmark_command(
    pipelines: Annotated[
        Optional[str],
        typer.Option(
            help="Comma-separated pipelines to time with random weights, or 'all' (the default without --weights)."
        ),
    ] = None,
    weights: Annotated[
        Optional[list[Path]],
        typer.Option(help="A trained checkpoint to time (repeatable); with --data its AP is measured too."),
    ] = None,
    backbone: Annotated[
        str,
        typer.Option(
            help="Trunk of the random-weight pipelines (resnet18, resnet50, mobilenet_v2, mobilenet_v3_large, vgg16, "
            "csp_n, csp_s, csp_m), or 'preset' for each preset's own."
        ),
    ] = "mobilenet_v2",
    device: DeviceOption = "auto",
    image_size: Annotated[
        Optional[int],
        typer.Option(
            help="Longer side of the 4:3 input in pixels; the models run at it without resampling "
            "(default 640; checkpoints: their own size)."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 1,
    images: Annotated[
        Optional[int],
        typer.Option(help="How many images are timed: synthetic scenes, or the first N of --data (default 4)."),
    ] = None,
    data: Annotated[
        Optional[Path],
        typer.Option(help="COCO instances json whose images are timed (and, with --weights, scored for AP)."),
    ] = None,
    data_images: Annotated[
        Optional[Path],
        typer.Option(help="Image folder of --data (default: <split>/ beside annotations/, else beside the json)."),
    ] = None,
    runs: Annotated[int, typer.Option(help="Timed passes over the images (fewer when --max-seconds runs out).")] = 10,
    warmup: Annotated[int, typer.Option(help="Untimed passes over the images first (the first one counts FLOPs).")] = 1,
    max_seconds: Annotated[
        float,
        typer.Option(help="Time budget per model and phase: no timed pass starts after it (at least one always runs)."),
    ] = 30.0,
    amp: Annotated[bool, typer.Option(help="Run under autocast (mixed precision).")] = False,
    amp_dtype: Annotated[str, typer.Option(help="Autocast dtype with --amp: bf16 or fp16.")] = "bf16",
    channels_last: Annotated[bool, typer.Option(help="NHWC memory format for the networks.")] = True,
    fold_norms: Annotated[
        bool,
        typer.Option(
            help="Fold each batch norm into the conv before it, as detect and eval do (--no-fold-norms: "
            "time the layers as trained)."
        ),
    ] = True,
    compile: Annotated[
        bool, typer.Option("--compile", help="torch.compile each model's trunk (slow to start; worth it on GPUs).")
    ] = False,
    train: Annotated[bool, typer.Option("--train", help="Also time training steps (images per second).")] = False,
    compare: Annotated[
        Optional[str],
        typer.Option(
            help="'torchvision': time torchvision's Faster/Mask R-CNN against detkit's, same weights, alternating. "
            "'ultralytics': detkit's yolo against YOLOv8n (needs ultralytics installed, never a dependency: AGPL), "
            "same images, threads and folding, alternating."
        ),
    ] = None,
    compare_arch: Annotated[
        str,
        typer.Option(
            help="Architecture of the torchvision comparison: resnet50_fpn, resnet50_fpn_v2, or "
            "mobilenet_v3_large_fpn (Faster R-CNN only)."
        ),
    ] = "resnet50_fpn",
    isolate: Annotated[
        bool, typer.Option(help="Measure each model in a fresh process, so its peak memory is its own.")
    ] = True,
    threads: ThreadsOption = None,
    set_: Annotated[
        Optional[list[str]],
        typer.Option("--set", help="Override a config value of the random-weight pipelines: KEY=VALUE (repeatable)."),
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option(
            help="Folder for benchmark.json, benchmark.md and the two charts (default: runs/benchmark, -2, ...)."
        ),
    ] = None,
    allow_outside_images: AllowOutsideImages = False,
    detect: Annotated[
        Optional[Path],
        typer.Option(
            help="Time the whole `detkit detect` over this folder of images (load, decode, detect, draw, write), "
            "with --compare ultralytics beside `yolo predict` on the same folder; images/s of the median run."
        ),
    ] = None,
    workers: Annotated[
        Optional[int],
        typer.Option(help="With --detect: processes decoding images ahead of the model (default: detect's)."),
    ] = None,
) -> None:
    # The help text is one line: Typer would show a line break of the docstring in the command list.
    """Time every pipeline on the same images: latency, per-stage time, memory, parameters, FLOPs, training \
speed, AP."""
    from detkit.cli.options import apply_path_policy, apply_threads
    from detkit.cli.progress import RichProgress
    from detkit.cli.tables import benchmark_tables
    from detkit.engine.benchmark.outputs import save_report
    from detkit.engine.benchmark.runner import BenchmarkRequest, run_benchmark
    from detkit.engine.runs import new_run_dir

    _check_counts(batch_size=batch_size, runs=runs, warmup=warmup, images=images)
    _check_sizes(image_size, max_seconds)
    apply_path_policy(allow_outside_images)
    apply_threads(threads)  # the rows' fresh processes take this process's count
    if detect is not None:
        _benchmark_folder(
            detect, weights, device, image_size, compare, batch_size, runs, warmup, max_seconds, workers, out
        )
        return
    settings = _settings(
        device,
        amp,
        amp_dtype,
        channels_last,
        compile,
        fold_norms,
        batch_size,
        runs,
        warmup,
        max_seconds,
        train,
        isolate,
    )
    request = BenchmarkRequest(
        settings=settings, pipelines=_pipelines(pipelines, has_weights=bool(weights)), weights=tuple(weights or ()),
        backbone=None if backbone == "preset" else backbone, long_side=image_size, images=images, data=data,
        data_images=data_images, compare_torchvision=_compares_with(compare, "torchvision"),
        compare_ultralytics=_compares_with(compare, "ultralytics"), compare_arch=compare_arch,
        overrides=tuple(set_ or ()),
    )  # fmt: skip
    with RichProgress(console) as progress:
        report = run_benchmark(request, on_event=progress)
    for table in benchmark_tables(report):
        console.print(table)
    paths = save_report(report, out or new_run_dir("runs", "benchmark"))
    console.print(f"written: {', '.join(str(path) for path in paths.values())}")


def _benchmark_folder(
    folder: Path,
    weights: list[Path] | None,
    device: str,
    image_size: int | None,
    compare: str | None,
    batch_size: int,
    runs: int,
    warmup: int,
    max_seconds: float,
    workers: int | None,
    out: Path | None,
) -> None:
    """``--detect DIR``: the detect command over a folder, timed (beside Ultralytics' predict when asked)."""
    from detkit.cli.detect import default_workers
    from detkit.cli.options import check_range
    from detkit.cli.progress import RichProgress
    from detkit.cli.tables import folder_benchmark_table
    from detkit.engine.benchmark.detect_folder import FolderBenchmarkRequest, benchmark_detect_folder
    from detkit.engine.device import resolve_device
    from detkit.engine.runs import new_run_dir
    from detkit.errors import ConfigError
    from detkit.io import atomic_write_json

    check_range("--workers", workers, low=0)
    if weights is not None and len(weights) > 1:
        raise ConfigError("--detect times one checkpoint: pass --weights once")
    if compare == "torchvision":
        raise ConfigError("--detect compares with Ultralytics only (--compare ultralytics); torchvision has no detect")
    request = FolderBenchmarkRequest(
        folder, weights[0] if weights else None, image_size, runs, warmup, max_seconds, batch_size,
        default_workers() if workers is None else workers, compare_ultralytics=_compares_with(compare, "ultralytics"),
        device=str(resolve_device(device)),
    )  # fmt: skip
    with RichProgress(console) as progress:
        result = benchmark_detect_folder(request, on_event=progress)
    console.print(folder_benchmark_table(result))
    path = (out or new_run_dir("runs", "benchmark")) / "detect_benchmark.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, result.to_dict(), indent=2)
    console.print(f"written: {path}")


def _check_counts(**counts: int | None) -> None:
    """Every count option given is at least 1 (``--batch-size 0`` once timed nothing)."""
    from detkit.cli.options import check_range

    for name, value in counts.items():
        check_range(f"--{name.replace('_', '-')}", value, low=1)


def _check_sizes(image_size: int | None, max_seconds: float) -> None:
    from detkit.cli.options import check_range

    check_range("--image-size", image_size, low=32)  # 0 once fell back to 640 without a word
    check_range("--max-seconds", max_seconds, low=0.0)


def _settings(
    device: str,
    amp: bool,
    amp_dtype: str,
    channels_last: bool,
    compile: bool,
    fold_norms: bool,
    batch_size: int,
    runs: int,
    warmup: int,
    max_seconds: float,
    train: bool,
    isolate: bool,
) -> BenchmarkSettings:
    """How every model is measured."""
    from detkit.engine.benchmark.runner import BenchmarkSettings
    from detkit.engine.device import resolve_device
    from detkit.engine.precision import Precision

    precision = Precision(amp_dtype if amp else None, channels_last, compile)
    return BenchmarkSettings(
        resolve_device(device), precision, batch_size, runs, warmup, max_seconds, train, fold_norms, isolate
    )


def _compares_with(compare: str | None, peer: str) -> bool:
    """Whether ``--compare`` asked for ``peer``; an unknown peer is refused naming the two there are."""
    from detkit.errors import ConfigError

    if compare not in (None, "torchvision", "ultralytics"):
        raise ConfigError(f"--compare {compare!r}: choose torchvision or ultralytics")
    return compare == peer


def _pipelines(option: str | None, has_weights: bool) -> tuple[str, ...]:
    """The random-weight rows: all pipelines unless --weights was given; --pipelines names them."""
    from detkit.errors import ConfigError
    from detkit.pipelines import PIPELINES

    known = tuple(PIPELINES)
    if option is None:
        return () if has_weights else known
    names = known if option.strip() == ALL else tuple(name.strip() for name in option.split(",") if name.strip())
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise ConfigError(f"--pipelines {option!r}: choose from {ALL}, {', '.join(known)} (comma-separated)")
    return names
