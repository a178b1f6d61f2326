"""``detkit export WEIGHTS``: a detector as one ONNX or TorchScript file, checked against the eager model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from detkit.cli.common import console, reports_errors
from detkit.cli.options import ThreadsOption

if TYPE_CHECKING:
    from detkit.engine.export import ExportReport

FORMATS = ("onnx", "torchscript")

# The command list shows the first paragraph (one line); --help shows them all.
_HELP = (
    "Export a detector as one ONNX or TorchScript file, checked against the eager model.\n\n"
    "Preprocessing (resize, normalize), the networks, postprocessing and NMS are all inside the file. "
    "It takes one image, uint8 [3, H, W] RGB (the decoded pixels), and returns boxes (float32 [D, 4], "
    "xyxy pixels of that image), scores [D], labels [D] (int64, index into the class names) and, for "
    "mask_rcnn, masks [D, H, W] (mask probabilities). fast_rcnn takes its region proposals as a second "
    "input, float32 [P, 4] xyxy: selective search is OpenCV, outside any graph (`detkit detect` computes "
    "them for it). rcnn has no single graph (each region is warped and scored by per-class SVMs): --part "
    "cnn exports its region CNN. Class names, input size, normalization and detkit's version go into the "
    "file's metadata. Each export is run back in its runtime (onnxruntime on the CPU, torch.jit.load) "
    "beside the eager model; beyond the tolerance the file is removed and the command fails. "
    "`detkit detect/eval/benchmark --weights FILE` run the file."
)


@reports_errors
def export_command(
    weights: Annotated[
        Optional[Path],
        typer.Argument(
            help="A detkit checkpoint, a torchvision detection .pth or a pretrained name (default: the last "
            "`detkit train`'s best.pt)."
        ),
    ] = None,
    format: Annotated[str, typer.Option("--format", help="onnx or torchscript.")] = "onnx",
    image_size: Annotated[
        Optional[tuple[int, int]],
        typer.Option(
            help="H W of the input: the only size a fixed file takes (others are letterboxed into it at run "
            "time), the example size of a --dynamic one. Default: the size the model runs a 4:3 image at."
        ),
    ] = None,
    dynamic: Annotated[
        bool,
        typer.Option("--dynamic", help="Any input size (checked at two). TorchScript files always take any size."),
    ] = False,
    opset: Annotated[Optional[int], typer.Option(help="ONNX opset (18 and up; default 18).")] = None,
    half: Annotated[
        bool, typer.Option("--half", help="float16 networks (inputs and outputs unchanged); for GPU runtimes.")
    ] = False,
    out: Annotated[
        Optional[Path], typer.Option(help="The file to write (default: beside WEIGHTS, .onnx or .torchscript).")
    ] = None,
    score_thresh: Annotated[
        Optional[float],
        typer.Option(help="Score threshold inside the graph (default: the checkpoint's); runners can raise it."),
    ] = None,
    set_: Annotated[
        Optional[list[str]],
        typer.Option("--set", help="Override a test-time config value before export: KEY=VALUE (repeatable)."),
    ] = None,
    part: Annotated[
        str,
        typer.Option(
            help="detector (the whole detector) or cnn (rcnn's region CNN: normalized crops [R, 3, S, S] -> "
            "features [R, F], checked to --score-tol of their largest magnitude)."
        ),
    ] = "detector",
    check_images: Annotated[
        Optional[list[str]],
        typer.Option(
            help="Images to check the file on (files, folders, globs; repeatable). Default: the run's "
            "validation images, else synthetic scenes."
        ),
    ] = None,
    check_count: Annotated[int, typer.Option(help="How many images are checked (at each size).")] = 4,
    box_tol: Annotated[
        Optional[float], typer.Option(help="Largest box corner difference allowed, in pixels (0.5; 4 with --half).")
    ] = None,
    score_tol: Annotated[
        Optional[float], typer.Option(help="Largest score difference allowed (0.005; 0.05 with --half).")
    ] = None,
    threads: ThreadsOption = None,
) -> None:
    from detkit.cli.options import apply_threads, check_range
    from detkit.cli.progress import RichProgress
    from detkit.engine.export import ExportRequest, run_export
    from detkit.errors import ConfigError

    if format not in FORMATS:
        raise ConfigError(f"--format {format}: choose onnx or torchscript")
    check_range("--score-thresh", score_thresh, low=0.0, high=1.0)
    check_range("--check-count", check_count, low=1)
    apply_threads(threads)
    request = ExportRequest(
        weights=weights, format=format, image_size=image_size, dynamic=dynamic, opset=opset, half=half,  # type: ignore[arg-type]
        out=out, score_thresh=score_thresh, overrides=tuple(set_ or ()), part=part,
        check_images=tuple(check_images or ()), check_count=check_count, box_tol=box_tol, score_tol=score_tol,
    )  # fmt: skip
    with RichProgress(console) as progress:
        report = run_export(request, on_event=progress)
    for line in report_lines(report):
        console.print(line)


export_command.__doc__ = _HELP


def report_lines(report: ExportReport) -> list[str]:
    """What was written and how well it agrees with the eager model."""
    lines = [
        f"{report.path}: {report.pipeline} as {report.format}, {report.bytes / 2**20:.1f} MiB, exported in "
        f"{report.export_seconds:.1f} s ({report.exporter})"
    ]
    if report.agreement is not None:
        lines.append(f"checked in {report.check_seconds:.1f} s on {report.samples}: {report.agreement.summary()}")
    if report.feature_difference is not None:
        lines.append(
            f"checked on {report.samples}: largest feature difference {report.feature_difference:.2e} of their scale"
        )
    lines.append(f"within tolerance ({report.tolerance.describe()})")
    return lines
