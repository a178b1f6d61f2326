"""Writing YOLO (the Ultralytics layout): ``images/<split>/``, ``labels/<split>/*.txt``, ``data.yaml``.

Each label line is ``class cx cy w h``, normalised by the image's width and height and written with
6 decimals (the precision Ultralytics' own converters use: under 0.001 px of error on a 1000 px
image), from the box clipped to the image: Ultralytics refuses a label file with a coordinate
outside ``[0, 1]``. Boxes under 1 px after clipping are dropped, and so are crowd regions (YOLO has
no ignore regions; Ultralytics' COCO converter drops them too); VOC ``difficult`` objects become
ordinary labels, as YOLO has no such flag. Masks are not written: these are detection labels.
Every image gets a label file, empty when it has no objects.

Images are hard-linked into ``images/<split>/`` (copied across file systems) under their
``file_name`` relative path, so sub-folders are kept. ``data.yaml`` has ``names`` (index -> name),
``nc`` (for YOLOv5-era tools) and one key per split; it has no ``path:`` so that every tool resolves
the splits against the yaml's own folder. Ultralytics trains on the ``train`` and ``val`` keys:
name the splits so (``--split``) when converting a COCO file.

The whole folder is built beside ``out`` and renamed into place: a failed conversion leaves nothing.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import yaml

from detkit.data.formats.marker import mark_folder
from detkit.data.formats.placing import PlacementCounts, place_image, safe_relative
from detkit.data.formats.report import ConversionReport, SplitSummary
from detkit.data.formats.split import DatasetSplit, ExportObject, fill_image_sizes, objects_by_image
from detkit.errors import DataError
from detkit.io import atomic_directory, atomic_write_text

DATA_YAML = "data.yaml"


def write_yolo(splits: list[DatasetSplit], out: Path, *, replace: bool = False) -> ConversionReport:
    """Write ``splits`` as one YOLO folder at ``out``; see the module docstring."""
    names = _shared_class_names(splits)
    report = ConversionReport(out, "yolo")
    counts = PlacementCounts()
    with atomic_directory(out, replace=replace) as tmp:
        mark_folder(tmp, "yolo")
        for split in splits:
            fill_image_sizes(split)
            objects, export_counts = objects_by_image(split, crowd_as_difficult=False)
            _write_split(tmp, split, objects, counts)
            written = sum(len(v) for v in objects.values())
            report.splits.append(SplitSummary.of(split, out / "images" / split.name, num_annotations=written))
            report.notes += [f"{split.name}: {note}" for note in split.notes + export_counts.notes("YOLO")]
        atomic_write_text(tmp / DATA_YAML, _data_yaml(names, [split.name for split in splits]))
    report.notes.append(counts.note())
    return report


def _shared_class_names(splits: list[DatasetSplit]) -> list[str]:
    names = splits[0].class_names
    for split in splits[1:]:
        if split.class_names != names:
            raise DataError(
                f"splits '{splits[0].name}' and '{split.name}' have different classes "
                f"({names} vs {split.class_names}); a YOLO dataset has one class list: convert them separately"
            )
    return names


def _write_split(
    tmp: Path, split: DatasetSplit, objects: dict[int, list[ExportObject]], counts: PlacementCounts
) -> None:
    used_stems: set[PurePosixPath] = set()
    for image in split.coco["images"]:
        relative = _unique(safe_relative(image["file_name"]), used_stems)
        place_image(split.image_dir / image["file_name"], tmp / "images" / split.name / relative, counts)
        lines = "".join(_label_line(o, image["width"], image["height"]) for o in objects[image["id"]])
        atomic_write_text(tmp / "labels" / split.name / relative.with_suffix(".txt"), lines)


def _unique(relative: PurePosixPath, used_stems: set[PurePosixPath]) -> PurePosixPath:
    """``relative``, or ``name_2.ext``, ``name_3.ext``... when another image already has its path
    without extension (their label files would collide: Ultralytics pairs them by stem)."""
    candidate, number = relative, 2
    while candidate.with_suffix("") in used_stems:
        candidate, number = relative.with_name(f"{relative.stem}_{number}{relative.suffix}"), number + 1
    used_stems.add(candidate.with_suffix(""))
    return candidate


def _label_line(voc_object: ExportObject, width: float, height: float) -> str:
    x1, y1, x2, y2 = voc_object.box
    cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
    w, h = (x2 - x1) / width, (y2 - y1) / height
    return f"{voc_object.label} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n"


def _data_yaml(names: list[str], split_names: list[str]) -> str:
    data = {"names": dict(enumerate(names)), "nc": len(names)}
    data.update({name: f"images/{name}" for name in split_names})
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
