import pytest
import torch

from detkit.evaluation.proposal_recall import RecallCounter


def test_recall_by_hand():
    counter = RecallCounter(["cat", "dog"])
    gt_boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [40.0, 40.0, 50.0, 50.0]])
    gt_labels = torch.tensor([0, 1, 1])
    proposals = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # IoU 1 with the cat
            [20.0, 20.0, 30.0, 36.0],  # IoU 100/160 = 0.625 with the first dog: >= 0.5, < 0.7
        ]
    )
    counter.add(proposals, gt_boxes, gt_labels)
    counter.add(torch.zeros((0, 4)), torch.tensor([[0.0, 0.0, 5.0, 5.0]]), torch.tensor([0]))  # nothing proposed
    counter.add(proposals, torch.zeros((0, 4)), torch.zeros((0,), dtype=torch.int64))  # nothing to find
    result = counter.result()
    assert result.num_images == 3 and result.num_objects == 4
    assert result.proposals_per_image == pytest.approx(4 / 3)
    assert result.recall == {0.5: pytest.approx(2 / 4), 0.7: pytest.approx(1 / 4)}
    assert result.per_class["cat"] == {0.5: pytest.approx(0.5), 0.7: pytest.approx(0.5)}
    assert result.per_class["dog"] == {0.5: pytest.approx(0.5), 0.7: pytest.approx(0.0)}
    assert result.objects_per_class == {"cat": 2, "dog": 2}
    as_dict = result.to_dict()
    assert as_dict["per_class"]["dog"] == {"objects": 2, "recall@0.5": 0.5, "recall@0.7": 0.0}


def test_no_objects_at_all_is_zero_not_a_division_error():
    counter = RecallCounter(["cat"])
    counter.add(torch.zeros((0, 4)), torch.zeros((0, 4)), torch.zeros((0,), dtype=torch.int64))
    assert counter.result().recall == {0.5: 0.0, 0.7: 0.0}
