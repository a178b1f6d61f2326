"""Matching eager and exported detections: what agrees, what is float noise at the edge, what fails."""

from __future__ import annotations

import torch

from detkit.export.fixed_size import fit, restore
from detkit.export.verify import FP32_TOLERANCE, Agreement, compare_detections
from detkit.structures import Detections

EAGER = Detections(
    boxes=torch.tensor([[10.0, 10.0, 30.0, 40.0], [50.0, 5.0, 70.0, 25.0], [0.0, 0.0, 8.0, 8.0]]),
    scores=torch.tensor([0.9, 0.7, 0.3]),
    labels=torch.tensor([1, 0, 2]),
)


def compare(exported: Detections, eager: Detections = EAGER, thresh: float = 0.25, capacity: int = 100) -> Agreement:
    return compare_detections(
        eager,
        exported,
        FP32_TOLERANCE,
        score_thresh=thresh,
        detections_per_image=capacity,
        nms_thresh=NMS,
        into=Agreement(),
    )


NMS = 0.5


def test_the_same_detections_in_another_order_agree():
    order = torch.tensor([2, 0, 1])
    agreement = compare(EAGER.filter(order))
    assert agreement.passes(FP32_TOLERANCE) and agreement.matched == 3
    assert agreement.max_box_diff == 0.0 and agreement.max_score_diff == 0.0


def test_a_moved_box_fails_and_says_by_how_much():
    moved = Detections(EAGER.boxes + torch.tensor([0.0, 0.0, 1.5, 0.0]), EAGER.scores, EAGER.labels)
    agreement = compare(moved)
    assert agreement.max_box_diff == 1.5 and not agreement.passes(FP32_TOLERANCE)
    assert "a box differs by 1.5 px" in agreement.failures(FP32_TOLERANCE)[0]


def test_another_label_fails():
    agreement = compare(Detections(EAGER.boxes, EAGER.scores, torch.tensor([1, 3, 2])))
    assert not agreement.labels_agree and "labels differ" in agreement.failures(FP32_TOLERANCE)


def test_a_missing_detection_fails_unless_at_the_score_edge():
    assert not compare(EAGER.filter(torch.tensor([0, 2]))).passes(FP32_TOLERANCE)  # the 0.7 one: fails
    at_edge = Detections(EAGER.boxes, torch.tensor([0.9, 0.7, 0.2502]), EAGER.labels)
    agreement = compare(at_edge.filter(torch.tensor([0, 1])), eager=at_edge)  # 0.2502: 2e-4 over 0.25
    assert agreement.passes(FP32_TOLERANCE) and agreement.borderline == 1
    # A full list (capacity 3) drops its last detection at the cut: the edge is its lowest score.
    agreement = compare(EAGER.filter(torch.tensor([0, 1])), thresh=0.0, capacity=3)
    assert agreement.passes(FP32_TOLERANCE) and agreement.borderline == 1


def _detections(boxes: list[list[float]], scores: list[float]) -> Detections:
    return Detections(torch.tensor(boxes), torch.tensor(scores), torch.zeros(len(boxes), dtype=torch.long))


# IoU(A, B) is NMS's threshold, 0.5, exactly; C is B moved 1.5 px: IoU(B, C) = 0.90, IoU(A, C) = 0.45, so
# B suppresses C and A does not.
A, B, C = [0.0, 0.0, 30.0, 10.0], [10.0, 0.0, 40.0, 10.0], [11.5, 0.0, 41.5, 10.0]


def test_a_box_at_the_nms_threshold_may_flip_and_what_it_suppresses_with_it():
    eager = _detections([A, C], [0.9, 0.5])  # B suppressed by A (its IoU a hair over 0.5 on this side)
    exported = _detections([A, B], [0.9, 0.8])  # B kept (a hair under), and B suppresses C
    agreement = compare(exported, eager=eager)
    assert agreement.passes(FP32_TOLERANCE), agreement.failures(FP32_TOLERANCE)
    assert agreement.matched == 1 and agreement.nms_flips == 2 and "2 at the NMS edge unmatched" in agreement.summary()


