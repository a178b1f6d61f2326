"""torchvision detector files for tests: seeded random weights saved as a user's ``.pth`` would be."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision


def save_random_mobilenet_320(path: Path, seed: int = 0) -> Path:
    """A seeded random ``fasterrcnn_mobilenet_v3_large_320_fpn`` state dict (91 COCO outputs) at ``path``:
    the smallest torchvision COCO detector, 74 MiB. Include "320" in the name: detkit imports a file so
    named as torchvision's 320 px variant, as it does the published one."""
    torch.manual_seed(seed)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None)
    torch.save(model.state_dict(), path)
    return path
