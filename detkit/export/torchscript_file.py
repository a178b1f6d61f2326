"""TorchScript files: the networks traced, the steps between them scripted, run with ``torch.jit.load``.

``torch.jit.trace`` records the convolutional networks exactly (their shapes follow the input; the
FPN's and PAN's upsampling sizes are read from tensors, which tracing keeps); it would bake the
example's numbers into the steps with data-dependent sizes, so those are compiled by
``torch.jit.script``, which keeps them as code. The result is frozen (weights become constants,
BatchNorm folds into the convolutions) for inference. Such a file runs any image size.

torch 2.9 deprecated TorchScript in favour of ``torch.export``; it still loads in C++ (libtorch)
without Python, which is what it is for here.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from detkit.errors import CheckpointError
from detkit.export.graphs import networks_of


def export_torchscript(module: nn.Module, example: tuple[Tensor, ...], path: Path, metadata: dict[str, str]) -> None:
    """Write ``module`` (called as ``module(*example)``) to ``path`` with ``metadata`` as extra files."""
    with quiet_jit():
        scripted = torch.jit.script(_traced_networks(module, example))
        frozen = torch.jit.freeze(scripted.eval())
        torch.jit.save(frozen, str(path), _extra_files=metadata)


def _traced_networks(module: nn.Module, example: tuple[Tensor, ...]) -> nn.Module:
    """A copy of ``module`` whose networks are traced on the inputs they get from ``example``."""
    graph = copy.deepcopy(module)
    names = networks_of(graph)
    seen = _inputs_seen(graph, names, example)
    for name in names:
        network = getattr(graph, name)
        traced = torch.jit.trace(network, _nonempty(seen[name]), check_trace=False, strict=False)  # type: ignore[no-untyped-call]
        setattr(graph, name, traced)
    return graph


def _inputs_seen(graph: nn.Module, names: list[str], example: tuple[Tensor, ...]) -> dict[str, tuple[Any, ...]]:
    """What each named child is called with when ``graph(*example)`` runs."""
    seen: dict[str, tuple[Any, ...]] = {}
    hooks = [
        getattr(graph, name).register_forward_pre_hook(lambda _, args, name=name: seen.setdefault(name, args))
        for name in names
    ]
    try:
        with torch.no_grad():
            graph(*example)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def _nonempty(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """A batch of RoIs can be empty on the example image; trace on two random ones of the same shape
    instead (the recorded operations do not depend on the batch's size or values)."""
    return tuple(
        torch.rand((2, *a.shape[1:]), dtype=a.dtype) if isinstance(a, Tensor) and a.shape[0] == 0 else a for a in args
    )


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    """TorchScript warns on every call that it is deprecated, and tracing warns about what it cannot see
    (which the verification after export checks)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class TorchScriptSession:
    """A TorchScript file: ``run(inputs)`` -> outputs, as tensors on ``device``."""

    runtime = "torchscript"

    def __init__(self, path: Path, device: torch.device) -> None:
        self.device = device
        self.extra_files: dict[str, Any] = {}
        self._path = path

    def load(self, keys: Sequence[str]) -> TorchScriptSession:
        """Read the module and the extra files named ``keys`` (TorchScript reads only the ones asked for)."""
        extra: dict[str, Any] = dict.fromkeys(keys, "")
        try:
            with quiet_jit():
                self.module = torch.jit.load(  # type: ignore[no-untyped-call]
                    str(self._path), map_location=self.device, _extra_files=extra
                )
        except Exception as error:  # torch.jit.load raises RuntimeError or ValueError for what it cannot read
            reason = (str(error).strip().splitlines() or [""])[0][:160]
            raise CheckpointError(
                f"{self._path}: not a readable TorchScript file ({type(error).__name__}: {reason}); "
                "export it again with `detkit export`"
            ) from None
        self.extra_files = extra
        self.input_shape: list[int | str] = [3, "H", "W"]  # a scripted graph takes any size
        return self

    def metadata(self) -> dict[str, str]:
        return {
            key: value.decode("utf-8") if isinstance(value, bytes) else str(value)
            for key, value in self.extra_files.items()
            if value
        }

    def run(self, inputs: Sequence[Tensor]) -> list[Tensor]:
        with torch.inference_mode(), quiet_jit():
            outputs = self.module(*(value.to(self.device) for value in inputs))
        return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
