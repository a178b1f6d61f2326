"""``detkit data check [--fix]``: check any dataset path, and write a cleaned copy when asked.

A VOC or YOLO split is converted first (through the dataset cache); the report is of its COCO form.
The cleaned copy is written atomically, never over the file checked, and checked again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from detkit.data.check import CheckReport, check_coco, check_dataset
from detkit.data.coco_fields import read_coco_json
from detkit.data.fix import FixResult, fix_dataset
from detkit.data.formats import default_splits, detect_format, resolve_dataset
from detkit.errors import DataError
from detkit.io import same_file


@dataclass(frozen=True)
class CheckOutcome:
    """What checking found (``report``); with ``--fix``, what was changed and the cleaned file's report."""

    split: str | None  # the VOC/YOLO split checked; None for a COCO json
    notes: tuple[str, ...]
    report: CheckReport
    fix: FixResult | None = None
    after: CheckReport | None = None

    @property
    def has_errors(self) -> bool:
        return bool((self.after or self.report).errors)


def check_and_fix(
    annotations: Path,
    images: Path | None,
    split: str | None,
    fix: Path | None,
    progress: Callable[[int, int], None] | None = None,
) -> CheckOutcome:
    """Check ``annotations`` (a COCO json, VOC folder or YOLO dataset); with ``fix``, write a cleaned copy there.
    ``progress(done, total)`` follows the image decoding."""
    if fix is not None and os.path.lexists(fix) and same_file(fix, annotations):
        raise DataError(
            f"--fix {fix}: is the file being checked; "
            "write the cleaned copy to another path (the original stays as it is)"
        )
    if detect_format(annotations) != "coco":
        split = split or default_splits(annotations)[0]
    source = resolve_dataset(annotations, split, images)
    report = check_dataset(source.annotations, source.images, progress=progress)
    if fix is None:
        return CheckOutcome(split, source.notes, report)
    result = fix_dataset(source.annotations, report.images, fix, image_dir=source.images)
    after = check_coco(read_coco_json(fix), fix, source.images, images=report.images)
    return CheckOutcome(split, source.notes, report, result, after)
