"""Rendering ``detkit data check`` and ``detkit data convert`` results with rich; no checking here.

Everything from the dataset (file names, paths, class names, notes) is ``literal`` Text: it prints as
typed on any console, and is cleaned of control characters before rich measures the table cells.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from detkit.cli.console import literal, printable

if TYPE_CHECKING:
    from collections.abc import Sequence

    from detkit.data.check import CheckReport, Finding
    from detkit.data.fix import FixResult
    from detkit.data.formats.report import ConversionReport

_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow"}


@contextmanager
def image_progress(console: Console, description: str = "decoding images") -> Iterator[Callable[[int, int], None]]:
    """A transient progress bar; yields the ``progress(done, total)`` callback the scan calls."""
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    # Off when piped: a transient bar still leaves an empty line in a log.
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(printable(description), total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


def render_check(console: Console, report: CheckReport, *, suggest_fix: bool = True) -> None:
    """A ``data.check.CheckReport``: what was checked, a table of findings, and the verdict line."""
    console.print(
        literal(
            f"checked {report.annotation_file}: {report.num_images} images, {report.num_annotations} annotations, "
            f"{report.num_categories} categories; image folder {report.image_dir}"
        ),
        soft_wrap=True,
    )
    if report.findings:
        console.print(findings_table(report.findings))
    console.print(verdict_line(report, suggest_fix=suggest_fix), soft_wrap=True)  # one line, for grep


def findings_table(findings: Sequence[Finding]) -> Table:
    table = Table(show_lines=True)
    table.add_column("severity")
    table.add_column("check")
    table.add_column("count", justify="right")
    table.add_column("what it means")
    table.add_column("examples")
    for finding in findings:
        table.add_row(
            literal(finding.severity, style=_SEVERITY_STYLE[finding.severity]),
            literal(finding.code),
            str(finding.count),
            literal(finding.message),
            literal("\n".join(finding.examples)),
        )
    return table


def verdict_line(report: CheckReport, *, suggest_fix: bool = True) -> Text:
    """One line naming every error and warning code (grep-able, and whole whatever the terminal width)."""
    errors, warnings = _codes(report.errors), _codes(report.warnings)
    if errors:
        hint = "; fix them, or pass --fix OUT.json for a cleaned copy" if suggest_fix else ""
        if report.wrong_image_folder:  # --fix would drop those records: the folder is the likely mistake
            hint = (
                f"; {report.missing_images} of {report.num_images} images are not in {report.image_dir}: "
                "check --images first"
            )
        return Text(f"errors: {errors}; warnings: {warnings or 'none'}{hint}", style="bold red")
    if warnings:
        return Text(f"no errors; warnings: {warnings}", style="yellow")
    return Text("no problems found", style="green")


def _codes(findings: Sequence[Finding]) -> str:
    return ", ".join(f"{finding.code} ({finding.count})" for finding in findings)


def render_fix(console: Console, result: FixResult, after: CheckReport) -> None:
    """A ``data.fix.FixResult`` and the ``CheckReport`` of the cleaned file."""
    where = f"wrote {result.output} (its images: {after.image_dir})"
    if not result.changes:
        console.print(literal(f"{where}: nothing needed changing"), soft_wrap=True)
    else:
        console.print(literal(f"{where}:"), soft_wrap=True)
        for count, what in result.changes:
            console.print(literal(f"  {count} {what}"))
    if after.errors:
        console.print(
            Text(f"the cleaned file still has errors: {_codes(after.errors)}", style="bold red"), soft_wrap=True
        )
    else:
        console.print(
            Text(f"the cleaned file has no errors; warnings: {_codes(after.warnings) or 'none'}", style="green"),
            soft_wrap=True,
        )


def render_conversion(console: Console, report: ConversionReport) -> None:
    """A ``data.formats.ConversionReport``: one row per split, then the notes."""
    title = literal(f"{report.format.upper()} dataset written to {report.output}", style="table.title")
    table = Table(title=title, title_justify="left")
    columns: tuple[tuple[str, Literal["left", "right"]], ...] = (
        ("split", "left"),
        ("images", "right"),
        ("annotations", "right"),
        ("classes", "left"),
        ("images in", "left"),
    )
    for column, justify in columns:
        table.add_column(column, justify=justify)
    for split in report.splits:
        table.add_row(
            literal(split.name),
            str(split.num_images),
            str(split.num_annotations),
            literal(", ".join(split.class_names)),
            literal(_absolute(split.image_dir)),
        )
    console.print(table)
    for note in report.notes:
        console.print(literal(f"note: {note}"))


def _absolute(path: Path) -> Path:
    return path if path.is_absolute() else Path.cwd() / path
