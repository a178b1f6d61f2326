"""Property-based fuzzing of every reader: bad input gives a dataset or a DataError, never another exception.

Each reader gets byte-level mutations of a valid file (truncation, flipped and inserted bytes,
spliced tokens such as NaN, -1, [], "x") and structured-but-wrong records built from the format's
own vocabulary with wrong types and values mixed in. For COCO the checker and the fixer are fuzzed
too: whatever the input, ``--fix`` output must have no errors left and load in ``CocoDetection``.

Example counts (``max_examples``, ``deadline=None``): COCO bytes 150, COCO records 200, checker and
fixer 200, VOC bytes 100, VOC edited trees 150, VOC arbitrary trees 150, YOLO label lines 200,
YOLO label bytes 100, data.yaml bytes 150, data.yaml structures 150, JPEG/PNG bytes 200: 1,750 in all.
"""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from detkit.data.check import check_coco
from detkit.data.coco import CocoDetection
from detkit.data.coco_fields import REQUIRED_KEYS
from detkit.data.fix import fix_coco
from detkit.data.formats.voc import ALL, parse_voc_xml, read_voc
from detkit.data.formats.yolo import load_data_yaml, parse_label_file, read_yolo
from detkit.data.image_scan import ImageStatus
from detkit.errors import DataError
from tests.data.builders import voc_object, voc_xml, write_image

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")

HEIGHT, WIDTH = 40, 50
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Two real images (a.png, b.png), and a scratch place for each example's files."""
    root = tmp_path_factory.mktemp("fuzz")
    for name in ("a.png", "b.png"):
        write_image(root / name, HEIGHT, WIDTH)
    return root


def _data_error_or(call) -> Any:
    """The call's result, or None when it raises DataError; any other exception fails the test."""
    try:
        return call()
    except DataError as error:
        assert "\n" not in str(error), "DataError messages are one line"
        return None


# ---------------------------------------------------------------------------------------------
# Mutations


TOKENS = [
    b"NaN",
    b"-Infinity",
    b"1e999",
    b"-1",
    b"0",
    b"[]",
    b"{}",
    b'"x"',
    b"null",
    b"true",
    b"[1, 2, 3]",
    b"<",
    b">",
    b"</object>",
    b"&amp;",
    b"\n",
    b" ",
    b"nan",
    b"-0.5",
    b"7",
    b"\xff\xfe",
    b"\x00",
]


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """``seed`` after 1-3 edits: flip, insert or delete bytes, splice or overwrite with a token, or truncate."""
    data = bytearray(seed)
    # Positions from a hypothesis-seeded Random: drawn integers lean to 0 and would keep hitting the first tag.
    rng = draw(st.randoms(use_true_random=False))
    for _ in range(draw(st.integers(1, 3))):
        position = rng.randrange(max(len(data), 1))
        edit = draw(st.sampled_from(["flip", "insert", "delete", "splice", "replace", "truncate"]))
        if edit == "flip" and data:
            data[position] = draw(st.integers(0, 255))
        elif edit == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=6))
        elif edit == "delete":
            del data[position : position + draw(st.integers(1, 12))]
        elif edit == "splice":
            data[position:position] = draw(st.sampled_from(TOKENS))
        elif edit == "replace":
            data[position : position + draw(st.integers(1, 4))] = draw(st.sampled_from(TOKENS))
        else:
            del data[position:]
    return bytes(data)


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2, 3), st.integers(), st.floats(), st.text(max_size=4))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)


def mostly(valid: st.SearchStrategy, garbage: st.SearchStrategy = json_values) -> st.SearchStrategy:
    """A plausible value 7 times in 8, else ``garbage``: most records get deep into the reader, and
    wrong types and values still reach every field."""
    return st.integers(0, 7).flatmap(lambda k: garbage if k == 0 else valid)


# ---------------------------------------------------------------------------------------------
# COCO

