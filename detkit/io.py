"""Atomic file output: a reader sees the old file or the complete new one, never half of one.

Every writer in detkit goes through here: write to a temporary file in the destination folder,
flush it to disk, then ``os.replace`` it over the destination (atomic on POSIX and Windows).
A folder of outputs (a converted dataset) is built the same way: in a temporary folder beside the
destination, renamed into place once complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    destination = Path(path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, destination)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_directory(path: str | os.PathLike[str], *, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it becomes ``path``, on error it is removed.

    An existing ``path`` raises ``FileExistsError`` unless ``replace``; then the old folder is moved
    aside only once the new one is complete, and deleted after the swap (POSIX cannot rename a
    folder over a non-empty one, so there is a moment between the two renames where ``path`` is absent).
    """
    destination = Path(path)
    if destination.exists() and not replace:
        raise FileExistsError(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent))
    try:
        yield tmp
        _swap_in(tmp, destination, replace)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(tmp: Path, destination: Path, replace: bool) -> None:
    if not destination.exists():
        os.rename(tmp, destination)
        return
    if not replace:
        raise FileExistsError(destination)
    trash = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".old", dir=destination.parent))
    old = trash / destination.name  # moved inside a fresh folder: works for a file or a folder alike
    os.replace(destination, old)
    try:
        os.rename(tmp, destination)
    except OSError:
        os.replace(old, destination)  # put the old output back rather than leave nothing
        shutil.rmtree(trash, ignore_errors=True)
        raise
    shutil.rmtree(trash, ignore_errors=True)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(binary_file)`` and publish the result at ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = None) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent))


def read_json(path: str | os.PathLike[str], *, what: str, missing_fix: str) -> Any:
    """Parse a JSON file; ``DataError`` names the file, where it broke and what to do.

    ``what`` names the file's role ("annotation file"); ``missing_fix`` says how to get one.
    """
    from detkit.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found; {missing_fix}")
    try:
        return json.loads(path.read_bytes())
    except OSError as error:
        raise DataError(f"{path}: cannot read {what} ({error.strerror}); check its permissions") from None
    except json.JSONDecodeError as error:
        raise DataError(
            f"{path}: invalid JSON at line {error.lineno} column {error.colno} ({error.msg}); fix or regenerate the file"
        ) from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; save the {what} as UTF-8 JSON") from None
    except ValueError as error:  # valid JSON syntax Python refuses, e.g. an integer of over 4300 digits
        raise DataError(f"{path}: unreadable {what} ({error}); fix or regenerate the file") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to read; fix or regenerate the {what}") from None
