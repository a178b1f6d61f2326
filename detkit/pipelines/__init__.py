"""Pipeline builders by name. Each takes a ``ModelConfig`` (with ``num_classes`` set) and returns a detector."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from detkit.config import ModelConfig
from detkit.pipelines.fast_rcnn import build_fast_rcnn
from detkit.pipelines.faster_rcnn import build_faster_rcnn
from detkit.pipelines.mask_rcnn import build_mask_rcnn
from detkit.pipelines.rcnn import build_rcnn
from detkit.pipelines.yolo import build_yolo

PIPELINES: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "fast_rcnn": build_fast_rcnn,
    "faster_rcnn": build_faster_rcnn,
    "mask_rcnn": build_mask_rcnn,
    "rcnn": build_rcnn,
    "yolo": build_yolo,
}

# Pipelines whose proposals come from selective search: training precomputes them into the cache.
SELECTIVE_SEARCH_PIPELINES = frozenset({"fast_rcnn"})

# Pipelines trained by stages (engine/rcnn.py) rather than by the epoch loop.
STAGED_PIPELINES = frozenset({"rcnn"})

# Pipelines that train on instance masks: their datasets decode them.
MASK_PIPELINES = frozenset({"mask_rcnn"})
