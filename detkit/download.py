"""Weights files that download: torchvision's URLs, torchvision's cache, hash-checked, atomic, offline-aware.

``fetch_weights(url)`` returns the local copy of a torchvision weights file, downloading it first when
no copy exists. It is the one place detkit touches the network, and it follows torch.hub's conventions
so a file downloaded by torchvision is found by detkit and the other way round:

- the file lands in ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``, by default
  ``~/.cache/torch/hub/checkpoints``) under the URL's file name;
- that name carries the first hex digits of the file's SHA-256 (``mobilenet_v2-b0353104.pth``); the
  download is hashed while it streams and refused when they differ;
- it is written to a hidden ``.NAME.*.partial`` beside the destination and renamed only when complete
  and checked, so an interrupted, damaged or disk-full download never leaves a file that would be read.

``DETKIT_OFFLINE=1`` (``detkit --offline``) never opens a connection: a missing file is an error that
says where to put a copy. ``DETKIT_WEIGHTS_MIRROR`` (an ``https://`` or ``file://`` base) fetches the
same file name from there instead of the original host: a company mirror, or an air-gapped folder.

Progress goes to the reporter installed with ``report_downloads_to`` (the CLI's rich bar); without one
downloads are silent. No torch import at module load (the CLI imports this for ``--offline``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import socket
import tempfile
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Protocol

from detkit.errors import WeightsDownloadError, WeightsNotFoundError

OFFLINE_ENV = "DETKIT_OFFLINE"
MIRROR_ENV = "DETKIT_WEIGHTS_MIRROR"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30.0  # per blocking read: a stalled connection fails instead of hanging forever
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")  # torch.hub's convention: NAME-HASHPREFIX.EXT


class DownloadReporter(Protocol):
    """Shows one download at a time: ``start``, any number of ``advance``, then ``finish`` (``complete``:
    every byte arrived and the SHA-256 matches the name's; else the download is refused)."""

    def start(self, name: str, total_bytes: int | None) -> None: ...

    def advance(self, num_bytes: int) -> None: ...

    def finish(self, complete: bool) -> None: ...


_reporter: DownloadReporter | None = None


@contextmanager
def report_downloads_to(reporter: DownloadReporter) -> Iterator[None]:
    """Send the progress of downloads inside the block to ``reporter``."""
    global _reporter
    previous, _reporter = _reporter, reporter
    try:
        yield
    finally:
        _reporter = previous


def is_offline() -> bool:
    """``DETKIT_OFFLINE`` set to anything but "", "0" or "false"."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def go_offline() -> None:
    """Never download, in this process and the ones it starts (DataLoader workers, DDP processes)."""
    os.environ[OFFLINE_ENV] = "1"


def weights_cache_dir() -> Path:
    """torchvision's download folder, ``$TORCH_HOME/hub/checkpoints``, as ``torch.hub`` computes it."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_path(url: str) -> Path:
    """Where the download of ``url`` is (or will be) kept."""
    return weights_cache_dir() / file_name(url)


def file_name(url: str) -> str:
    """The file name at the end of ``url``'s path (``.../mobilenet_v2-b0353104.pth`` -> that name)."""
    name = Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise ValueError(f"{url!r} does not end in a file name")
    return name


def expected_hash_prefix(url: str) -> str | None:
    """The SHA-256 prefix torch.hub's naming puts in the file name, or None when it has none."""
    match = _HASH_IN_NAME.search(file_name(url))
    return match.group(1) if match else None


def source_url(url: str) -> str:
    """``url``, or the same file name under ``$DETKIT_WEIGHTS_MIRROR`` when that is set."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return f"{mirror.rstrip('/')}/{file_name(url)}" if mirror else url


def fetch_weights(url: str, *, what: str, alternative: str = "") -> Path:
    """The local copy of the weights file at ``url``: the cached one, else a fresh, hash-checked download.

    ``what`` names the weights in messages ("ImageNet weights for resnet50"); ``alternative`` is another
    remedy the caller offers ("pass --set model.backbone.weights_path=FILE"). Raises
    ``WeightsNotFoundError`` offline with no copy, ``WeightsDownloadError`` when the download fails;
    both are one line with the URL and the path where a copy placed by hand is picked up.
    """
    destination = cached_path(url)
    if destination.is_file():
        return destination
    source = source_url(url)
    if is_offline():
        raise WeightsNotFoundError(
            f"{what} are not in the cache and detkit is offline ({OFFLINE_ENV}=1 or --offline); "
            f"download {source} to {destination}, run once online{_or(alternative)}"
        )
    try:
        with _exclusive(destination):
            if not destination.is_file():  # another process may have finished it while this one waited
                _download(source, destination, expected_hash_prefix(url))
    except WeightsDownloadError as error:
        raise WeightsDownloadError(
            f"cannot download {what} from {source}: {error}; retry, set {MIRROR_ENV} to a mirror, "
            f"or download the file by hand to {destination}{_or(alternative)}"
        ) from None
    return destination


@contextmanager
def _exclusive(destination: Path) -> Iterator[None]:
    """One download of ``destination`` at a time across processes (torchrun's workers all build the
    model at once): an advisory lock on a ``.NAME.lock`` beside it. Where ``fcntl`` is missing
    (Windows) each process downloads; the atomic rename keeps that correct, only slower."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        lock = open(destination.with_name(f".{destination.name}.lock"), "a")  # noqa: SIM115 - held across yield
    except OSError as error:
        raise WeightsDownloadError(_os_reason(error, destination.parent)) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _or(alternative: str) -> str:
    return f", or {alternative}" if alternative else ""


def _download(source: str, destination: Path, hash_prefix: str | None) -> None:
    """Stream ``source`` into a hidden partial file beside ``destination``; rename it when complete and
    its SHA-256 starts with ``hash_prefix``. Any failure removes the partial file and raises
    ``WeightsDownloadError`` with the reason alone (the caller adds the URL and the remedy)."""
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        handle, partial_name = tempfile.mkstemp(
            prefix=f".{destination.name}.", suffix=".partial", dir=destination.parent
        )
    except OSError as error:
        raise WeightsDownloadError(_os_reason(error, destination.parent)) from None
    partial = Path(partial_name)
    try:
        with os.fdopen(handle, "wb") as out:
            digest = _stream(source, out, destination, hash_prefix)
        if not _hash_matches(digest, hash_prefix):
            raise WeightsDownloadError(
                f"the file's SHA-256 starts {digest[: len(hash_prefix or '')]}, not {hash_prefix} as its name "
                "says: it is damaged or not the published file, and was not kept"
            )
        os.chmod(partial, 0o666 & ~_umask())  # mkstemp makes it 0600; a cache file is as readable as any other
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)


