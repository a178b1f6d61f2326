"""Which exported format a weights file is, and opening one in its runtime with its metadata.

``.onnx`` is ONNX and ``.torchscript`` / ``.ts`` TorchScript whatever they hold (a damaged one is then
an error about that format, not "not a checkpoint"); any other name is read: a TorchScript archive is
a zip with ``constants.pkl`` (``torch.save``'s zip has none), an ONNX model a protobuf whose first field
is its IR version (tag byte 0x08; a torch checkpoint starts with ``PK`` or a pickle's 0x80).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Literal, Protocol

import torch
from torch import Tensor

from detkit.errors import CheckpointError
from detkit.export.metadata import KEYS, ExportMetadata

Format = Literal["onnx", "torchscript"]
FORMATS: tuple[Format, ...] = ("onnx", "torchscript")
SUFFIXES: dict[str, Format] = {".onnx": "onnx", ".torchscript": "torchscript", ".ts": "torchscript"}
DEFAULT_SUFFIX: dict[Format, str] = {"onnx": ".onnx", "torchscript": ".torchscript"}


class Session(Protocol):
    """An exported graph loaded in its runtime."""

    runtime: str  # "onnxruntime" or "torchscript": the benchmark's runtime column
    input_shape: list[int | str]  # the image input's shape: ints where it is fixed

    def metadata(self) -> dict[str, str]: ...

    def run(self, inputs: list[Tensor]) -> list[Tensor]: ...


def exported_format(path: str | os.PathLike[str]) -> Format | None:
    """The exported format of ``path``, or None for anything else (a checkpoint, a model name)."""
    path = Path(path)
    if path.suffix.lower() in SUFFIXES:
        return SUFFIXES[path.suffix.lower()]
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError:
        return None
    if head.startswith(b"PK") and _is_torchscript_archive(path):
        return "torchscript"
    if head[:1] == b"\x08":
        return "onnx"
    return None


def open_exported(
    path: str | os.PathLike[str], device: torch.device, fmt: Format | None = None
) -> tuple[Session, ExportMetadata]:
    """The file in its runtime and its checked metadata; ``CheckpointError`` for a missing, unreadable
    or foreign file. ``fmt`` overrides what the name says (a temporary file being verified has none)."""
    path = Path(path)
    fmt = fmt or exported_format(path)
    if fmt is None:
        raise CheckpointError(f"{path}: not an exported detkit model (.onnx or .torchscript)")
    if not path.is_file():
        raise CheckpointError(f"{path}: exported model not found; make one with `detkit export WEIGHTS --format {fmt}`")
    session: Session
    if fmt == "onnx":
        from detkit.export.onnx_file import OnnxSession

        session = OnnxSession(path, device)
    else:
        from detkit.export.torchscript_file import TorchScriptSession

        session = TorchScriptSession(path, device).load(KEYS)
    metadata = ExportMetadata.from_properties(session.metadata(), str(path))
    return session, metadata


def _is_torchscript_archive(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
