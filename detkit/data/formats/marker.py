"""Which outputs ``detkit data convert`` wrote, so ``--overwrite`` replaces those and nothing else.

A converted folder holds ``.detkit-conversion.json`` (the tool, its version and the format); a
single COCO ``.json`` output carries the same record under ``info["detkit_conversion"]``. An output
path without the mark is the user's (their photos, their original annotations, a thesis folder):
``--overwrite`` refuses it instead of deleting it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from detkit.io import atomic_write_json, open_regular
from detkit.version import __version__

MARKER = ".detkit-conversion.json"
INFO_KEY = "detkit_conversion"


def conversion_mark(fmt: str) -> dict[str, Any]:
    return {"written_by": "detkit data convert", "detkit_version": __version__, "format": fmt}


def mark_folder(folder: Path, fmt: str) -> None:
    atomic_write_json(folder / MARKER, conversion_mark(fmt), indent=2)


def mark_coco(coco: dict[str, Any]) -> dict[str, Any]:
    """``coco`` with the mark in its ``info`` (a new top-level dict; the records are shared)."""
    info = dict(coco.get("info") or {}) if isinstance(coco.get("info"), dict) else {}
    info[INFO_KEY] = conversion_mark("coco")
    return {**coco, "info": info}


def written_by_convert(path: Path) -> bool:
    """Whether ``path`` (a folder, or a ``.json`` file) bears the mark of an earlier conversion."""
    if path.is_dir() and not path.is_symlink():
        return (path / MARKER).is_file()
    if path.is_file() and path.suffix.lower() == ".json":
        try:
            with open_regular(path) as handle:
                info = json.load(handle).get("info")
        except (OSError, ValueError, AttributeError, RecursionError):
            return False
        return isinstance(info, dict) and isinstance(info.get(INFO_KEY), dict)
    return False
