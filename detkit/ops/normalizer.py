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


def loss_normalizer(count: int | Tensor, device: torch.device) -> Tensor:
    """``count`` averaged over the training processes (itself with one process), at least 1, as a float scalar.

    Every process must call this the same number of times per step (it is a collective while
    training data-parallel), so callers call it before any early return.
    """
    value = torch.as_tensor(count, dtype=torch.float32, device=device).detach().clone()
    if torch.is_grad_enabled() and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value = value / dist.get_world_size()
    return value.clamp(min=1.0)