_RLE = mask_utils.encode(__import__("numpy").asfortranarray(__import__("numpy").ones((HEIGHT, WIDTH), dtype="uint8")))
_RLE_TEXT = {"size": [HEIGHT, WIDTH], "counts": _RLE["counts"].decode("ascii")}
SEED_COCO = {
    "images": [
        {"id": 1, "file_name": "a.png", "height": HEIGHT, "width": WIDTH},
        {"id": 2, "file_name": "b.png", "height": HEIGHT, "width": WIDTH},
    ],
    "annotations": [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 1,
            "bbox": [5, 6, 10, 12],
            "area": 120,
            "iscrowd": 0,
            "segmentation": [[5, 6, 15, 6, 15, 18, 5, 18]],
        },
        {
            "id": 2,
            "image_id": 1,
            "category_id": 2,
            "bbox": [40, 30, 20, 20],
            "area": 400,
            "iscrowd": 1,
            "segmentation": _RLE_TEXT,
        },
        {
            "id": 3,
            "image_id": 2,
            "category_id": 1,
            "bbox": [0, 0, 50, 40],
            "area": 2000,
            "iscrowd": 0,
            "segmentation": {"size": [HEIGHT, WIDTH], "counts": [0, HEIGHT * WIDTH]},
        },
    ],
    "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
}

numbers = st.one_of(st.integers(-10, 60), st.floats(-10, 60), st.sampled_from([float("nan"), float("inf"), 1e12, -0.0]))
polygons = st.lists(st.lists(mostly(numbers), min_size=0, max_size=10), max_size=2)
rles = st.fixed_dictionaries(
    {},
    optional={
        "size": mostly(st.sampled_from([[HEIGHT, WIDTH], [2, 2], [0, 5], [HEIGHT, WIDTH, 1]])),
        "counts": mostly(
            st.one_of(st.just(_RLE_TEXT["counts"]), st.text(max_size=6), st.lists(st.integers(-1, 2000), max_size=4))
        ),
    },
)
# Required keys are usually present (a missing one is among the garbage `mostly` mixes in).
images = st.fixed_dictionaries(
    {
        "id": mostly(st.integers(0, 3)),
        "file_name": mostly(st.sampled_from(["a.png", "b.png", "missing.png", "", "../a.png"])),
    },
    optional={
        "width": mostly(st.sampled_from([WIDTH, 0, -1, float(WIDTH), 30])),
        "height": mostly(st.sampled_from([HEIGHT, 0, 25])),
    },
)
annotations = st.fixed_dictionaries(
    {
        "id": mostly(st.integers(0, 4)),
        "image_id": mostly(st.integers(0, 3)),
        "category_id": mostly(st.integers(0, 3)),
        "bbox": mostly(st.lists(numbers, min_size=3, max_size=5)),
    },
    optional={
        "segmentation": st.one_of(polygons, rles, json_values),
        "iscrowd": mostly(st.integers(0, 1)),
        "area": mostly(numbers),
    },
)
categories = st.fixed_dictionaries(
    {"id": mostly(st.integers(0, 3))}, optional={"name": mostly(st.sampled_from(["cat", "dog", ""]))}
)
coco_datasets = st.fixed_dictionaries(
    {
        "images": st.lists(
            mostly(images), max_size=4, unique_by=lambda r: repr(r.get("id")) if isinstance(r, dict) else repr(r)
        ),
        "annotations": st.lists(mostly(annotations), max_size=6),
        "categories": st.lists(mostly(categories), max_size=3),
    }
)
# CocoDetection refuses a file with a duplicated image or category id outright; the checker and
# fixer report and repair them, so their fuzzing allows duplicates.
coco_datasets_with_duplicates = st.fixed_dictionaries(
    {
        "images": st.lists(mostly(images), max_size=4),
        "annotations": st.lists(mostly(annotations), max_size=6),
        "categories": st.lists(mostly(categories), max_size=3),
    }
)


def _load_coco_everything(path: Path, image_dir: Path) -> None:
    """Construct the dataset, then build every item with masks: the whole read path."""
    dataset = _data_error_or(lambda: CocoDetection(path, image_dir, with_masks=True))
    if dataset is None:
        return
    for index in range(len(dataset)):
        item = _data_error_or(lambda index=index: dataset[index])
        if item is not None:
            image, target = item
            assert image.shape[-2:] == target.masks.shape[-2:] and target.boxes.shape == (len(target), 4)


@settings(FUZZ, max_examples=150)
@given(data=mutated(json.dumps(SEED_COCO).encode()))
def test_coco_reader_survives_byte_mutations(folder, data):
    path = folder / "mutated.json"
    path.write_bytes(data)
    _load_coco_everything(path, folder)


