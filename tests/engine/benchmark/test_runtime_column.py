"""Rows of exported files in the benchmark report: a runtime column, and no parameters or FLOPs of theirs."""

from __future__ import annotations

import io

from rich.console import Console

from detkit.cli.tables import benchmark_tables
from detkit.engine.benchmark.report import BenchmarkReport, PipelineResult
from detkit.engine.benchmark.timing import Latency

ENVIRONMENT = {
    "device_name": "Test CPU", "device": "cpu", "precision": "fp32", "batch_size": 1, "threads": 2, "torch": "2.x",
    "input": "2 images", "channels_last": True, "fold_norms": True,
    "compile": False, "date": "today",
}  # fmt: skip


def row(runtime: str, **fields: object) -> PipelineResult:
    base: dict[str, object] = dict(
        name=f"yolo-{runtime}", pipeline="yolo", weights="w", backbone="resnet18",
        latency=Latency(ms=[10.0, 12.0], images_per_call=1), stages_ms={"other": 11.0},
        params=1_000_000, gflops=2.5, peak_rss_mib=500.0, runtime=runtime,
    )  # fmt: skip
    return PipelineResult(**{**base, **fields})  # type: ignore[arg-type]


def text_of(report: BenchmarkReport) -> str:
    out = io.StringIO()
    for table in benchmark_tables(report):
        Console(file=out, width=220, color_system=None).print(table)
    return out.getvalue()


def test_the_runtime_column_appears_with_an_exported_row():
    eager_only = text_of(BenchmarkReport(ENVIRONMENT, [row("eager")]))
    assert "runtime" not in eager_only
    report = BenchmarkReport(ENVIRONMENT, [row("eager"), row("onnxruntime", params=None, gflops=None)])
    text = text_of(report)
    header = next(line for line in text.splitlines() if "ms/img" in line)
    assert [cell.strip() for cell in header.split("┃")[1:4]] == ["pipeline", "weights", "runtime"]
    onnx_cost = next(line for line in text.splitlines() if "yolo-onnxruntime" in line and "500" in line)
    assert [cell.strip() for cell in onnx_cost.split("│")[2:4]] == ["-", "-"]  # params M, GFLOPs/img


def test_the_markdown_and_json_say_which_runtime():
    report = BenchmarkReport(ENVIRONMENT, [row("eager"), row("torchscript", params=None, gflops=None)])
    markdown = report.markdown()
    assert "| pipeline | weights | runtime |" in markdown and "| yolo-torchscript | w | torchscript |" in markdown
    assert [r["runtime"] for r in report.to_dict()["results"]] == ["eager", "torchscript"]
