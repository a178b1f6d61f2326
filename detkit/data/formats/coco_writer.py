"""Writing COCO instances json: one file, or a folder of ``annotations/instances_<split>.json``.

Images are referenced, not copied: each ``file_name`` stays relative to the split's image folder,
which the report names (pass it as ``--images``). Boxes are COCO ``[x, y, w, h]`` pixels as the
readers produced them, unclipped: clipping is the consumer's business (``CocoDetection`` clips),
and ``detkit data check`` reports boxes outside their image. Ids are kept (the VOC and YOLO readers
number from 1). A single file is written atomically; a folder is built beside its destination
and renamed into place, so a failed conversion leaves nothing.
"""

from __future__ import annotations

from pathlib import Path

from detkit.data.formats.marker import mark_coco, mark_folder
from detkit.data.formats.report import ConversionReport, SplitSummary
from detkit.data.formats.split import DatasetSplit
from detkit.errors import DataError
from detkit.io import atomic_directory, atomic_write_json


def write_coco(splits: list[DatasetSplit], out: Path, *, replace: bool = False) -> ConversionReport:
    """Write ``splits`` to ``out``: a ``.json`` path takes exactly one split, any other path becomes
    a folder with ``annotations/instances_<split>.json``."""
    report = ConversionReport(out, "coco")
    if out.suffix.lower() == ".json":
        if len(splits) != 1:
            names = ", ".join(split.name for split in splits)
            raise DataError(
                f"{out}: one .json file holds one split, and the source has {len(splits)} ({names}); "
                "pass --split NAME, or an output folder"
            )
        if out.exists() and not replace:
            raise FileExistsError(out)
        atomic_write_json(out, mark_coco(splits[0].coco))
        report.splits.append(SplitSummary.of(splits[0], splits[0].image_dir, out))
    else:
        with atomic_directory(out, replace=replace) as tmp:
            mark_folder(tmp, "coco")
            for split in splits:
                relative = Path("annotations") / f"instances_{split.name}.json"
                atomic_write_json(tmp / relative, split.coco)
                report.splits.append(SplitSummary.of(split, split.image_dir, out / relative))
    report.notes += [f"{split.name}: {note}" for split in splits for note in split.notes]
    report.notes.append("images are referenced, not copied: pass each split's image folder as --images")
    return report
