import torch

from detkit.ops.box_coder import BoxCoder
from detkit.pipelines.rcnn.regression import fit_box_regressors, ridge


def test_ridge_recovers_a_linear_map_and_never_shrinks_the_bias():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(200, 5, generator=generator)
    true = torch.randn(5, 2, generator=generator)
    targets = inputs @ true + torch.tensor([10.0, -3.0])
    weight = ridge(inputs, targets, ridge_lambda=1e-6)
    torch.testing.assert_close(weight[:5], true, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(weight[5], torch.tensor([10.0, -3.0]), rtol=1e-4, atol=1e-4)
    heavy = ridge(inputs, targets, ridge_lambda=1e9)
    assert heavy[:5].abs().max() < 1e-3  # weights shrunk to nothing...
    torch.testing.assert_close(heavy[5], targets.mean(0), rtol=1e-3, atol=1e-3)  # ...the bias fits the mean


def test_box_regressors_learn_a_constant_shift_from_close_proposals_only():
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    gt = torch.tensor([[10.0, 10.0, 50.0, 50.0]]).repeat(6, 1)
    boxes = gt + torch.tensor([2.0, 0.0, 2.0, 0.0])  # every close proposal is 2 px right of its box
    boxes[5] = torch.tensor([60.0, 60.0, 90.0, 90.0])  # far off: IoU too low to learn from
    features = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    labels = torch.zeros(6, dtype=torch.int64)
    max_iou = torch.tensor([0.9, 0.9, 0.9, 0.9, 0.9, 0.1])
    weight, counts = fit_box_regressors(
        features, boxes, gt, labels, max_iou, torch.zeros(6, dtype=torch.bool), 2, 0.6, 1e6, coder
    )
    assert counts == [5, 0] and weight[1].abs().sum() == 0
    augmented = torch.cat([features, torch.ones(6, 1)], 1)
    refined = coder.decode(augmented[:5] @ weight[0], boxes[:5])[:, 0]
    torch.testing.assert_close(refined, gt[:5], rtol=1e-4, atol=1e-3)
