import torch

from detkit.modeling.yolo.assigner import simota_assign
from detkit.modeling.yolo.decode import grid_points


def points_of(size=64, strides=(8, 16, 32)):
    feature_sizes = [(size // s, size // s) for s in strides]
    return grid_points(feature_sizes, list(strides), torch.device("cpu"))


def test_no_boxes_means_no_foreground():
    points, strides = points_of()
    assignment = simota_assign(
        torch.zeros(len(points), 4),
        torch.full((len(points), 3), 0.5),
        points,
        strides,
        torch.zeros(0, 4),
        torch.zeros(0, dtype=torch.int64),
    )
    assert not assignment.foreground.any() and assignment.num_foreground == 0


def test_perfect_prediction_is_assigned_inside_its_box_with_iou_one():
    points, strides = points_of()
    gt = torch.tensor([[8.0, 8.0, 40.0, 40.0]])
    pred_boxes = gt.expand(len(points), 4).clone()
    scores = torch.full((len(points), 2), 0.5)
    assignment = simota_assign(pred_boxes, scores, points, strides, gt, torch.tensor([1]))
    # every prediction has IoU 1: dynamic k = min(10, candidates) and only points in box and centre win
    assert assignment.num_foreground == 10
    fg_points = points[assignment.foreground]
    assert ((fg_points > 8) & (fg_points < 40)).all()
    assert torch.allclose(assignment.matched_iou, torch.ones(10))
    assert (assignment.matched_gt == 0).all()


def test_dynamic_k_follows_the_sum_of_top_ious():
    points, strides = points_of()
    gt = torch.tensor([[8.0, 8.0, 40.0, 40.0]])
    # predictions half-overlapping the box: IoU 0.5 everywhere -> k = round-down(10 * 0.5) = 5
    pred_boxes = torch.tensor([[8.0, 8.0, 40.0, 24.0]]).expand(len(points), 4).clone()
    assignment = simota_assign(pred_boxes, torch.full((len(points), 2), 0.5), points, strides, gt, torch.tensor([0]))
    assert assignment.num_foreground == 5


def test_a_point_claimed_by_two_boxes_goes_to_the_cheaper_one():
    points, strides = points_of()
    # two identical boxes of different classes; the model is sure of class 1
    gt = torch.tensor([[8.0, 8.0, 40.0, 40.0], [8.0, 8.0, 40.0, 40.0]])
    pred_boxes = gt[:1].expand(len(points), 4).clone()
    scores = torch.tensor([0.01, 0.99]).expand(len(points), 2).clone()
    assignment = simota_assign(pred_boxes, scores, points, strides, gt, torch.tensor([0, 1]))
    assert assignment.num_foreground == 10  # no point counted twice
    assert (assignment.matched_gt == 1).all()


def test_tiny_box_between_points_still_gets_one_point_from_the_centre_prior():
    points, strides = points_of()
    gt = torch.tensor([[17.0, 17.0, 19.0, 19.0]])  # contains no cell centre (those sit at 4 + 8k)
    pred_boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0]]).expand(len(points), 4).clone()
    assignment = simota_assign(pred_boxes, torch.full((len(points), 1), 0.5), points, strides, gt, torch.tensor([0]))
    assert assignment.num_foreground == 1
    assert assignment.matched_iou.item() == 0.0
