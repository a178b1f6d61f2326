"""A benchmark's results and the machine they were measured on, as JSON and as a Markdown table.

Every number is per image unless its name says otherwise: a call processes ``batch_size`` images,
and ``ms_per_image`` is the mean over whole passes through the inputs (p50/p90 are per call).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from detkit.engine.benchmark.runtime_compare import RuntimeComparison
from detkit.engine.benchmark.timing import Latency
from detkit.engine.benchmark.torchvision_compare import ComparisonResult
from detkit.engine.benchmark.ultralytics_compare import UltralyticsComparison
from detkit.modeling.stages import STAGE_ORDER

REFERENCE_PIPELINE = "faster_rcnn"  # the yardstick of the "x Faster R-CNN" column


@dataclass
class PipelineResult:
    name: str
    pipeline: str
    weights: str  # a checkpoint or exported file's path, or "random"
    backbone: str
    latency: Latency
    stages_ms: dict[str, float]  # per image, in STAGE_ORDER
    params: int | None  # None for an exported file: its runtime holds the weights
    gflops: float | None  # per image; convolutions and matrix products; None where torch cannot count them
    peak_rss_mib: float  # while inferring: the interpreter, torch, the model and inputs included
    rss_at_start_mib: float | None = None  # the same, before the first inference: the peak's baseline
    cuda_peak_mib: float | None = None
    regions_per_image: float | None = None  # R-CNN: warped regions the CNN ran on
    train_images_per_second: float | None = None
    ap: float | None = None
    ap50: float | None = None
    relative_to_reference: float | None = None  # ms per image over Faster R-CNN's, when it ran too
    runtime: str = "eager"  # what ran it: "eager" (PyTorch), "onnxruntime" or "torchscript"

    @property
    def ms_per_image(self) -> float:
        return self.latency.ms_per_image

    def to_dict(self) -> dict[str, Any]:
        record = {key: value for key, value in asdict(self).items() if key != "latency"}
        record.update(
            latency_ms_per_call=self.latency.ms,
            images_per_call=self.latency.images_per_call,
            p50_ms=self.latency.p50,
            p90_ms=self.latency.p90,
            ms_per_image=self.ms_per_image,
            images_per_second=self.latency.images_per_second,
        )
        return record


@dataclass
class BenchmarkReport:
    environment: dict[str, Any]
    results: list[PipelineResult] = field(default_factory=list)
    comparisons: list[ComparisonResult] = field(default_factory=list)
    runtime_comparisons: list[RuntimeComparison] = field(default_factory=list)
    ultralytics: list[UltralyticsComparison] = field(default_factory=list)

    def relate_to_reference(self) -> None:
        """Fill each result's time relative to the (first) Faster R-CNN row, when there is one."""
        reference = next((r for r in self.results if r.pipeline == REFERENCE_PIPELINE), None)
        for result in self.results:
            result.relative_to_reference = None if reference is None else result.ms_per_image / reference.ms_per_image

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "results": [result.to_dict() for result in self.results],
            "torchvision": [
                {
                    **asdict(c),
                    "detkit_median_ms": c.detkit_median_ms,
                    "torchvision_median_ms": c.torchvision_median_ms,
                    "ratio": c.ratio,
                }
                for c in self.comparisons
            ],
            "runtimes": [c.to_dict() for c in self.runtime_comparisons],
            "ultralytics": [c.to_dict() for c in self.ultralytics],
        }

    def markdown(self) -> str:
        env = self.environment
        lines = [
            f"# detkit benchmark: {env['device_name']} ({env['device']}), {env['precision']}, "
            f"{env['threads']} threads, torch {env['torch']}",
            "",
            f"Input: {env['input']}; batch {env['batch_size']}; channels_last {env['channels_last']}; "
            f"batch norms folded {env['fold_norms']}; compile {env['compile']}; {env['date']}.",
            "",
            "| pipeline | weights | runtime | ms/img | call p50 | call p90 | img/s | x Faster R-CNN | params (M) "
            "| GFLOPs | peak RSS (MiB) | CUDA peak (MiB) | train img/s | AP | AP50 |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.results:
            lines.append(
                f"| {r.name} | {r.weights} | {r.runtime} | {r.ms_per_image:.1f} | {r.latency.p50:.1f} "
                f"| {r.latency.p90:.1f} | {r.latency.images_per_second:.2f} "
                f"| {format_optional(r.relative_to_reference, '.2f')} | {format_optional(millions(r.params), '.1f')} "
                f"| {format_optional(r.gflops, '.1f')} | {r.peak_rss_mib:.0f} "
                f"| {format_optional(r.cuda_peak_mib, '.0f')} | {format_optional(r.train_images_per_second, '.2f')} "
                f"| {format_optional(r.ap, '.3f')} | {format_optional(r.ap50, '.3f')} |"
            )
        stages = stage_columns(self.results)
        lines += [
            "",
            "Per-stage time (ms per image):",
            "",
            "| pipeline | " + " | ".join(stages) + " |",
            "|---" * (len(stages) + 1) + "|",
        ]
        for r in self.results:
            lines.append(
                f"| {r.name} | " + " | ".join(format_optional(r.stages_ms.get(s), ".1f") for s in stages) + " |"
            )
        if self.comparisons:
            lines += [
                "",
                "Against torchvision (same architecture, weights, input, device and precision; alternating runs):",
                "",
                "| pipeline | architecture | detkit ms | torchvision ms | ratio |",
                "|---|---|---|---|---|",
            ]
            for c in self.comparisons:
                lines.append(
                    f"| {c.pipeline} | {c.arch} | {c.detkit_median_ms:.1f} | {c.torchvision_median_ms:.1f} "
                    f"| {c.ratio:.3f} |"
                )
        for u in self.ultralytics:
            lines += [
                "",
                f"Against Ultralytics {u.ultralytics_version} (random weights, Conv+BN folded in both, "
                f"{u.threads} threads in both, the same images at longer side {u.side} (rectangular), "
                "score threshold 0, alternating calls):",
                "",
                "| detkit | peer | detkit params (M) | peer params (M) | detkit ms/img | peer ms/img | ratio |",
                "|---|---|---|---|---|---|---|",
                f"| yolo | {u.peer} | {u.detkit_params / 1e6:.2f} | {u.peer_params / 1e6:.2f} "
                f"| {u.detkit_median_ms:.1f} | {u.peer_median_ms:.1f} | {u.ratio:.3f} |",
            ]
        for group in self.runtime_comparisons:
            lines += [
                "",
                f"Runtimes of {group.weights[0]} (same images, calls alternated image by image):",
                "",
                "| weights | runtime | median ms/img | x eager |",
                "|---|---|---|---|",
            ]
            for i, (weights, runtime) in enumerate(zip(group.weights, group.runtimes)):
                lines.append(f"| {weights} | {runtime} | {group.median_ms(i):.1f} | {group.ratio(i):.3f} |")
        return "\n".join(lines) + "\n"


def stage_columns(results: list[PipelineResult]) -> list[str]:
    """The stages any result spent time in, in pipeline order."""
    used = {name for r in results for name in r.stages_ms}
    return [name for name in STAGE_ORDER if name in used]


def millions(count: int | None) -> float | None:
    return None if count is None else count / 1e6


def format_optional(value: float | None, spec: str) -> str:
    """``value`` formatted with ``spec``, or "-" when it was not measured."""
    return "-" if value is None else format(value, spec)
