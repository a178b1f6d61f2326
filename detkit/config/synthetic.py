"""Where the embedded synthetic dataset lives, and the data config of the presets that train on it."""

from __future__ import annotations

from detkit.config.schema import DataConfig

SYNTHETIC_ROOT = "datasets/synthetic"


def synthetic_data(batch_size: int = 8) -> DataConfig:
    """Train and val splits of the synthetic shapes under ``SYNTHETIC_ROOT`` (``detkit data synth``)."""
    return DataConfig(
        train_annotations=f"{SYNTHETIC_ROOT}/annotations/instances_train.json",
        train_images=f"{SYNTHETIC_ROOT}/train",
        val_annotations=f"{SYNTHETIC_ROOT}/annotations/instances_val.json",
        val_images=f"{SYNTHETIC_ROOT}/val",
        batch_size=batch_size,
    )
