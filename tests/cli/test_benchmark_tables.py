"""The benchmark report as terminal tables: every table, every column, the numbers as measured."""

from __future__ import annotations

import io

from rich.console import Console

from detkit.cli.tables import benchmark_tables
from detkit.engine.benchmark.report import BenchmarkReport, PipelineResult
from detkit.engine.benchmark.timing import Latency
from detkit.engine.benchmark.torchvision_compare import ComparisonResult

ENVIRONMENT = {"device_name": "Test CPU", "precision": "fp32", "batch_size": 1, "threads": 2, "torch": "2.x"}


def result(name: str, pipeline: str, **fields: object) -> PipelineResult:
    base: dict[str, object] = dict(
        weights="random",
        backbone="resnet18",
        latency=Latency(ms=[10.0, 12.0, 30.0], images_per_call=1),
        stages_ms={"backbone": 4.0, "rpn": 2.5},
        params=12_300_000,
        gflops=41.25,
        peak_rss_mib=812.0,
    )
    return PipelineResult(name=name, pipeline=pipeline, **{**base, **fields})  # type: ignore[arg-type]


def rendered(report: BenchmarkReport) -> tuple[list[str], str]:
    tables = benchmark_tables(report)
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    for table in tables:
        console.print(table)
    return [str(t.title) for t in tables], out.getvalue()


def test_speed_cost_and_stage_tables_show_each_model() -> None:
    report = BenchmarkReport(
        {**ENVIRONMENT, "input": "2 images"},
        results=[result("faster", "faster_rcnn", ap=0.4125), result("yolo", "yolo", stages_ms={"dense_head": 1.5})],
    )
    titles, text = rendered(report)
    assert titles == [
        "Test CPU, fp32, batch 1, 2 threads, torch 2.x; 2 images",
        "size, arithmetic, memory and accuracy",
        "ms per image by stage",
    ]
    speed_row = next(line for line in text.splitlines() if "faster" in line and "12.0" in line)
    # mean 17.3 ms per image, median 12.0, p90 26.4 (interpolated), 1000 / 17.33 = 57.69 images per second
    assert speed_row.split("│")[2:6] == ["   17.3 ", "     12.0 ", "     26.4 ", " 57.69 "]
    assert "12.3" in text and "41.2" in text and "812" in text and "0.412" in text
    stage_header = next(line for line in text.splitlines() if "regions/img" in line)
    assert [cell.strip() for cell in stage_header.split("┃")[1:-1]] == [
        "pipeline",
        "backbone",
        "rpn",
        "dense_head",
        "regions/img",
    ]
    assert "weights" not in text  # every model has random weights: no column for them


def test_the_torchvision_table_appears_only_with_comparisons() -> None:
    comparison = ComparisonResult(
        "faster_rcnn", "fasterrcnn_resnet50_fpn", (320, 320), "cpu", "fp32", [9, 10, 11], [20, 20, 21]
    )
    report = BenchmarkReport({**ENVIRONMENT, "input": "x"}, results=[result("faster", "faster_rcnn", weights="w.pt")])
    assert len(benchmark_tables(report)) == 3
    report.comparisons.append(comparison)
    titles, text = rendered(report)
    assert titles[-1].startswith("detkit / torchvision")
    assert "fasterrcnn_resnet50_fpn" in text and "0.500" in text and "w.pt" in text
