"""The two-steps-of-training check every pipeline's smoke test shares."""

import torch


def train_two_steps(model, images, targets, expected_losses: set[str]) -> None:
    """Two SGD steps in train mode: no detections, exactly ``expected_losses``, all finite."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    for _ in range(2):
        output = model(images, targets)
        assert output.detections is None
        assert set(output.losses) == expected_losses
        loss = sum(output.losses.values())
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
