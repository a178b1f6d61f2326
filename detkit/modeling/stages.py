"""Where a detector's time goes: named stages marked in the models, timed only when someone asks.

Models mark their parts with ``with stage("backbone"): ...``. Nothing is measured (and nothing waits
for the GPU) unless a ``StageRecorder`` is active, so marked code runs at full speed in training,
``detect`` and the end-to-end timings of ``detkit benchmark``. Under a recorder::

    with record_stages(device) as recorder:
        model(images)
    recorder.seconds  # {"preprocess": 0.004, "backbone": 0.061, ...}

Time is exclusive: a stage nested in another (NMS inside the RoI heads) is charged to the inner
stage only, so the stages of one call add up to the time spent inside marked code. On CUDA the
recorder synchronizes at every boundary, or kernels still running would be charged to the next stage.

Stage names used by detkit's models, in pipeline order: ``STAGE_ORDER``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch

STAGE_ORDER = (
    "preprocess",  # resizing, normalisation, padding (R-CNN: warping each region)
    "proposals",  # selective search (Fast R-CNN, R-CNN)
    "backbone",  # trunk and FPN/PAN neck (R-CNN: the CNN on every warped region)
    "rpn",  # region proposal network, its decoding and NMS (Faster, Mask R-CNN)
    "dense_head",  # the single-shot head and its box decoding (YOLO)
    "roi_heads",  # RoI pooling and the box head (Fast, Faster, Mask R-CNN)
    "svms",  # per-class SVM scoring and box regression (R-CNN)
    "mask_head",  # RoIAlign and the mask head on the final detections (Mask R-CNN)
    "postprocess",  # score threshold, NMS, mapping boxes back to the input frame
    "other",  # what a caller timed that no stage claimed
)

_active: StageRecorder | None = None
_NOT_RECORDING = nullcontext()


class StageRecorder:
    """Accumulates exclusive wall time per stage name while it is the active recorder."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.seconds: dict[str, float] = defaultdict(float)
        self._open: list[str] = []
        self._last_mark = 0.0

    @contextmanager
    def span(self, name: str) -> Iterator[None]:
        self._charge_open_stage()
        self._open.append(name)
        try:
            yield
        finally:
            self._charge_open_stage()
            self._open.pop()

    def _charge_open_stage(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        if self._open:
            self.seconds[self._open[-1]] += now - self._last_mark
        self._last_mark = now


def stage(name: str) -> AbstractContextManager[None]:
    """Mark a block of model code as stage ``name``: timed under an active recorder, free otherwise."""
    return _NOT_RECORDING if _active is None else _active.span(name)


@contextmanager
def record_stages(device: torch.device | str = "cpu") -> Iterator[StageRecorder]:
    """Make a new recorder active for the block (recorders do not nest: the inner one wins)."""
    global _active
    previous, recorder = _active, StageRecorder(device)
    _active = recorder
    try:
        yield recorder
    finally:
        _active = previous
