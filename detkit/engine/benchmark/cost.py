"""A model's size and arithmetic: parameters, and FLOPs of one forward pass on given images.

FLOPs come from ``torch.utils.flop_counter`` (a multiply-add counts 2): convolutions and matrix
products, which are nearly all of a detector's arithmetic. RoIAlign/RoIPool, NMS, resampling and
selective search are not counted; their cost shows in the stage times instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def counted_flops(calls: Sequence[Callable[[], object]]) -> int:
    """FLOPs of running every call once (it runs them: a benchmark makes this its first warm-up pass).
    The counter works on eager code: count before ``torch.compile``."""
    counter = FlopCounterMode(display=False)  # bound here: its untyped __enter__ returns Any
    # torch < 2.5's counter sees no operator run under inference_mode (it counts 0), so the counted
    # pass leaves inference mode for plain no_grad: same arithmetic, no autograd graph.
    with torch.inference_mode(False), torch.no_grad(), counter:
        for call in calls:
            call()
    return counter.get_total_flops()
