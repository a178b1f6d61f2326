"""Rich tables shared by commands.

Cells and titles that can hold data (class names, file names, paths) are ``literal`` Text: they print
as typed on any console, not only on a ``SafeConsole``, and are cleaned before rich measures them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

from rich.table import Table
from rich.text import Text

from detkit.cli.console import literal

if TYPE_CHECKING:
    from torch import Tensor

    from detkit.engine.benchmark.detect_folder import FolderBenchmark
    from detkit.engine.benchmark.report import BenchmarkReport
    from detkit.engine.benchmark.runtime_compare import RuntimeComparison
    from detkit.engine.benchmark.ultralytics_compare import UltralyticsComparison
    from detkit.engine.evaluate_request import EvalTiming
    from detkit.engine.proposals import ProposalRun

_STAT_LABELS = {
    "AP": "AP @[.50:.95]",
    "AP50": "AP @.50",
    "AP75": "AP @.75",
    "APs": "AP small",
    "APm": "AP medium",
    "APl": "AP large",
    "AR1": "AR max 1",
    "AR10": "AR max 10",
    "AR100": "AR max 100",
    "ARs": "AR small",
    "ARm": "AR medium",
    "ARl": "AR large",
}


class DetectionRows(Protocol):
    """What ``detections_table`` reads of a ``structures.Detections`` (the CLI does not import structures)."""

    @property
    def boxes(self) -> Tensor: ...

    @property
    def scores(self) -> Tensor: ...

    @property
    def labels(self) -> Tensor: ...


def metrics_table(stats: dict[str, float], title: str) -> Table:
    table = Table(title=_title(title))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label in _STAT_LABELS.items():
        if key in stats:
            table.add_row(label, f"{stats[key]:.3f}")
    return table


def per_class_table(per_class_ap: dict[str, float], per_class_ap50: dict[str, float], title: str) -> Table:
    table = Table(title=_title(title))
    table.add_column("class")
    table.add_column("AP", justify="right")
    table.add_column("AP50", justify="right")
    for name, ap in sorted(per_class_ap.items(), key=lambda item: -item[1]):
        table.add_row(literal(name), f"{ap:.3f}", f"{per_class_ap50.get(name, float('nan')):.3f}")
    return table


def detections_table(title: str, detections: DetectionRows, class_names: list[str]) -> Table:
    table = Table(title=_title(title), title_justify="left")
    columns: tuple[tuple[str, Literal["left", "right"]], ...] = (
        ("#", "right"),
        ("class", "left"),
        ("score", "right"),
        ("x1", "right"),
        ("y1", "right"),
        ("x2", "right"),
        ("y2", "right"),
    )
    for column, justify in columns:
        table.add_column(column, justify=justify)
    rows = zip(detections.boxes.tolist(), detections.scores.tolist(), detections.labels.tolist())
    for index, (box, score, label) in enumerate(rows):
        table.add_row(str(index + 1), literal(class_names[label]), f"{score:.3f}", *(f"{v:.1f}" for v in box))
    return table


def threads_phrase(count: int) -> str:
    """``1 CPU thread``, ``2 CPU threads``: how many threads a command computed on."""
    return f"{count} CPU thread{'s' if count > 1 else ''}"


def eval_timing_lines(timing: EvalTiming) -> str:
    """An ``engine.evaluate_request.EvalTiming``: per-image test time split into the model's stages (what is
    left is image reading and batching), then the pipeline's own counts, one per line."""
    parts = [f"{name} {ms:.1f}" for name, ms in timing.stage_ms.items()]
    parts.append(f"image reading and the rest {timing.ms_per_image - sum(timing.stage_ms.values()):.1f}")
    line = (
        f"{timing.num_images} images in {timing.seconds:.1f} s ({threads_phrase(timing.threads)}): "
        f"{timing.ms_per_image:.1f} ms per image = " + " + ".join(parts) + " ms"
    )
    return "\n".join([line, *(f"  {extra}" for extra in timing.lines)])