@settings(FUZZ, max_examples=200)
@given(dataset=st.one_of(coco_datasets, coco_datasets, json_values))
def test_coco_reader_survives_wrong_records(folder, dataset):
    path = folder / "records.json"
    path.write_text(json.dumps(dataset))  # NaN and Infinity written as JSON's non-standard literals
    _load_coco_everything(path, folder)


SCAN = {
    "a.png": ImageStatus("ok", (HEIGHT, WIDTH)),
    "b.png": ImageStatus("ok", (HEIGHT, WIDTH)),
    "missing.png": ImageStatus("missing", detail="no such file"),
    "../a.png": ImageStatus("outside", detail="leads outside the folder"),
}  # what scan_images says of it


@settings(FUZZ, max_examples=200)
@given(dataset=coco_datasets_with_duplicates)
def test_check_and_fix_take_anything_and_fix_leaves_no_errors(folder, dataset):
    report = check_coco(dataset, folder / "x.json", folder, images=SCAN)
    assert all(f.count >= 1 and len(f.examples) <= 5 for f in report.findings)
    fixed, _ = fix_coco(dataset, SCAN)
    errors = [f.code for f in check_coco(fixed, folder / "fixed.json", folder, images=SCAN).errors]
    assert errors == ([] if fixed["images"] else ["no_images"])  # nothing repairs a file without images
    path = folder / "fixed.json"
    path.write_text(json.dumps(fixed))
    # What --fix writes must load: no DataError from construction.
    CocoDetection(path, folder)


def test_coco_top_level_shapes_are_data_errors(folder):
    for text in ("[]", '{"images": {}}', '"x"', "{" * 5000, "1" * 5000, "", '{"images": [], "annotations": []'):
        (folder / "top.json").write_text(text)
        with pytest.raises(DataError, match=str(folder / "top.json")):
            CocoDetection(folder / "top.json", folder)
    assert set(REQUIRED_KEYS) == {"images", "annotations", "categories"}


def test_nan_polygon_falls_back_to_the_box_instead_of_exhausting_memory(folder):
    dataset = json.loads(json.dumps(SEED_COCO))
    dataset["annotations"][0]["segmentation"] = [[float("nan"), 6, 15, 6, 15, 18]]
    dataset["annotations"][1]["segmentation"] = [[1e9, 6, 15, 6, 15, 18]]
    dataset["annotations"][1]["iscrowd"] = 0
    (folder / "nan.json").write_text(json.dumps(dataset))
    loaded = CocoDetection(folder / "nan.json", folder, with_masks=True)
    assert loaded.report.num_without_segmentation == 2
    _, target = loaded[0]
    assert int(target.masks[0].sum()) == 10 * 12  # the box [5, 6, 10, 12] as a mask


def test_unhashable_image_id_is_a_dropped_record_not_a_type_error(folder):
    dataset = json.loads(json.dumps(SEED_COCO))
    dataset["annotations"][0]["image_id"] = [1]
    (folder / "list_id.json").write_text(json.dumps(dataset))
    assert CocoDetection(folder / "list_id.json", folder).report.num_dropped_malformed == 1


# ---------------------------------------------------------------------------------------------
# Pascal VOC

SEED_VOC = voc_xml(
    "a.png", (HEIGHT, WIDTH), [voc_object("cat", 5, 6, 15, 18), voc_object("dog", 1, 1, 50, 40, difficult=1)]
).encode()
VOC_TAGS = [
    "annotation",
    "filename",
    "size",
    "width",
    "height",
    "object",
    "name",
    "bndbox",
    "xmin",
    "ymin",
    "xmax",
    "ymax",
    "difficult",
    "truncated",
    "other",
]
voc_texts = st.one_of(
    st.sampled_from(["cat", "1", "0", "50", "-3", "nan", "1e999", "", " 7 ", "a.png"]), st.text(max_size=6)
)


@st.composite
def voc_trees(draw, depth: int = 0) -> ET.Element:
    """An element tree with VOC's tags in any arrangement and plausible or arbitrary texts."""
    element = ET.Element(draw(st.sampled_from(VOC_TAGS)) if depth else "annotation")
    if draw(st.booleans()):
        element.text = draw(voc_texts)
    if depth < 3:
        element.extend(draw(st.lists(voc_trees(depth + 1), max_size=4)))
    return element


