"""ONNX files: written with torch's ``torch.export``-based exporter, run with onnxruntime.

Why that exporter: the graphs hold sizes and counts known only when they run (the resized image
size, the boxes NMS keeps, the RoIs of each pyramid level). ``torch.export`` records them
symbolically; the TorchScript-based exporter traces, so it would bake the example image's numbers
into the graph (and it is deprecated since torch 2.9). torchvision's ``nms`` and ``roi_align``
become ONNX ``NonMaxSuppression`` and ``RoiAlign`` through the translations onnxscript ships;
``roi_pool``'s translation there has the wrong signature (onnxscript 0.7), so ``ROI_POOL`` writes
``MaxRoiPool`` for it through the exporter's ``custom_translation_table``.

onnx, onnxruntime and onnxscript are the optional extra ``detkit[export]``: nothing here imports
them before a function needs them.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from detkit.errors import CheckpointError, DetkitError

EXTRA = "pip install 'detkit[export]'"
MODULES = ("onnx", "onnxruntime", "onnxscript")
DEFAULT_OPSET = 18  # the exporter's own default; RoiAlign's half-pixel mode needs 16 and up
# Sizes a dynamic file accepts (the exporter wants bounds; these are far past any photograph).
MIN_SIDE, MAX_SIDE = 8, 16384


def require_onnx(what: str = "ONNX export") -> None:
    """One line naming the extra when a module of it is missing."""
    import importlib.util

    missing = [name for name in MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise DetkitError(f"{what} needs {', '.join(missing)}, which are not installed; {EXTRA}")


def export_onnx(
    module: nn.Module,
    example: tuple[Tensor, ...],
    input_names: Sequence[str],
    output_names: Sequence[str],
    path: Path,
    *,
    dynamic: bool,
    opset: int | None,
    metadata: dict[str, str],
) -> None:
    """Write ``module`` (called as ``module(*example)``) to ``path`` as one ONNX file with ``metadata``."""
    require_onnx()
    with quiet_exporter():
        program = torch.onnx.export(
            module,
            example,
            dynamo=True,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_shapes=_dynamic_shapes(input_names, dynamic),
            opset_version=opset or DEFAULT_OPSET,
            custom_translation_table=_translations(),
            optimize=True,
            verbose=False,
        )
    if program is None:  # only the TorchScript-based exporter returns nothing
        raise DetkitError(f"{path}: torch.onnx.export returned no program; upgrade torch")
    _check_dynamic(program, input_names[0], dynamic, path)
    program.model.metadata_props.update(metadata)
    program.save(str(path), external_data=False)


def _dynamic_shapes(input_names: Sequence[str], dynamic: bool) -> dict[str, dict[int, Any] | None]:
    """The image's height and width (with ``dynamic``) and the proposal count (always) vary; every input
    has an entry (``None``: fixed), as ``torch.export`` wants."""
    shapes: dict[str, dict[int, Any] | None] = dict.fromkeys(input_names)
    if dynamic:
        side = {"min": MIN_SIDE, "max": MAX_SIDE}
        shapes[input_names[0]] = {1: torch.export.Dim("height", **side), 2: torch.export.Dim("width", **side)}
    if "proposals" in input_names:
        shapes["proposals"] = {0: torch.export.Dim("num_proposals", min=0, max=2**20)}
    return shapes


def _check_dynamic(program: Any, image: str, dynamic: bool, path: Path) -> None:
    """The exporter quietly fixes a size it could not keep symbolic; a dynamic file must not be fixed."""
    if not dynamic:
        return
    graph_input = next(value for value in program.model.graph.inputs if value.name == image)
    fixed = [dim for dim in list(graph_input.shape)[1:] if isinstance(dim, int)]
    if fixed:
        raise DetkitError(
            f"{path}: the exporter fixed the image size ({list(graph_input.shape)}) instead of keeping it dynamic; "
            "export without --dynamic, or as --format torchscript"
        )


def _translations() -> dict[Any, Any]:
    from onnxscript import opset18 as op

    def roi_pool(input: Any, rois: Any, spatial_scale: float, pooled_height: int, pooled_width: int) -> Any:
        """torchvision's ``roi_pool(input, rois, spatial_scale, pooled_height, pooled_width)`` -> (output, argmax)
        as ONNX ``MaxRoiPool`` (Caffe's RoIPool, as torchvision's: same rounding, same empty bins); the
        argmax output, which only the backward pass reads, is not computed."""
        pooled = op.MaxRoiPool(input, rois, pooled_shape=[pooled_height, pooled_width], spatial_scale=spatial_scale)
        return pooled, op.Cast(pooled, to=7)  # 7: INT64, the argmax's type; never read

    return {torch.ops.torchvision.roi_pool.default: roi_pool}


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """The exporter prints its steps, and torch.export logs its guesses and prints the partial graph of any
    capture strategy that fails before one succeeds; a command shows none of it (a failure that matters
    is an exception)."""
    loggers = [logging.getLogger(name) for name in ("torch.fx.experimental.symbolic_shapes", "torch.export", "torch")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class OnnxSession:
    """An ONNX file in onnxruntime: ``run(inputs)`` -> outputs, as torch tensors on the CPU."""

    runtime = "onnxruntime"

    def __init__(self, path: Path, device: torch.device) -> None:
        require_onnx("running an ONNX file")
        import onnxruntime as ort  # type: ignore[import-untyped]  # ships no type information

        options = ort.SessionOptions()
        # The same threads as torch: a benchmark compares runtimes, not thread counts.
        options.intra_op_num_threads = torch.get_num_threads()
        options.log_severity_level = 3  # errors only: its warnings about unused initializers are noise here
        self.providers = providers_for(device, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(path), options, providers=self.providers)
        except Exception as error:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...) only
            reason = (str(error).strip().splitlines() or [""])[0][:160]
            raise CheckpointError(
                f"{path}: not a readable ONNX model ({type(error).__name__}: {reason}); "
                "export it again with `detkit export`"
            ) from None
        self.input_names = [value.name for value in self.session.get_inputs()]
        self.input_shape = list(self.session.get_inputs()[0].shape)

    def metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, inputs: Sequence[Tensor]) -> list[Tensor]:
        feeds = {name: value.detach().cpu().numpy() for name, value in zip(self.input_names, inputs)}
        return [torch.from_numpy(output) for output in self.session.run(None, feeds)]


def providers_for(device: torch.device, available: Sequence[str]) -> list[str]:
    """onnxruntime's providers for ``device``, best first: TensorRT then CUDA on a GPU, always the CPU."""
    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"] if device.type == "cuda" else []
    return [name for name in wanted if name in available] + ["CPUExecutionProvider"]