def proposal_run_line(run: ProposalRun) -> str:
    """One line on a selective search pass (``engine.proposals.ProposalRun``)."""
    line = f"selective search: {run.num_images} images, {run.num_images - run.num_computed} from the cache"
    if run.num_computed:
        line += (
            f", {run.num_computed} computed in {run.wall_seconds:.1f} s on all cores "
            f"({1000 * run.seconds_per_computed_image:.0f} ms per image on one core)"
        )
    return line + f"; {run.proposals_per_image:.0f} proposals per image"


def benchmark_tables(report: BenchmarkReport) -> list[Table]:
    """A benchmark (``engine.benchmark.report.BenchmarkReport``) as rich tables, each narrow enough for
    a terminal: speed, cost and accuracy, the per-stage split, and the torchvision ratios when measured."""
    tables = [_speed_table(report), _cost_table(report), _stage_table(report)]
    if report.comparisons:
        tables.append(_torchvision_table(report))
    tables += [_runtime_table(c) for c in report.runtime_comparisons]
    tables += [_ultralytics_table(c) for c in report.ultralytics]
    return tables


def _speed_table(report: BenchmarkReport) -> Table:
    """ms per image, call latency percentiles, throughput and the ratio to Faster R-CNN, one row per model."""
    from detkit.engine.benchmark.report import format_optional

    env = report.environment
    show_weights = any(r.weights != "random" for r in report.results)
    show_runtime = any(r.runtime != "eager" for r in report.results)  # exported files beside eager models
    weights_column = ["weights"] if show_weights else []
    runtime_column = ["runtime"] if show_runtime else []
    columns = [
        "pipeline", *weights_column, *runtime_column, "ms/img", "call p50", "call p90", "img/s", "x Faster",
        "train img/s",
    ]  # fmt: skip
    title = (
        f"{env['device_name']}, {env['precision']}, batch {env['batch_size']}, {env['threads']} threads, "
        f"torch {env['torch']}; {env['input']}"
    )
    table = _right_aligned_table(title, columns)
    for r in report.results:
        table.add_row(
            literal(r.name),
            *([literal(r.weights)] if show_weights else []),
            *([literal(r.runtime)] if show_runtime else []),
            f"{r.ms_per_image:.1f}",
            f"{r.latency.p50:.1f}",
            f"{r.latency.p90:.1f}",
            f"{r.latency.images_per_second:.2f}",
            format_optional(r.relative_to_reference, ".2f"),
            format_optional(r.train_images_per_second, ".2f"),
        )
    return table


def _cost_table(report: BenchmarkReport) -> Table:
    """Parameters, GFLOPs, peak memory and accuracy, one row per model."""
    from detkit.engine.benchmark.report import format_optional, millions

    columns = ["pipeline", "params M", "GFLOPs/img", "peak RSS MiB", "CUDA MiB", "AP", "AP50"]
    table = _right_aligned_table("size, arithmetic, memory and accuracy", columns)
    for r in report.results:
        table.add_row(
            literal(r.name),
            format_optional(millions(r.params), ".1f"),  # "-" for an exported file: its runtime holds them
            format_optional(r.gflops, ".1f"),
            f"{r.peak_rss_mib:.0f}",
            format_optional(r.cuda_peak_mib, ".0f"),
            format_optional(r.ap, ".3f"),
            format_optional(r.ap50, ".3f"),
        )
    return table


def _stage_table(report: BenchmarkReport) -> Table:
    """ms per image in each stage any model reports (blank where a model has no such stage)."""
    from detkit.engine.benchmark.report import format_optional, stage_columns

    stages = stage_columns(report.results)
    table = _right_aligned_table("ms per image by stage", ["pipeline", *stages, "regions/img"])
    for r in report.results:
        stage_ms = (format_optional(r.stages_ms.get(name), ".1f") for name in stages)
        table.add_row(literal(r.name), *stage_ms, format_optional(r.regions_per_image, ".0f"))
    return table


