import math

import pytest
import torch
from torch import nn

from detkit.engine.ema import ModelEMA


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))


def test_average_follows_the_ramped_decay_by_hand():
    net = model()
    ema = ModelEMA(net, decay=0.9, ramp_steps=1)
    start = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
    ema.update(net)
    decay = 0.9 * (1 - math.exp(-1))
    torch.testing.assert_close(ema.module[0].weight, decay * start + (1 - decay) * (start + 1))
    assert ema.module[1].num_batches_tracked == net[1].num_batches_tracked  # integer buffers are copied


def test_the_average_is_a_separate_frozen_copy():
    net = model()
    ema = ModelEMA(net, decay=0.99)
    assert not any(p.requires_grad for p in ema.module.parameters()) and not ema.module.training
    with torch.no_grad():
        net[0].weight.zero_()
    assert ema.module[0].weight.abs().sum() > 0


def test_state_round_trip_and_bad_decay():
    net = model()
    ema = ModelEMA(net, decay=0.99)
    ema.update(net)
    other = ModelEMA(model(), decay=0.99)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1
    with pytest.raises(ValueError, match="decay"):
        ModelEMA(net, decay=1.0)
