"""Folding batch norms into convs: the arithmetic, which pairs the structural search finds, what it refuses.

A folded conv differs from conv-then-norm by float32 rounding only: ``ATOL`` on activations of unit size.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from detkit.modeling.fuse import conv_norm_pairs, fold_batch_norms, folded_copy
from detkit.modeling.yolo.blocks import CSPBlock

ATOL = 1e-5


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Running statistics and affine parameters far from the identity, so a fold that drops a term shows."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm2d, FrozenBatchNorm2d)):
            (channels,) = module.running_mean.shape
            module.running_mean.copy_(torch.randn(channels, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(channels, generator=generator) * 2 + 0.2)
            if module.weight is not None:
                module.weight.data.copy_(torch.rand(channels, generator=generator) + 0.5)
                module.bias.data.copy_(torch.randn(channels, generator=generator) * 0.5)
    return model


def folded_and_reference(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    reference = randomize_norms(model).eval()
    return reference, folded_copy(reference)


@pytest.mark.parametrize(
    "conv, norm",
    [
        (nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)),
        (nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, bias=True), nn.BatchNorm2d(6, eps=1e-3)),
        (nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False), FrozenBatchNorm2d(6)),
        (nn.Conv2d(4, 6, 1, bias=True), nn.BatchNorm2d(6, affine=False)),
    ],
    ids=["bn", "strided-dilated-with-bias", "depthwise-frozen-bn", "bn-without-affine"],
)
def test_a_folded_conv_computes_conv_then_norm(conv, norm):
    reference, folded = folded_and_reference(nn.Sequential(conv, norm, nn.ReLU()))
    x = torch.randn(2, 4 if conv.groups == 1 else 6, 9, 11)
    assert isinstance(folded[1], nn.Identity) and folded[0].bias is not None
    torch.testing.assert_close(folded(x), reference(x), atol=ATOL, rtol=0)


class ConvNormAct(nn.Module):
    """A block written as most new ones are (ultralytics' ``Conv``): attributes, a hand-written forward."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x):
        return F.silu(self.bn(self.conv(x)))


class PreNormResidual(ConvNormAct):
    """The conv's own output is added after the norm: folding would change the added term."""

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


class DataDependent(ConvNormAct):
    """A forward symbolic tracing cannot follow."""

    def forward(self, x):
        return self.bn(self.conv(x)) if x.sum() > 0 else x


def test_blocks_are_traced_and_only_a_conv_feeding_the_norm_alone_is_folded():
    assert conv_norm_pairs(ConvNormAct(4).eval()) == [("conv", "bn")]
    assert conv_norm_pairs(PreNormResidual(4).eval()) == []
    assert conv_norm_pairs(DataDependent(4).eval()) == []
    reference, folded = folded_and_reference(nn.Sequential(ConvNormAct(4), PreNormResidual(4), CSPBlock(4, 8)))
    assert isinstance(folded[0].bn, nn.Identity) and isinstance(folded[1].bn, nn.BatchNorm2d)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded[2].modules())  # detkit's ConvBNAct, nested
    x = torch.randn(1, 4, 8, 8)
    torch.testing.assert_close(folded(x), reference(x), atol=ATOL, rtol=0)


def test_a_shared_norm_or_weight_or_a_norm_without_running_statistics_stays():
    shared = nn.BatchNorm2d(4)
    tied = nn.Conv2d(4, 4, 1)
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(4, 4, 1), shared),
        nn.Sequential(nn.Conv2d(4, 4, 1), shared),
        nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4, track_running_stats=False)),
        nn.Sequential(tied, nn.BatchNorm2d(4)),
        nn.Conv2d(4, 4, 1),
    ).eval()
    model[4].weight = tied.weight  # a tied weight: scaling it for one norm would scale the other layer too
    assert fold_batch_norms(model) == []


def test_training_mode_is_refused_and_a_folded_copy_leaves_the_model_alone():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="eval"):
        fold_batch_norms(model)
    before = copy.deepcopy(model.state_dict())
    folded = folded_copy(model.eval())
    assert set(model.state_dict()) == set(before) and all(torch.equal(model.state_dict()[k], before[k]) for k in before)
    assert set(folded.state_dict()) == {"0.weight", "0.bias"}