def _torchvision_table(report: BenchmarkReport) -> Table:
    """detkit's and torchvision's median ms on the same architecture and weights, and their ratio."""
    table = _right_aligned_table(
        "detkit / torchvision: same architecture, weights, input, device, precision; alternating runs",
        ["pipeline", "architecture", "detkit ms", "torchvision ms", "ratio"],
        text_columns=2,
    )
    for c in report.comparisons:
        table.add_row(
            literal(c.pipeline),
            literal(c.arch),
            f"{c.detkit_median_ms:.1f}",
            f"{c.torchvision_median_ms:.1f}",
            f"{c.ratio:.3f}",
        )
    return table


def _ultralytics_table(comparison: UltralyticsComparison) -> Table:
    """detkit's yolo and Ultralytics' peer: median ms per image on the same images, and their ratio."""
    table = _right_aligned_table(
        f"detkit / Ultralytics {comparison.ultralytics_version}: {comparison.threads} threads and Conv+BN folded "
        f"in both, longer side {comparison.side} px, score threshold 0; alternating calls",
        ["detkit", "peer", "params M", "peer params M", "detkit ms", "peer ms", "ratio"],
        text_columns=2,
    )
    table.add_row(
        "yolo",
        literal(comparison.peer),
        f"{comparison.detkit_params / 1e6:.2f}",
        f"{comparison.peer_params / 1e6:.2f}",
        f"{comparison.detkit_median_ms:.1f}",
        f"{comparison.peer_median_ms:.1f}",
        f"{comparison.ratio:.3f}",
    )
    return table


def _runtime_table(comparison: RuntimeComparison) -> Table:
    """A checkpoint and its exported files timed in turn: median ms per image and the ratio to eager."""
    table = _right_aligned_table(
        f"{comparison.weights[0]}: eager against its exported files; same images, calls alternated",
        ["weights", "runtime", "ms/img", "x eager"],
        text_columns=2,
    )
    for i, (weights, runtime) in enumerate(zip(comparison.weights, comparison.runtimes)):
        table.add_row(
            literal(weights), literal(runtime), f"{comparison.median_ms(i):.1f}", f"{comparison.ratio(i):.3f}"
        )
    return table


def _right_aligned_table(title: str, columns: list[str], text_columns: int = 1) -> Table:
    """Numbers right-aligned; the first ``text_columns`` (names) left-aligned."""
    table = Table(title=_title(title))
    for index, column in enumerate(columns):
        table.add_column(
            column, justify="left" if index < text_columns or column in ("weights", "runtime") else "right"
        )
    return table


def _title(title: str) -> Text:
    """A literal title in rich's own title style (a Text title would otherwise print unstyled)."""
    return literal(title, style="table.title")


def folder_benchmark_table(result: FolderBenchmark) -> Table:
    """``benchmark --detect``: each tool's seconds per run over the folder, images/s and detkit's ratio."""
    saved = "annotated images written" if result.save_images else "no images written"
    size = f"longer side {result.side} px" if result.side else "the checkpoint's size"
    table = _right_aligned_table(
        f"detect over {literal(result.folder)}: {result.images} images, {result.threads} threads, {size}, "
        f"{saved}; median of {len(result.detkit.seconds)} runs, alternating",
        ["tool", "model", "s per run", "img/s", "detections", "x peer img/s"],
        text_columns=2,
    )
    rows = [("detkit detect", result.weights, result.detkit)]
    if result.peer is not None:
        rows.append(("ultralytics predict", result.peer_name, result.peer))
    for tool, model, runs in rows:
        ratio = "" if result.ratio is None else (f"{result.ratio:.3f}" if runs is result.detkit else "1.000")
        table.add_row(
            tool,
            literal(model),
            f"{runs.median_seconds:.2f}",
            f"{runs.images_per_second(result.images):.2f}",
            str(runs.detections),
            ratio,
        )
    return table
