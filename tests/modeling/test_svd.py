import torch
from torch import nn

from detkit.modeling.box_head import MLPBoxHead
from detkit.modeling.svd import truncated_svd_linear


def test_a_rank_that_saves_nothing_keeps_the_layer():
    layer = nn.Linear(40, 12)
    assert truncated_svd_linear(layer, 12) is layer  # 12 * (40 + 12) > 40 * 12
    assert truncated_svd_linear(layer, 0) is layer


def test_factors_have_the_papers_shapes():
    factored = truncated_svd_linear(nn.Linear(64, 48), 16)
    assert isinstance(factored, nn.Sequential) and factored[0].bias is None and factored[1].bias is not None
    assert factored[0].weight.shape == (16, 64) and factored[1].weight.shape == (48, 16)


def test_truncation_error_is_the_dropped_singular_values():
    torch.manual_seed(0)
    layer = nn.Linear(64, 48)
    rank = 8
    factored = truncated_svd_linear(layer, rank)
    inputs = torch.eye(64)  # the outputs minus the bias are the columns of W (its approximation)
    approx = (factored(inputs) - layer.bias).T
    singular = torch.linalg.svdvals(layer.weight.detach().double())
    error = torch.linalg.matrix_norm((layer.weight.detach() - approx).double())
    torch.testing.assert_close(error, singular[rank:].norm(), rtol=1e-4, atol=1e-6)


def test_box_head_of_low_rank_is_reproduced():
    torch.manual_seed(0)
    head = MLPBoxHead(32 * 7 * 7, 256).eval()
    with torch.no_grad():  # rank-16 weights: a rank-16 factorization loses nothing
        head.fc6.weight.copy_(torch.randn(256, 16) @ torch.randn(16, 32 * 7 * 7) / 40)
        head.fc7.weight.copy_(torch.randn(256, 16) @ torch.randn(16, 256) / 16)
    pooled = torch.randn(10, 32, 7, 7)
    with torch.no_grad():
        before = head(pooled)
        head.truncate(16)
        after = head(pooled)
    assert isinstance(head.fc6, nn.Sequential) and isinstance(head.fc7, nn.Sequential)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
