"""detkit: the classic object detectors, trained, run, evaluated and timed side by side.

``detkit.load(weights)`` returns a ``Detector`` (see ``detkit.api``). Importing detkit imports no
torch: that waits for the first ``load``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from detkit.version import __version__

if TYPE_CHECKING:
    from detkit.api import Detector


def load(
    weights: str | os.PathLike[str] | None = None,
    *,
    device: str = "auto",
    score_thresh: float | None = None,
    overrides: Sequence[str] = (),
) -> Detector:
    """The detector in ``weights``: a ``detkit train`` checkpoint, a torchvision ``.pth``, a name from
    ``detkit models`` (downloaded once) or None (the last run); see ``detkit.api.load``."""
    from detkit.api import load as load_detector

    return load_detector(weights, device=device, score_thresh=score_thresh, overrides=overrides)


__all__ = ["__version__", "load"]
