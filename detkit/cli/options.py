"""Options several commands share, and the checks of their values (one ``ConfigError`` line each).

No torch import here: ``detkit --help`` must stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from detkit.engine.predict import ModelChoice

AllowOutsideImages = Annotated[
    bool,
    typer.Option(
        "--allow-outside-images",
        help="Read images whose file_name leads outside the image folder (absolute paths elsewhere, '..'); "
        "refused by default, since an annotation file chooses them.",
    ),
]


DeviceOption = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]

CheckpointOverrides = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="Override a test-time config value of the checkpoint: KEY=VALUE (repeatable)."),
]

ThreadsOption = Annotated[
    Optional[int],
    typer.Option(
        help="CPU threads for torch and OpenCV in this process (default: OMP_NUM_THREADS when set, else one "
        "fewer than the cores, at least 1: the fastest on a shared machine).",
    ),
]

SvdRankOption = Annotated[
    Optional[int],
    typer.Option(help="Truncated-SVD rank for the box head's FC layers (0 = off; default: the checkpoint's)."),
]


def apply_path_policy(allow_outside_images: bool) -> None:
    """Opt in to images outside their folder for this process and the ones it starts."""
    if allow_outside_images:
        from detkit.data.image_paths import allow_outside_images as allow

        allow()


def apply_threads(threads: int | None) -> int:
    """Check ``--threads`` and run this process's torch and OpenCV code on it (``engine.device.use_cpu_threads``);
    returns the count. Commands call it once, before they compute; ``detect`` and ``eval`` pass it in
    their ``ModelChoice`` instead, applied where the model is loaded."""
    check_range("--threads", threads, low=1)
    from detkit.engine.device import use_cpu_threads

    return use_cpu_threads(threads)


def check_range(option: str, value: float | int | None, *, low: float | None = None, high: float | None = None) -> None:
    """Refuse ``value`` outside ``[low, high]`` (either bound optional; None is "not given")."""
    import math

    from detkit.errors import ConfigError

    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{option} {value}: must be a finite number")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = (
            f"between {low:g} and {high:g}"
            if low is not None and high is not None
            else (f"at least {low:g}" if low is not None else f"at most {high:g}")
        )
        raise ConfigError(f"{option} {value}: must be {bounds}")


def model_choice(
    weights: Path | None,
    device: str,
    set_: list[str] | None,
    svd_rank: int | None,
    batch_size: int,
    score_thresh: float,
    threads: int | None = None,
) -> ModelChoice:
    """The model options ``detect`` and ``eval`` share, checked, as the engine's ``ModelChoice``."""
    from detkit.engine.predict import ModelChoice

    check_range("--score-thresh", score_thresh, low=0.0, high=1.0)
    check_range("--batch-size", batch_size, low=1)
    check_range("--svd-rank", svd_rank, low=0)
    check_range("--threads", threads, low=1)
    return ModelChoice(weights, device, tuple(set_ or ()), svd_rank, score_thresh, batch_size, threads)
