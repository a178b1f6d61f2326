"""Write a benchmark report: ``benchmark.json``, ``benchmark.md``, ``stages.png``, ``accuracy_latency.png``.

Each file is written atomically (a temporary file renamed into place), so an interrupted run leaves
whole files or none.
"""

from __future__ import annotations

from pathlib import Path

from detkit.engine.benchmark.report import BenchmarkReport, stage_columns
from detkit.io import atomic_write_json, atomic_write_text
from detkit.viz.benchmark_charts import render_accuracy_chart, render_stage_chart
from detkit.viz.plotting import write_png


def save_report(report: BenchmarkReport, folder: Path) -> dict[str, Path]:
    """The four files in ``folder`` (created), by kind: json, markdown, stages, accuracy."""
    folder.mkdir(parents=True, exist_ok=True)
    env = report.environment
    subtitle = f"{env['device_name']}, {env['precision']}, batch {env['batch_size']}, {env['threads']} threads"
    paths = {
        "json": folder / "benchmark.json",
        "markdown": folder / "benchmark.md",
        "stages": folder / "stages.png",
        "accuracy": folder / "accuracy_latency.png",
    }
    atomic_write_json(paths["json"], report.to_dict(), indent=2)
    atomic_write_text(paths["markdown"], report.markdown())
    write_png(
        paths["stages"],
        render_stage_chart(report.results, stage_columns(report.results), f"Where each image's time goes ({subtitle})"),
    )
    write_png(paths["accuracy"], render_accuracy_chart(report.results, f"Accuracy against latency ({subtitle})"))
    return paths