@st.composite
def edited_voc(draw) -> bytes:
    """The valid seed file after 1-3 edits of its tree: an element's text replaced, an element
    removed, duplicated or renamed. Most byte mutations only reach the XML parser; these reach
    every branch of the VOC reader."""
    root = ET.fromstring(SEED_VOC)
    rng = draw(st.randoms(use_true_random=False))
    for _ in range(draw(st.integers(1, 3))):
        parents = [(parent, child) for parent in root.iter() for child in parent]
        parent, child = parents[rng.randrange(len(parents))]
        edit = draw(st.sampled_from(["text", "remove", "duplicate", "rename"]))
        if edit == "text":
            child.text = draw(voc_texts)
        elif edit == "remove":
            parent.remove(child)
        elif edit == "duplicate":
            parent.append(copy.deepcopy(child))
        else:
            child.tag = draw(st.sampled_from(VOC_TAGS))
    return ET.tostring(root)


def _voc_folder(folder: Path, xml: bytes) -> Path:
    root = folder / "voc"
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "JPEGImages").mkdir(exist_ok=True)
    (root / "Annotations" / "a.xml").write_bytes(xml)
    if not (root / "JPEGImages" / "a.png").exists():
        write_image(root / "JPEGImages" / "a.png", HEIGHT, WIDTH)
    return root


def _read_voc_everything(folder: Path, xml: bytes) -> None:
    root = _voc_folder(folder, xml)
    record = _data_error_or(lambda: parse_voc_xml(root / "Annotations" / "a.xml"))
    split = _data_error_or(lambda: read_voc(root, ALL))
    assert (record is None) == (split is None)
    if split is not None:
        assert split.num_annotations == len(record.objects)
        check_coco(
            split.coco, root / "a.json", root / "JPEGImages", images={"a.png": ImageStatus("ok", (HEIGHT, WIDTH))}
        )


@settings(FUZZ, max_examples=100)
@given(xml=mutated(SEED_VOC))
def test_voc_reader_survives_byte_mutations(folder, xml):
    _read_voc_everything(folder, xml)


@settings(FUZZ, max_examples=150)
@given(xml=edited_voc())
def test_voc_reader_survives_edited_files(folder, xml):
    _read_voc_everything(folder, xml)


@settings(FUZZ, max_examples=150)
@given(tree=voc_trees())
def test_voc_reader_survives_wrong_trees(folder, tree):
    _read_voc_everything(folder, ET.tostring(tree))


# ---------------------------------------------------------------------------------------------
# YOLO

odd_tokens = st.one_of(
    st.sampled_from(["2", "-1", "1.0", "nan", "inf", "1e400", "x", "1.2", "-0.2", "1.005", "0x1"]), st.text(max_size=4)
)
classes = mostly(st.sampled_from(["0", "1"]), odd_tokens)
coordinates = mostly(st.floats(0, 1).map(str), odd_tokens)
box_lines = st.tuples(classes, st.lists(coordinates, min_size=4, max_size=4)).map(lambda t: " ".join([t[0], *t[1]]))
polygon_lines = st.tuples(classes, st.lists(st.tuples(coordinates, coordinates), min_size=3, max_size=6)).map(
    lambda t: " ".join([t[0], *(v for point in t[1] for v in point)])
)
any_lines = st.lists(st.one_of(odd_tokens, coordinates), max_size=9).map(" ".join)
label_texts = st.lists(mostly(st.one_of(box_lines, polygon_lines), any_lines), max_size=5).map("\n".join)


def _yolo_folder(
    folder: Path, yaml_text: str = "names: [cat, dog]\ntrain: images/train\n", labels: bytes = b""
) -> Path:
    root = folder / "yolo"
    if not (root / "images" / "train" / "a.png").exists():
        write_image(root / "images" / "train" / "a.png", HEIGHT, WIDTH)
    (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "train" / "a.txt").write_bytes(labels)
    (root / "data.yaml").write_text(yaml_text)
    return root


