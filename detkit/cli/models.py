"""``detkit models``: every pretrained detector detkit can load by name, and whether it is on this machine."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from detkit.cli.common import console, reports_errors

if TYPE_CHECKING:
    from rich.table import Table

    from detkit.zoo import PretrainedModel


@reports_errors
def models_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON, for scripts.")] = False,
) -> None:
    """List the pretrained detectors: pipeline, backbone, COCO AP and cost as torchvision states them,
    the file and whether it is cached here. Any name works as --weights in detect, eval, benchmark and
    train (it downloads once), and in detkit.load(name)."""
    from detkit.download import cached_path
    from detkit.zoo import pretrained_models

    models = list(pretrained_models().values())
    if as_json:
        rows = [{**_row(m), "path": str(cached_path(m.url))} for m in models]
        typer.echo(json.dumps(rows, indent=2))
        return
    console.print(_table(models, console.width))
    cache = cached_path(models[0].url).parent
    console.print(f"COCO val2017 AP and GFLOPs as torchvision states them; files cached in {cache}")


def _row(model: PretrainedModel) -> dict[str, object]:
    return {
        "name": model.name,
        "pipeline": model.pipeline,
        "backbone": model.backbone,
        "box_ap": model.box_ap,
        "mask_ap": model.mask_ap,
        "gflops": model.gflops,
        "params": model.params,
        "file": model.file_name,
        "file_mib": model.file_mib,
        "url": model.url,
        "cached": model.cached,
    }


def _table(models: list[PretrainedModel], width: int) -> Table:
    """Every column when the terminal is wide enough; in 80 columns the name (which says pipeline and
    backbone), AP, cost, size and cache (``--json`` has the rest)."""
    full = _build_table(models, wide=True)
    needed = console.measure(full, options=console.options.update_width(10_000)).maximum
    return full if needed <= width else _build_table(models, wide=False)


def _build_table(models: list[PretrainedModel], wide: bool) -> Table:
    from rich import box
    from rich.table import Table

    from detkit.cli.console import literal

    table = Table(
        title="pretrained detectors (COCO, 80 classes)",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        show_edge=False,
    )
    table.add_column("name", no_wrap=True, min_width=max(len(m.name) for m in models))
    if wide:
        table.add_column("pipeline", no_wrap=True)
        table.add_column("backbone", no_wrap=True)
    numbers = ("box AP", "mask AP", "GFLOPs", *(("params",) if wide else ()), "MiB")
    for column in numbers:
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
    if wide:
        table.add_column("file", no_wrap=True)
    table.add_column("here", justify="right", no_wrap=True)
    for m in models:
        params = (f"{m.params / 1e6:.1f}M" if m.params else "-",) if wide else ()
        table.add_row(
            literal(m.name),
            *((literal(m.pipeline), literal(m.backbone)) if wide else ()),
            _number(m.box_ap, ".1f"),
            _number(m.mask_ap, ".1f"),
            _number(m.gflops, ".1f"),
            *params,
            _number(m.file_mib, ".0f"),
            *((literal(m.file_name),) if wide else ()),
            "yes" if m.cached else "no",
        )
    return table


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
