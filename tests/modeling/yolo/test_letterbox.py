import torch

from detkit.modeling.yolo.letterbox import LetterboxTransform
from detkit.structures import Detections, Target

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def transform(letterbox=True, train_sizes=()):
    return LetterboxTransform(128, train_sizes, letterbox, MEAN, STD)


def test_eval_keeps_aspect_and_pads_to_the_stride_only():
    images = [torch.rand(3, 300, 400), torch.rand(3, 100, 50)]
    target = Target(boxes=torch.tensor([[40.0, 30.0, 400.0, 300.0]]), labels=torch.tensor([0]))
    batch, targets = transform().eval()(images, [target, Target()])
    assert batch.image_sizes == [(96, 128), (128, 64)] and batch.original_sizes == [(300, 400), (100, 50)]
    assert batch.tensors.shape == (2, 3, 128, 128)
    assert torch.allclose(targets[0].boxes, torch.tensor([[12.8, 9.6, 128.0, 96.0]]))
    assert batch.tensors[0, :, 96:].abs().max() == 0  # padding is the mean colour


def test_training_pads_to_the_square_side_picked_for_the_batch():
    module = transform(train_sizes=(64, 96)).train()
    sides = set()
    for _ in range(20):
        batch, _ = module([torch.rand(3, 30, 60)], [Target()])
        sides.add(batch.tensors.shape[-1])
        assert batch.tensors.shape[-2] == batch.tensors.shape[-1]
    assert sides == {64, 96}


def test_stretch_mode_and_postprocess_map_back_to_the_original_frame():
    module = transform(letterbox=False).eval()
    batch, _ = module([torch.rand(3, 64, 256)])
    assert batch.image_sizes == [(128, 128)]
    detections = [
        Detections(
            boxes=torch.tensor([[0.0, 0.0, 64.0, 64.0], [100.0, 100.0, 140.0, 140.0]]),
            scores=torch.tensor([0.9, 0.8]),
            labels=torch.tensor([0, 1]),
        )
    ]
    mapped = module.postprocess(detections, batch)[0]
    assert torch.allclose(mapped.boxes, torch.tensor([[0.0, 0.0, 128.0, 32.0], [200.0, 50.0, 256.0, 64.0]]))
