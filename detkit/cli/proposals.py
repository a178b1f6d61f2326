"""``detkit proposals DATA``: selective search over a dataset into the cache; time and recall report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from detkit.cli.common import console, reports_errors
from detkit.cli.options import AllowOutsideImages, ThreadsOption

if TYPE_CHECKING:
    from rich.table import Table

    from detkit.config import ProposalConfig
    from detkit.engine.proposals import ProposalRun
    from detkit.evaluation.proposal_recall import ProposalRecall


@reports_errors
def proposals_command(
    data: Annotated[Path, typer.Argument(help="COCO instances json (recall is reported), or image files/folder.")],
    images: Annotated[
        Optional[Path],
        typer.Option(help="Image folder of a COCO json (default: <split>/ beside annotations/, else beside the json)."),
    ] = None,
    mode: Annotated[str, typer.Option(help="Selective search strategy: fast or quality.")] = "fast",
    max_image_size: Annotated[
        int, typer.Option(help="Shrink images whose longer side exceeds this before segmenting.")
    ] = 500,
    min_box_size: Annotated[float, typer.Option(help="Drop proposals narrower or shorter than this (pixels).")] = 4.0,
    topk: Annotated[int, typer.Option(help="Proposals kept per image, best-ranked first.")] = 2000,
    workers: Annotated[int, typer.Option(help="Processes (0 = one per core).")] = 0,
    cache_dir: Annotated[
        Optional[Path], typer.Option(help="Proposal cache (default: $DETKIT_CACHE_DIR or ~/.cache/detkit/proposals).")
    ] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write the report as json here.")] = None,
    threads: ThreadsOption = None,
    allow_outside_images: AllowOutsideImages = False,
) -> None:
    """Compute (or read from the cache) selective search proposals for every image and report their recall."""
    from detkit.cli.options import apply_path_policy, apply_threads, check_range
    from detkit.cli.progress import RichProgress
    from detkit.config import ProposalConfig
    from detkit.engine.proposals import ProposalsRequest, run_proposals

    check_range("--max-image-size", max_image_size, low=1)
    check_range("--min-box-size", min_box_size, low=0.0)
    check_range("--topk", topk, low=1)
    check_range("--workers", workers, low=0)
    apply_path_policy(allow_outside_images)
    used_threads = apply_threads(threads)
    cfg = ProposalConfig(
        mode=mode,
        max_image_size=max_image_size,
        min_box_size=min_box_size,
        topk=topk,
        cache_dir=str(cache_dir) if cache_dir else "",
    )
    with RichProgress(console) as progress:
        report = run_proposals(ProposalsRequest(data, images, cfg, workers, out), on_event=progress)
    console.print(_summary_table(report.run, cfg, used_threads))
    if report.run.recall is not None:
        console.print(_recall_table(report.run.recall))
    console.print(f"cache: {report.cache}")
    if report.written is not None:
        console.print(f"report written to {report.written}")


def _summary_table(run: ProposalRun, cfg: ProposalConfig, threads: int) -> Table:
    from rich.table import Table

    from detkit.cli.tables import threads_phrase

    table = Table(title=f"selective search, {cfg.mode}", title_justify="left")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("images", str(run.num_images))
    table.add_row("computed / from cache", f"{run.num_computed} / {run.num_images - run.num_computed}")
    if run.num_computed:
        table.add_row("time per computed image", f"{run.seconds_per_computed_image * 1000:.0f} ms (one core)")
    table.add_row("wall time", f"{run.wall_seconds:.1f} s")
    table.add_row("threads", f"{threads_phrase(threads)} here (a worker process takes 1)")
    table.add_row("proposals per image", f"{run.proposals_per_image:.0f}")
    if run.recall is not None:
        for threshold, value in run.recall.recall.items():
            table.add_row(f"recall @ IoU {threshold}", f"{value:.3f}")
    return table


def _recall_table(recall: ProposalRecall) -> Table:
    from rich.table import Table

    from detkit.cli.console import literal

    table = Table(title="recall per class", title_justify="left")
    table.add_column("class")
    table.add_column("objects", justify="right")
    for threshold in recall.recall:
        table.add_column(f"@{threshold}", justify="right")
    for name, values in recall.per_class.items():
        table.add_row(literal(name), str(recall.objects_per_class[name]), *(f"{v:.3f}" for v in values.values()))
    return table
