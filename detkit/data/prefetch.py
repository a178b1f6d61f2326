"""Image files decoded ahead of their use, in worker processes: what keeps ``detect``'s model busy.

    paths, workers -> DecodedImage per path, in input order: ``uint8 [H, W, 3]`` RGB and the seconds
    its decoding took (in whichever process decoded it)

A 640x480 JPEG takes ~5-10 ms to decode on one core; with ``workers`` processes that runs while the
model works on earlier images (torch's DataLoader: order kept, a few images ahead per worker). With
0 workers each image is decoded when it is needed. A file that cannot be read raises its own
``ImageError`` (one line naming the file) in the caller, not a worker's traceback.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from detkit.data.images import read_image_rgb
from detkit.errors import DetkitError

AHEAD_PER_WORKER = 4  # images decoded ahead per worker: enough to ride out a slow file, little memory


@dataclass(frozen=True)
class DecodedImage:
    index: int  # position in the input list, 0-based
    path: Path
    image: np.ndarray  # uint8 [H, W, 3] RGB, in the displayed frame
    seconds: float  # decoding time


def prefetched_images(paths: list[Path], workers: int) -> Iterator[DecodedImage]:
    """Every image of ``paths`` decoded, in order; ``workers`` processes decode ahead (0: inline)."""
    if workers == 0:
        for index, path in enumerate(paths):
            yield _decode(index, path).result()
        return
    loader = torch.utils.data.DataLoader(
        _Files(paths),
        batch_size=None,  # one image per item: sizes differ
        num_workers=min(workers, len(paths)) or 1,
        prefetch_factor=AHEAD_PER_WORKER,  # batch_size None: items come as they are (no collation)
        worker_init_fn=_one_thread,
    )
    for item in loader:
        yield item.result()


@dataclass(frozen=True)
class _Outcome:
    """A decoded image, or the error decoding it raised (carried back: a worker's exception would reach
    the caller as a multi-line traceback text of another type)."""

    decoded: DecodedImage | None
    error: DetkitError | None

    def result(self) -> DecodedImage:
        if self.error is not None:
            raise self.error
        assert self.decoded is not None
        return self.decoded


def _decode(index: int, path: Path) -> _Outcome:
    start = time.perf_counter()
    try:
        image = read_image_rgb(path)
    except DetkitError as error:
        return _Outcome(None, error)
    return _Outcome(DecodedImage(index, path, image, time.perf_counter() - start), None)


class _Files(torch.utils.data.Dataset[_Outcome]):
    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> _Outcome:
        return _decode(index, self.paths[index])


def _one_thread(_worker: int) -> None:
    """A decoding worker uses one core: the workers and the model's threads share the machine."""
    cv2.setNumThreads(1)
