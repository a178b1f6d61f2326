import torch

from detkit.config import RCNNConfig
from detkit.pipelines.rcnn.svm import train_svms


def toy_regions(num_negatives=400, seed=0):
    """Class 0 positives around +x, class 1 around +y; negatives around the origin, some near each class."""
    generator = torch.Generator().manual_seed(seed)
    pos0 = torch.randn(20, 2, generator=generator) * 0.2 + torch.tensor([3.0, 0.0])
    pos1 = torch.randn(20, 2, generator=generator) * 0.2 + torch.tensor([0.0, 3.0])
    negatives = torch.randn(num_negatives, 2, generator=generator) * 0.5
    negatives[:20] += torch.tensor([1.8, 0.0])  # hard negatives for class 0, rare in a random draw
    features = torch.cat([pos0, pos1, negatives])
    is_gt = torch.arange(len(features)) < 40
    labels = torch.cat(
        [torch.zeros(20, dtype=torch.int64), torch.ones(20, dtype=torch.int64), torch.full((num_negatives,), -1)]
    )
    class_iou = torch.zeros(len(features), 2)  # every proposal overlaps nothing: a negative for both classes
    return features, is_gt, labels, class_iou


def test_svms_separate_and_hard_negatives_are_mined():
    features, is_gt, labels, class_iou = toy_regions()
    cfg = RCNNConfig(svm_initial_negatives=30, svm_hard_negative_rounds=4, svm_steps=300, svm_l2=1e-3)
    rounds = []
    generator = torch.Generator().manual_seed(0)
    weight, bias = train_svms(features, is_gt, labels, class_iou, cfg, 2, rounds.append, generator)
    margins = features @ weight.T + bias
    assert (margins[:20, 0] > 0).all() and (margins[20:40, 1] > 0).all()
    assert (margins[40:, 0] < 0).float().mean() > 0.97 and (margins[40:, 1] < 0).float().mean() > 0.97
    first_round = [r for r in rounds if r.label == 0][0]
    assert first_round.negatives == 30 and first_round.new_hard_negatives > 0
    assert max(r.negatives for r in rounds if r.label == 0) > 30


def test_overlapping_proposals_are_not_negatives_and_absent_classes_stay_zero():
    features, is_gt, labels, _ = toy_regions()
    class_iou = torch.zeros(len(features), 3)
    class_iou[40:60, 0] = 0.6  # proposals that overlap class 0's boxes: not negatives for class 0
    cfg = RCNNConfig(svm_initial_negatives=10000, svm_hard_negative_rounds=1, svm_steps=10)
    rounds = []
    weight, bias = train_svms(features, is_gt, labels, class_iou, cfg, 3, rounds.append)
    assert {r.label: r.negatives for r in rounds} == {0: 380, 1: 400}  # class 2 has no positives: not trained
    assert weight[2].abs().sum() == 0 and bias[2] == 0
