"""Selective search over many image files, one process per core, through the on-disk cache.

Selective search is single-threaded C++ taking ~0.1-2 s per image, so processes are what scale it.
This process reads each image and probes the cache (a decode, a hash and a small ``np.load``);
only misses go to the worker pool, which is started on the first miss: a fully cached dataset
never pays for starting workers, and a second run costs little more than reading the images.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from detkit.config import ProposalConfig
from detkit.data.images import read_image_rgb
from detkit.proposals.cache import ProposalCache

# Starting spawned workers costs ~2 s (each imports torch through the image reader): more than
# selective search takes on a handful of images, so those run in this process.
MIN_IMAGES_FOR_POOL = 8


@dataclass
class ImageProposals:
    """Proposals of one image file: ``boxes`` float32 ``[P, 4]`` xyxy pixels of the stored image."""

    path: Path
    boxes: np.ndarray
    image_size: tuple[int, int]  # (H, W)
    seconds: float  # selective search time on a miss (in its worker), the cache read on a hit
    cached: bool


def propose_files(paths: Sequence[Path], cfg: ProposalConfig, workers: int = 0) -> Iterator[tuple[int, ImageProposals]]:
    """``(index into paths, proposals)`` for every file, cache hits first, misses as they finish.

    ``workers`` 0 uses one process per core; 1 computes misses in this process.
    """
    workers = workers or os.cpu_count() or 1
    if len(paths) < MIN_IMAGES_FOR_POOL:
        workers = 1
    cache = ProposalCache(cfg)
    pool: ProcessPoolExecutor | None = None
    pending: dict[Future[ImageProposals], int] = {}
    try:
        for index, path in enumerate(paths):
            image = read_image_rgb(path)
            started = time.perf_counter()
            boxes = cache.load(image)
            if boxes is not None:
                yield index, ImageProposals(Path(path), boxes, _size(image), time.perf_counter() - started, True)
            elif workers == 1:
                yield index, _compute(path, cfg, image)
            else:
                # spawn, not fork: this process may hold torch's and OpenCV's thread pools, which do not survive a fork.
                pool = pool or ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker)
                pending[pool.submit(_compute, path, cfg)] = index
            yield from _collect([future for future in pending if future.done()], pending)
        yield from _collect(as_completed(list(pending)), pending)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _collect(
    futures: Iterable[Future[ImageProposals]], pending: dict[Future[ImageProposals], int]
) -> Iterator[tuple[int, ImageProposals]]:
    for future in futures:
        yield pending.pop(future), future.result()


def _compute(path: Path, cfg: ProposalConfig, image: np.ndarray | None = None) -> ImageProposals:
    image = read_image_rgb(path) if image is None else image
    started = time.perf_counter()
    boxes, cached = ProposalCache(cfg).get(image)
    return ImageProposals(Path(path), boxes, _size(image), time.perf_counter() - started, cached)


def _size(image: np.ndarray) -> tuple[int, int]:
    return int(image.shape[0]), int(image.shape[1])


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already; OpenCV's own pool would oversubscribe
