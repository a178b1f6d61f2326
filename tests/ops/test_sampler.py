import torch

from detkit.ops.matcher import BACKGROUND, FOREGROUND, IGNORE
from detkit.ops.sampler import sample_balanced


def test_fractions_respected():
    kind = torch.tensor([FOREGROUND] * 100 + [BACKGROUND] * 1000 + [IGNORE] * 50, dtype=torch.int8)
    fg, bg = sample_balanced(
        kind, batch_size_per_image=256, positive_fraction=0.25, generator=torch.Generator().manual_seed(0)
    )
    assert len(fg) == 64 and len(bg) == 192
    assert (kind[fg] == FOREGROUND).all() and (kind[bg] == BACKGROUND).all()
    assert len(set(fg.tolist())) == 64  # without replacement


def test_few_foreground_filled_with_background():
    kind = torch.tensor([FOREGROUND] * 3 + [BACKGROUND] * 1000, dtype=torch.int8)
    fg, bg = sample_balanced(kind, 128, 0.5)
    assert len(fg) == 3 and len(bg) == 125


def test_everything_ignored_samples_nothing():
    fg, bg = sample_balanced(torch.full((10,), IGNORE, dtype=torch.int8), 64, 0.5)
    assert fg.numel() == 0 and bg.numel() == 0
