"""Dataset formats: COCO json, Pascal VOC and YOLO (Ultralytics) read and written both ways.

Every reader produces a ``DatasetSplit`` (a COCO dict + its image folder), every writer consumes
one; ``resolve_dataset`` turns any dataset path into a COCO json for training, through a cache.
Boxes are COCO ``[x, y, w, h]`` absolute pixels inside, detkit's xyxy pixels at the edges.
"""

from detkit.data.formats.cache import CocoSource, default_cache_dir, default_splits, evaluation_split, resolve_dataset
from detkit.data.formats.convert import convert_dataset, read_source, read_split
from detkit.data.formats.detect import FORMATS, detect_format
from detkit.data.formats.report import ConversionReport, SplitSummary
from detkit.data.formats.split import DatasetSplit

__all__ = [
    "FORMATS",
    "CocoSource",
    "ConversionReport",
    "DatasetSplit",
    "SplitSummary",
    "convert_dataset",
    "default_cache_dir",
    "default_splits",
    "detect_format",
    "evaluation_split",
    "read_source",
    "read_split",
    "resolve_dataset",
]
