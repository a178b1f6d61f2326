"""What a conversion wrote, for the CLI to show: per split counts, where the images are, notes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from detkit.data.formats.split import DatasetSplit


@dataclass(frozen=True)
class SplitSummary:
    """One written split: its name, counts, class names in label order, and the folder its
    images are in (for COCO output: the ``--images`` to pass with the json)."""

    name: str
    num_images: int
    num_annotations: int
    class_names: tuple[str, ...]
    image_dir: Path
    annotation_file: Path | None = None

    @classmethod
    def of(
        cls,
        split: DatasetSplit,
        image_dir: Path,
        annotation_file: Path | None = None,
        num_annotations: int | None = None,
    ) -> SplitSummary:
        count = split.num_annotations if num_annotations is None else num_annotations
        return cls(split.name, split.num_images, count, tuple(split.class_names), image_dir, annotation_file)


@dataclass
class ConversionReport:
    """The output path, its format, each split written and one-line notes on what changed."""

    output: Path
    format: str
    splits: list[SplitSummary] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