def test_a_box_far_past_the_nms_threshold_is_no_flip():
    inside = [2.0, 0.0, 32.0, 10.0]  # IoU with A 0.88: no float noise keeps it beside A
    agreement = compare(_detections([A, inside], [0.9, 0.8]), eager=_detections([A], [0.9]))
    assert not agreement.passes(FP32_TOLERANCE) and agreement.unmatched == 1 and agreement.nms_flips == 0
    # Nor is a flip that explains a box it does not overlap past the threshold.
    far = [100.0, 0.0, 130.0, 10.0]
    agreement = compare(_detections([A, B], [0.9, 0.8]), eager=_detections([A, far], [0.9, 0.5]))
    assert not agreement.passes(FP32_TOLERANCE) and agreement.nms_flips == 1 and agreement.unmatched == 1


def test_neighbours_of_near_equal_score_may_swap_but_not_everywhere():
    """Each side kept the neighbour it scored higher (IoU 0.82, scores 2e-4 apart): an order flip, once."""
    beside = [2.0, 0.0, 32.0, 10.0]
    agreement = compare(_detections([beside], [0.9002]), eager=_detections([A], [0.9]))
    assert agreement.passes(FP32_TOLERANCE) and agreement.nms_flips == 2 and agreement.matched == 0
    # Every box of an image moved by 2 px is no float noise, however alike the scores.
    far_apart = [[0.0, 0.0, 30.0, 10.0], [100.0, 0.0, 130.0, 10.0], [200.0, 0.0, 230.0, 10.0]]
    moved = [[x0 + 2, y0, x1 + 2, y1] for x0, y0, x1, y1 in far_apart]
    agreement = compare(_detections(moved, [0.9, 0.8, 0.7]), eager=_detections(far_apart, [0.9, 0.8, 0.7]))
    assert not agreement.passes(FP32_TOLERANCE) and agreement.nms_flips == 2


def test_half_precision_allows_a_few_unexplained_detections_and_says_so():
    from detkit.export.verify import FP16_TOLERANCE

    many = _detections([[10.0 * i, 0.0, 10.0 * i + 8, 8.0] for i in range(100)], [0.9 - 0.005 * i for i in range(100)])
    one_missing = many.filter(torch.arange(1, 100))
    agreement = compare_detections(
        many, one_missing, FP16_TOLERANCE, score_thresh=0.05, detections_per_image=300, nms_thresh=NMS, into=Agreement()
    )
    assert agreement.passes(FP16_TOLERANCE) and "1 unexplained unmatched" in agreement.summary()
    assert not compare(one_missing, eager=many).passes(FP32_TOLERANCE)  # float32: none
    two_missing = many.filter(torch.arange(2, 100))
    agreement = compare_detections(
        many, two_missing, FP16_TOLERANCE, score_thresh=0.05, detections_per_image=300, nms_thresh=NMS, into=Agreement()
    )
    assert not agreement.passes(FP16_TOLERANCE)


def test_masks_are_compared_by_iou():
    masks = torch.zeros(3, 50, 80)
    masks[0, 10:40, 10:30] = 0.9
    eager = Detections(EAGER.boxes, EAGER.scores, EAGER.labels, masks)
    shifted = masks.clone()
    shifted[0] = torch.roll(masks[0], 10, dims=0)
    agreement = compare(Detections(EAGER.boxes, EAGER.scores, EAGER.labels, shifted), eager=eager)
    assert agreement.min_mask_iou == 0.5 and not agreement.passes(FP32_TOLERANCE)


def test_letterboxing_maps_detections_back_to_the_image():
    pixels = torch.randint(0, 255, (3, 30, 60), dtype=torch.uint8)
    fitted = fit(pixels, (64, 64), torch.tensor([1, 2, 3], dtype=torch.uint8))
    assert fitted.pixels.shape == (3, 64, 64) and fitted.content == (32, 64) and fitted.scale == 64 / 60
    assert fitted.pixels[:, 32:].flatten(1).unique(dim=1).tolist() == [[1], [2], [3]]  # the fill colour below
    on_canvas = Detections(
        boxes=torch.tensor([[0.0, 0.0, 64.0, 32.0], [32.0, 16.0, 64.0, 64.0]]),
        scores=torch.tensor([0.9, 0.8]),
        labels=torch.tensor([0, 1]),
        masks=torch.ones(2, 64, 64),
    )
    back = restore(on_canvas, fitted)
    assert torch.allclose(back.boxes, torch.tensor([[0.0, 0.0, 60.0, 30.0], [30.0, 15.0, 60.0, 30.0]]))
    assert back.masks is not None and back.masks.shape == (2, 30, 60)