def _read_yolo_everything(root: Path) -> None:
    labels = _data_error_or(lambda: parse_label_file(root / "labels" / "train" / "a.txt", 2, (HEIGHT, WIDTH)))
    split = _data_error_or(lambda: read_yolo(root, "train"))
    if split is not None and labels is not None:
        assert split.num_annotations == len(labels)
        check_coco(split.coco, root / "a.json", split.image_dir, images={"a.png": ImageStatus("ok", (HEIGHT, WIDTH))})


@settings(FUZZ, max_examples=200)
@given(text=label_texts)
def test_yolo_reader_survives_wrong_label_lines(folder, text):
    _read_yolo_everything(_yolo_folder(folder, labels=text.encode("utf-8", "surrogatepass")))


@settings(FUZZ, max_examples=100)
@given(data=mutated(b"0 0.5 0.5 0.2 0.3\n1 0.1 0.1 0.05 0.05\n0 0.1 0.2 0.5 0.2 0.3 0.9\n"))
def test_yolo_reader_survives_label_byte_mutations(folder, data):
    _read_yolo_everything(_yolo_folder(folder, labels=data))


@settings(FUZZ, max_examples=150)
@given(data=mutated(b"path: .\nnames:\n  0: cat\n  1: dog\nnc: 2\ntrain: images/train\nval: images/train\n"))
def test_data_yaml_survives_byte_mutations(folder, data):
    root = _yolo_folder(folder, labels=b"0 0.5 0.5 0.2 0.3\n")
    (root / "data.yaml").write_bytes(data)
    if _data_error_or(lambda: load_data_yaml(root)) is not None:
        _read_yolo_everything(root)


split_values = mostly(
    st.sampled_from(
        ["images/train", "images/train", "missing", "labels/train/a.txt", ["images/train", "images/train"], []]
    )
)
name_lists = st.lists(mostly(st.sampled_from(["cat", "dog"])), min_size=1, max_size=3)
name_maps = st.dictionaries(
    mostly(st.integers(0, 2), st.one_of(st.integers(-1, 5), st.text(max_size=2), st.floats())),
    st.sampled_from(["cat", "dog"]),
    max_size=3,
)
yaml_documents = st.fixed_dictionaries(
    {"names": mostly(st.one_of(name_lists, name_maps)), "train": split_values},
    optional={
        "nc": mostly(st.integers(1, 3)),
        "path": mostly(st.sampled_from([".", "..", "/nonexistent", ""])),
        "val": split_values,
    },
)


@settings(FUZZ, max_examples=150)
@given(document=st.one_of(yaml_documents, yaml_documents, json_values))
def test_data_yaml_survives_wrong_structures(folder, document):
    root = _yolo_folder(folder, yaml.safe_dump(document), labels=b"1 0.5 0.5 0.2 0.3\n")
    config = _data_error_or(lambda: load_data_yaml(root))
    for split in config.splits if config is not None else []:
        _data_error_or(lambda split=split: read_yolo(root, split))


# --- image files ---------------------------------------------------------------------------------


def _encoded(extension: str) -> bytes:
    import cv2
    import numpy as np

    pixels = np.random.default_rng(0).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    ok, buffer = cv2.imencode(extension, pixels)
    assert ok
    return buffer.tobytes()


IMAGE_SEEDS = {".jpg": _encoded(".jpg"), ".png": _encoded(".png")}


@settings(FUZZ, max_examples=200)
@given(extension=st.sampled_from(sorted(IMAGE_SEEDS)), data=st.data())
def test_image_reader_gives_pixels_or_a_data_error(folder, extension, data):
    """Mutated JPEG/PNG bytes: an RGB array of the stored size's shape, or one DataError line; and the
    data checker's decode of the same file never raises."""
    from detkit.data.image_scan import inspect_image
    from detkit.data.images import read_image_rgb, truncation

    payload = data.draw(mutated(IMAGE_SEEDS[extension]))
    path = folder / f"mutated{extension}"
    path.write_bytes(payload)
    image = _data_error_or(lambda: read_image_rgb(path))
    if image is not None:
        assert image.dtype.name == "uint8" and image.ndim == 3 and image.shape[2] == 3
        assert not truncation(payload), "a truncated file must be refused, not decoded with grey rows"
    assert inspect_image(path).state in (
        "ok",
        "unreadable",
        "truncated",
        "too_large",
    )  # a flipped header byte can declare a giant
