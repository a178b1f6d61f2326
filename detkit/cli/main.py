"""The ``detkit`` command. Each command group lives in its own module; none imports torch at load time."""

from __future__ import annotations

from typing import Annotated

import typer

from detkit.cli import benchmark, data, detect, evaluate, export, models, proposals, train
from detkit.cli.common import state
from detkit.data.pixel_limit import limit_opencv_decoders
from detkit.download import go_offline
from detkit.version import __version__

limit_opencv_decoders()  # before anything imports OpenCV, which reads its limit once

app = typer.Typer(
    name="detkit",
    help="Train, run, evaluate and time the classic object detectors side by side.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"detkit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show full tracebacks on errors.")] = False,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline",
            help="Never download weights (also DETKIT_OFFLINE=1); a missing file is an error saying where to put it.",
        ),
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    state.verbose = verbose
    if offline:
        go_offline()


app.command("train")(train.train_command)
app.command("detect")(detect.detect_command)
app.command("eval")(evaluate.eval_command)
app.command("proposals")(proposals.proposals_command)
app.command("benchmark")(benchmark.benchmark_command)
app.command("models")(models.models_command)
app.command("export")(export.export_command)
app.add_typer(data.app, name="data")
