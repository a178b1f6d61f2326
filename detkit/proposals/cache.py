"""On-disk cache of proposals, keyed by image content and proposal parameters.

    <root>/<params digest>/params.json          the ProposalConfig fields that change the boxes
    <root>/<params digest>/<ab>/<content digest>.npy   float32 [P, 4] xyxy pixels of the image

The content digest hashes the decoded pixels (and their shape), not the file: the same picture
re-encoded, renamed or handed over as a tensor at ``detect`` time finds its entry, and an edited
one misses. Changing any parameter that affects the boxes changes the folder, so nothing stale is
ever read. Entries are written atomically, so parallel workers and interrupted runs are safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import tokenize
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np

from detkit.config import ProposalConfig
from detkit.io import atomic_write, atomic_write_text, open_regular
from detkit.proposals.selective_search import selective_search

# Fields that do not change the boxes are left out of the key.
_NOT_KEYED = ("cache_dir", "cache")
# Bump when the selective search wrapper changes what it returns for the same parameters.
_FORMAT_VERSION = 2  # 2: rank order seeded (see selective_search)
_HEADER_BYTES = 4096  # an .npy header is 64-byte aligned and a few hundred bytes at most


def default_cache_dir() -> Path:
    if os.environ.get("DETKIT_CACHE_DIR"):
        return Path(os.environ["DETKIT_CACHE_DIR"])
    base = Path(os.environ["XDG_CACHE_HOME"]) if os.environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "detkit" / "proposals"


def image_digest(image: np.ndarray) -> str:
    """Hex digest of a ``uint8 [H, W, 3]`` image's pixels and shape."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(tuple(image.shape)).encode())
    digest.update(np.ascontiguousarray(image, dtype=np.uint8).data)
    return digest.hexdigest()


def params_digest(cfg: ProposalConfig) -> str:
    return hashlib.blake2b(_params_text(cfg).encode(), digest_size=8).hexdigest()


class ProposalCache:
    """Selective search with memoisation on disk; ``get`` computes and stores on a miss
    (or computes every time, touching no file, when ``cfg.cache`` is false)."""

    def __init__(self, cfg: ProposalConfig) -> None:
        self.cfg = cfg
        root = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
        self.folder = root / params_digest(cfg)

    def path_for(self, image: np.ndarray) -> Path:
        key = image_digest(image)
        return self.folder / key[:2] / f"{key}.npy"

    def load(self, image: np.ndarray) -> np.ndarray | None:
        """The cached proposals of ``image``, or None when absent or not a sane entry (a miss, recomputed)."""
        return read_entry(self.path_for(image), max_rows=self.cfg.topk)

    def store(self, image: np.ndarray, boxes: np.ndarray) -> None:
        self._write_params()
        array = np.asarray(boxes, dtype=np.float32)
        atomic_write(self.path_for(image), lambda handle: np.save(handle, array, allow_pickle=False))

    def get(self, image: np.ndarray) -> tuple[np.ndarray, bool]:
        """``(proposals, was_cached)`` for one RGB image."""
        if not self.cfg.cache:
            return selective_search(image, self.cfg), False
        boxes = self.load(image)
        if boxes is not None:
            return boxes, True
        boxes = selective_search(image, self.cfg)
        self.store(image, boxes)
        return boxes, False

    def proposals_for(self, image: np.ndarray) -> np.ndarray:
        """The proposals of one RGB image (what a dataset attaches to its targets)."""
        return self.get(image)[0]

    def _write_params(self) -> None:
        params = self.folder / "params.json"
        if not params.exists():
            atomic_write_text(params, _params_text(self.cfg, indent=2))


def read_entry(path: Path, max_rows: int) -> np.ndarray | None:
    """A cache entry's ``float32 [P, 4]`` boxes, or None unless it is exactly that.

    The cache folder is shared and long-lived, so an entry is read only when it is a regular file
    (a FIFO planted there would block ``np.load`` forever) whose ``.npy`` header declares float32
    ``[P, 4]`` with ``P <= max_rows`` (selective search keeps at most ``topk``) and whose size is that
    header's: a header declaring 10^12 rows is refused before anything is allocated.
    """
    try:
        with open_regular(path, max_bytes=_HEADER_BYTES + 16 * max_rows) as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            with warnings.catch_warnings():  # numpy warns of a Python 2 header it had to repair: a damaged entry
                warnings.simplefilter("ignore", UserWarning)
                shape, fortran_order, dtype = read_header(handle)
            if (
                fortran_order
                or dtype != np.dtype("<f4")
                or len(shape) != 2
                or shape[1] != 4
                or not 0 <= shape[0] <= max_rows
            ):
                return None
            data = handle.read(16 * shape[0] + 1)
    except (OSError, ValueError, TypeError, SyntaxError, RecursionError, tokenize.TokenError):
        return None  # what numpy's header parser raises on a damaged header (it is Python literal syntax)
    return np.frombuffer(data, dtype="<f4").reshape(shape).copy() if len(data) == 16 * shape[0] else None


def _params_text(cfg: ProposalConfig, indent: int | None = None) -> str:
    fields = {k: v for k, v in asdict(cfg).items() if k not in _NOT_KEYED}
    fields["format_version"] = _FORMAT_VERSION
    return json.dumps(fields, sort_keys=True, indent=indent)
