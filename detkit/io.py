"""Files in and out: atomic output, regular-file input, and telling an output from an input.

Every writer in detkit goes through here: write to a temporary file in the destination folder,
flush it to disk, then ``os.replace`` it over the destination (atomic on POSIX and Windows).
A folder of outputs (a converted dataset) is built the same way: in a temporary folder beside the
destination, renamed into place once complete.

Every file detkit reads because a dataset, a cache or the command line names it is opened with
``open_regular``: only a regular file is read (a FIFO planted where a file belongs would block the
reader forever; a device or a folder is nothing detkit can use), within a size its kind can have.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
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


class FileRefused(OSError):
    """A path that is not a regular file, or larger than its kind of file can be; ``strerror`` says which."""


def open_regular(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> IO[bytes]:
    """Open ``path`` for binary reading if it is a regular file of at most ``max_bytes``.

    Opened non-blocking and checked with ``fstat`` on the open descriptor, so a FIFO is refused
    without waiting for a writer and the file checked is the file read (no race with a rename).
    Raises ``FileRefused`` (an ``OSError``) or the ``OSError`` of ``open`` itself.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(0, f"not a regular file ({_kind(info.st_mode)})", os.fspath(path))
        if max_bytes is not None and info.st_size > max_bytes:
            raise FileRefused(
                0, f"{info.st_size:,} bytes, over the {max_bytes:,} such a file can have", os.fspath(path)
            )
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_bytes(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file (see ``open_regular``)."""
    with open_regular(path, max_bytes=max_bytes) as handle:
        return handle.read()


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a file")


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file: the same inode when both exist (hard links and symlinks
    included), else the same absolute path once symlinks are resolved."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def input_replaced_by(output: str | os.PathLike[str], inputs: list[str | os.PathLike[str] | None]) -> Path | None:
    """The first of ``inputs`` that writing ``output`` would replace (the same file), else None."""
    if not os.path.lexists(output):
        return None
    return next(
        (Path(path) for path in inputs if path is not None and os.path.lexists(path) and same_file(output, path)), None
    )


def read_json(path: str | os.PathLike[str], *, what: str, missing_fix: str) -> Any:
    """Parse a JSON file; ``DataError`` names the file, where it broke and what to do.

    ``what`` names the file's role ("annotation file"); ``missing_fix`` says how to get one.
    """
    from detkit.errors import DataError

    path = Path(path)
    if not os.path.lexists(path):
        raise DataError(f"{path}: {what} not found; {missing_fix}")
    try:
        data = read_regular_bytes(path)
    except OSError as error:
        raise DataError(f"{path}: cannot read {what} ({error.strerror}); pass a readable JSON file") from None
    try:
        return json.loads(data)
    except json.JSONDecodeError as error:
        raise DataError(
            f"{path}: invalid JSON at line {error.lineno} column {error.colno} ({error.msg}); "
            "fix or regenerate the file"
        ) from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; save the {what} as UTF-8 JSON") from None
    except ValueError as error:  # valid JSON syntax Python refuses, e.g. an integer of over 4300 digits
        raise DataError(f"{path}: unreadable {what} ({error}); fix or regenerate the file") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to read; fix or regenerate the {what}") from None
