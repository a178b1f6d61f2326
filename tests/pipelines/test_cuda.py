"""The CUDA path: mixed-precision training steps and detection on the GPU. Skipped without CUDA."""

import pytest
import torch

from detkit.pipelines import PIPELINES

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_amp_training_steps_and_detection_on_cuda(tiny_model_config, tiny_batch):
    images, targets = tiny_batch
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = PIPELINES["faster_rcnn"].build(tiny_model_config).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda")
    images = [image.to(device) for image in images]
    targets = [target.to(device) for target in targets]
    for _ in range(2):
        with torch.autocast("cuda"):
            losses = model(images, targets).losses
        loss = sum(losses.values())
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    model.eval()
    with torch.no_grad(), torch.autocast("cuda"):
        detections = model(images).detections
    assert all(d.boxes.device.type == "cuda" and torch.isfinite(d.boxes).all() for d in detections)
