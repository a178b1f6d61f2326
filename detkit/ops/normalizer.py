"""Loss normalisers that stay exact under data-parallel training.

A detection loss is a sum over sampled anchors, RoIs or foreground points divided by their count.
DDP averages gradients over processes; if each process divided by its own count, the samples of a
process with few of them would weigh more than in single-process training. Dividing by the count
averaged over processes makes the averaged gradient equal the single-process gradient of the whole
global batch (mmdetection's ``reduce_mean(num_pos)`` does the same).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def loss_normalizer(count: int, device: torch.device) -> float | Tensor:
    """``count`` averaged over the training processes, at least 1: a Python float with one process
    (no device tensor, so no host-device copy in the loss), a scalar tensor on ``device`` otherwise.

    Every process must call this the same number of times per step (it is a collective while
    training data-parallel), so callers call it before any early return.
    """
    if not (torch.is_grad_enabled() and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return float(max(count, 1))
    value = torch.tensor(float(count), device=device)
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return (value / dist.get_world_size()).clamp(min=1.0)