def _hash_matches(digest: str, hash_prefix: str | None) -> bool:
    return hash_prefix is None or digest.startswith(hash_prefix)


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


def _stream(source: str, out: IO[bytes], destination: Path, hash_prefix: str | None) -> str:
    """Copy ``source`` to ``out`` chunk by chunk, reporting progress; returns the SHA-256 hex digest."""
    import http.client  # here, not at the top: http.client and ssl cost the CLI's start-up 20 ms
    import urllib.error
    import urllib.request

    digest = hashlib.sha256()
    request = urllib.request.Request(source, headers={"User-Agent": "detkit"})
    total: int | None = None
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            total = _content_length(response.headers.get("Content-Length"))
            received = _copy(response, out, digest, destination.name, total, hash_prefix)
    except http.client.IncompleteRead:
        raise WeightsDownloadError(f"the connection closed before all {total} bytes arrived") from None
    except http.client.HTTPException as error:  # a malformed or cut-off response
        raise WeightsDownloadError(f"the server's response broke off ({error.__class__.__name__})") from None
    except urllib.error.HTTPError as error:
        raise WeightsDownloadError(f"HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise WeightsDownloadError(_network_reason(error.reason)) from None
    except ConnectionError as error:  # reset or aborted by the other end, mid-stream
        raise WeightsDownloadError(f"the connection broke ({error.strerror or error.__class__.__name__})") from None
    except TimeoutError:
        raise WeightsDownloadError(f"no data for {TIMEOUT_S:.0f} s (a stalled connection or a proxy)") from None
    except OSError as error:  # the local disk: ENOSPC, EACCES, ... (network errors arrive as URLError)
        raise WeightsDownloadError(_os_reason(error, destination.parent)) from None
    if total is not None and received != total:
        raise WeightsDownloadError(f"the connection closed after {received} of {total} bytes")
    return digest.hexdigest()


def _copy(
    response: IO[bytes], out: IO[bytes], digest: hashlib._Hash, name: str, total: int | None, hash_prefix: str | None
) -> int:
    """``response`` into ``out`` and ``digest``, a chunk at a time, with progress; returns the bytes copied.
    The reporter hears ``complete`` only when every byte arrived and the hash matches (the caller raises
    otherwise), so a progress bar never says "downloaded" for a file that is then refused."""
    received, complete = 0, False
    if _reporter is not None:
        _reporter.start(name, total)
    try:
        while chunk := response.read(CHUNK_BYTES):
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            if _reporter is not None:
                _reporter.advance(len(chunk))
        out.flush()
        os.fsync(out.fileno())
        complete = (total is None or received == total) and _hash_matches(digest.hexdigest(), hash_prefix)
    finally:
        if _reporter is not None:
            _reporter.finish(complete)
    return received


def _content_length(header: str | None) -> int | None:
    return int(header) if header is not None and header.strip().isdigit() else None


def _network_reason(reason: object) -> str:
    """urllib's reason, in words: "no network or DNS", "connection refused", a missing mirror file."""
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host ({reason.strerror}; no network, or a proxy is needed: set https_proxy)"
    if isinstance(reason, FileNotFoundError):
        return "no such file at the mirror"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason)


def _os_reason(error: OSError, folder: Path) -> str:
    """Why the local disk refused the download, with the free space when it is full."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(folder).free if folder.exists() else 0
        return (
            f"the disk is full ({free / 2**20:.1f} MiB free in {folder}); free some space or set TORCH_HOME elsewhere"
        )
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write to {folder} ({error.strerror}); set TORCH_HOME to a writable folder"
    return f"{error.strerror or error.__class__.__name__} writing to {folder}"
