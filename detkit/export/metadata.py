"""What an exported file says about itself: the contract of its inputs and outputs, and detkit's facts.

Every exported file holds the same string key/value pairs: ONNX ``metadata_props``, TorchScript
``_extra_files``. Values are JSON except where plain text reads better:

    detkit.format        "detkit-export-v1"
    detkit.version       the detkit that wrote it
    detkit.pipeline      faster_rcnn, mask_rcnn, fast_rcnn, yolo (or rcnn with detkit.part "cnn")
    detkit.part          "detector" (the whole detector), "cnn" (R-CNN's region CNN)
    detkit.class_names   ["cat", ...]: label k is class_names[k]
    detkit.category_ids  [17, ...]: the dataset's category id of label k
    detkit.inputs        [{"name": "image", "dtype": "uint8", "shape": [3, "H", "W"], ...}, ...]
    detkit.outputs       [{"name": "boxes", "dtype": "float32", "shape": ["D", 4], ...}, ...]
    detkit.input_size    [H, W]: the one size a fixed-size file takes, the example size of a dynamic one
    detkit.dynamic       true: any H, W; false: only input_size
    detkit.normalization {"scale": 1/255, "mean": [...], "std": [...]}: done inside the graph
    detkit.precision     "fp32" or "fp16" (the networks; inputs and outputs are as listed)
    detkit.score_thresh  the threshold inside the graph: a runner may raise it, never lower it
    detkit.detections_per_image
    detkit.exporter      how it was made, e.g. "torch.onnx.export (dynamo), opset 18"
    detkit.config        the checkpoint's resolved config

Reading checks every field and names the file and the field of anything wrong (``CheckpointError``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NoReturn

from detkit.errors import CheckpointError, shown

FORMAT = "detkit-export-v1"
PREFIX = "detkit."
PARTS = ("detector", "cnn")
FIELDS = (
    "format", "version", "pipeline", "part", "class_names", "category_ids", "inputs", "outputs", "input_size",
    "dynamic", "normalization", "precision", "score_thresh", "detections_per_image", "exporter", "config",
)  # fmt: skip
KEYS = tuple(PREFIX + name for name in FIELDS)  # TorchScript reads only the extra files it is asked for


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the graph, as the metadata describes it (``"H"``, ``"D"``: sizes that vary)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    meaning: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "meaning": self.meaning}


IMAGE = TensorSpec("image", "uint8", (3, "H", "W"), "RGB pixels, channels first, as decoded")
PROPOSALS = TensorSpec("proposals", "float32", ("P", 4), "region proposals, xyxy pixels of the image")
CROPS = TensorSpec("crops", "float32", ("R", 3, "S", "S"), "warped region crops, normalized (R-CNN)")
BOXES = TensorSpec("boxes", "float32", ("D", 4), "xyxy pixels of the input image, best first")
SCORES = TensorSpec("scores", "float32", ("D",), "in [0, 1], descending")
LABELS = TensorSpec("labels", "int64", ("D",), "class index k in [0, K): detkit.class_names[k]")
MASKS = TensorSpec("masks", "float32", ("D", "H", "W"), "per-detection mask probabilities in the image")
FEATURES = TensorSpec("features", "float32", ("R", "F"), "CNN features of each crop (R-CNN)")


@dataclass(frozen=True)
class ExportMetadata:
    pipeline: str
    class_names: tuple[str, ...]
    category_ids: tuple[int, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    input_size: tuple[int, int]
    dynamic: bool
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]
    precision: str
    score_thresh: float
    detections_per_image: int
    exporter: str
    detkit_version: str
    config: dict[str, Any] = field(default_factory=dict)
    part: str = "detector"

    @property
    def needs_proposals(self) -> bool:
        return any(t.name == PROPOSALS.name for t in self.inputs)

    @property
    def has_masks(self) -> bool:
        return any(t.name == MASKS.name for t in self.outputs)

    def to_properties(self) -> dict[str, str]:
        values: dict[str, Any] = {
            "format": FORMAT,
            "version": self.detkit_version,
            "pipeline": self.pipeline,
            "part": self.part,
            "class_names": list(self.class_names),
            "category_ids": list(self.category_ids),
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            "input_size": list(self.input_size),
            "dynamic": self.dynamic,
            "normalization": {"scale": 1 / 255, "mean": list(self.image_mean), "std": list(self.image_std)},
            "precision": self.precision,
            "score_thresh": self.score_thresh,
            "detections_per_image": self.detections_per_image,
            "exporter": self.exporter,
            "config": self.config,
        }
        text = ("format", "version", "pipeline", "part", "precision", "exporter")
        return {PREFIX + k: (v if k in text else json.dumps(v)) for k, v in values.items()}

    @staticmethod
    def from_properties(properties: dict[str, str], source: str) -> ExportMetadata:
        """The metadata of the file ``source``; ``CheckpointError`` naming the field for anything amiss."""
        return _Reader(properties, source).metadata()


_FIX = "export it again with `detkit export`"


class _Reader:
    def __init__(self, properties: dict[str, str], source: str) -> None:
        self.properties, self.source = properties, source

    def metadata(self) -> ExportMetadata:
        if self.properties.get(PREFIX + "format") != FORMAT:
            raise CheckpointError(
                f"{self.source}: not a detkit export (no {PREFIX}format {FORMAT!r} in its metadata); "
                f"{_FIX}, or pass a detkit checkpoint"
            )
        class_names = self._list("class_names", str)
        category_ids = self._list("category_ids", int)
        if not class_names or len(category_ids) != len(class_names):
            self._fail("class_names", f"{len(class_names)} class names for {len(category_ids)} category ids")
        normalization = self._json("normalization", dict)
        return ExportMetadata(
            pipeline=self._text("pipeline"),
            part=self._choice("part", PARTS),
            class_names=tuple(class_names),
            category_ids=tuple(category_ids),
            inputs=self._tensors("inputs"),
            outputs=self._tensors("outputs"),
            input_size=self._size(),
            dynamic=self._json("dynamic", bool),
            image_mean=self._floats(normalization, "mean"),
            image_std=self._floats(normalization, "std"),
            precision=self._choice("precision", ("fp32", "fp16")),
            score_thresh=float(self._json("score_thresh", (int, float))),
            detections_per_image=self._json("detections_per_image", int),
            exporter=self._text("exporter"),
            detkit_version=self._text("version"),
            config=self._json("config", dict),
        )

    def _raw(self, key: str) -> str:
        if PREFIX + key not in self.properties:
            self._fail(key, "missing")
        return self.properties[PREFIX + key]

    def _text(self, key: str) -> str:
        return self._raw(key)

    def _choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = self._raw(key)
        if value not in choices:
            self._fail(key, f"{shown(value)} is not one of {', '.join(choices)}")
        return value

    def _json(self, key: str, kind: type | tuple[type, ...]) -> Any:
        try:
            value = json.loads(self._raw(key))
        except (ValueError, RecursionError):
            self._fail(key, "not valid JSON")
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self._fail(key, f"{shown(value)} is not of the expected kind")
        return value

    def _list(self, key: str, kind: type) -> list[Any]:
        values: list[Any] = self._json(key, list)
        for index, value in enumerate(values):
            if not isinstance(value, kind) or isinstance(value, bool):
                self._fail(f"{key}[{index}]", f"{shown(value)} is not {'text' if kind is str else 'an integer'}")
        return values

    def _size(self) -> tuple[int, int]:
        size = self._list("input_size", int)
        if len(size) != 2 or min(size) < 1:
            self._fail("input_size", f"{size} is not a height and a width")
        return size[0], size[1]

    def _floats(self, normalization: dict[str, Any], key: str) -> tuple[float, ...]:
        values = normalization.get(key)
        if not isinstance(values, list) or len(values) != 3 or not all(isinstance(v, (int, float)) for v in values):
            self._fail(f"normalization.{key}", "not three numbers")
        return tuple(float(v) for v in values)

    def _tensors(self, key: str) -> tuple[TensorSpec, ...]:
        described = []
        for index, item in enumerate(self._json(key, list)):
            if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("name", "dtype")):
                self._fail(f"{key}[{index}]", "not a tensor description")
            shape = item.get("shape")
            if not isinstance(shape, list) or not all(isinstance(d, (int, str)) for d in shape):
                self._fail(f"{key}[{index}].shape", "not a list of sizes")
            described.append(TensorSpec(item["name"], item["dtype"], tuple(shape), str(item.get("meaning", ""))))
        if not described:
            self._fail(key, "empty")
        return tuple(described)

    def _fail(self, key: str, problem: str) -> NoReturn:
        raise CheckpointError(f"{self.source}: metadata {PREFIX}{key} is {problem}; the file is damaged or {_FIX}")
