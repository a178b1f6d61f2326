"""The embedded default dataset: coloured shapes on textured backgrounds, written as COCO.

Five classes told apart by shape only (colour is random per instance): circle, triangle, square,
star, cross (plus sign). Each image holds 1-6 instances at 10%-45% of the shorter side, later
shapes occluding earlier ones, over a low-contrast texture with non-class clutter (thin lines,
dots and blobs, wiggles). Annotations describe the *visible* part of each instance after
occlusion: ``segmentation`` is its mask as compressed COCO RLE, ``bbox`` the tight ``[x, y, w, h]``
of that mask in whole pixels (``w = x_max - x_min + 1``), ``area`` its pixel count.

Every image is drawn from its own generator ``default_rng([seed, split_index, image_index])``, so
the output is byte-identical for the same arguments and any image can be redrawn alone.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from detkit.io import atomic_write_bytes, atomic_write_json, read_regular_bytes

CLASS_NAMES: tuple[str, ...] = ("circle", "triangle", "square", "star", "cross")
CATEGORY_IDS: tuple[int, ...] = tuple(range(1, len(CLASS_NAMES) + 1))
SPLITS: tuple[str, ...] = ("train", "val")

# Bump when the drawing changes, so `synthetic_dataset_ready` stops accepting old datasets.
GENERATOR_VERSION = 1
MANIFEST_NAME = "manifest.json"

MIN_INSTANCES, MAX_INSTANCES = 1, 6
MIN_SCALE, MAX_SCALE = 0.10, 0.45  # shape extent as a fraction of the shorter image side
MIN_VISIBLE_FRACTION = 0.4  # an instance hidden more than this is not annotated
MIN_VISIBLE_AREA = 20  # pixels
# Placements that would hide an earlier instance below this fraction are redrawn: overlap stays
# moderate, so nearly no partly visible shape is left without an annotation.
PLACEMENT_VISIBLE_FRACTION = 0.5
PLACEMENT_TRIES = 8
COLOUR_TRIES = 16
MIN_COLOUR_DISTANCE = 110.0  # Euclidean RGB distance to every region a shape is drawn over

_WRITE_THREADS = 8
_MAX_PENDING_WRITES = 32  # bounds the images held in memory while their writes are queued

_SHIFT = 4  # cv2 fractional bits: sub-pixel vertex positions keep small shapes symmetric
_SCALE = 1 << _SHIFT


@dataclass
class _Instance:
    category_id: int
    full_area: int
    colour: np.ndarray  # [3] float RGB


def _manifest(num_train: int, num_val: int, image_size: tuple[int, int], seed: int) -> dict[str, Any]:
    return {
        "generator": "detkit.data.synthetic",
        "version": GENERATOR_VERSION,
        "num_train": int(num_train),
        "num_val": int(num_val),
        "image_size": [int(image_size[0]), int(image_size[1])],
        "seed": int(seed),
    }


def _file_name(image_id: int) -> str:
    return f"{image_id:06d}.png"


def synthetic_paths(root: str | Path) -> dict[str, tuple[Path, Path]]:
    """``{split: (annotation_json, image_dir)}`` for a synthetic dataset at ``root``."""
    root = Path(root)
    return {split: (root / "annotations" / f"instances_{split}.json", root / split) for split in SPLITS}


def synthetic_dataset_ready(
    root: str | Path,
    *,
    num_train: int = 1000,
    num_val: int = 200,
    image_size: tuple[int, int] = (128, 128),
    seed: int = 0,
) -> bool:
    """Whether ``root`` holds a complete dataset generated with exactly these parameters."""
    root = Path(root)
    try:
        manifest = json.loads(read_regular_bytes(root / MANIFEST_NAME, max_bytes=1 << 20))
    except (OSError, ValueError):
        return False
    if manifest != _manifest(num_train, num_val, image_size, seed):
        return False
    counts = {"train": num_train, "val": num_val}
    for split, (annotation_file, image_dir) in synthetic_paths(root).items():
        if not annotation_file.is_file():
            return False
        if not all((image_dir / _file_name(i)).is_file() for i in range(1, counts[split] + 1)):
            return False
    return True


def generate_synthetic_coco(
    root: str | Path,
    *,
    num_train: int = 1000,
    num_val: int = 200,
    image_size: tuple[int, int] = (128, 128),
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, tuple[Path, Path]]:
    """Write the synthetic dataset under ``root`` and return ``{split: (annotation_json, image_dir)}``.

    Layout: ``root/{train,val}/NNNNNN.png``, ``root/annotations/instances_{train,val}.json`` and,
    written last, ``root/manifest.json``. ``image_size`` is ``(H, W)``. ``progress(done, total)`` is
    called after each image. Images already on disk with the right bytes are not rewritten, so an
    interrupted run can simply be started again.
    """
    root = Path(root)
    height, width = int(image_size[0]), int(image_size[1])
    if min(height, width) < 32:
        raise ValueError(f"image_size must be at least 32x32, got {image_size}")
    if num_train < 0 or num_val < 0:
        raise ValueError("num_train and num_val must be >= 0")
    # A manifest left from other parameters must not vouch for the half-rewritten folder.
    (root / MANIFEST_NAME).unlink(missing_ok=True)

    paths = synthetic_paths(root)
    counts = {"train": num_train, "val": num_val}
    total = num_train + num_val
    done = 0
    # Drawing is cheap; each atomic write waits on an fsync. Threads overlap those waits
    # (encoding and fsync release the GIL) while the output stays independent of their order.
    with ThreadPoolExecutor(max_workers=_WRITE_THREADS) as pool:
        for split_index, split in enumerate(SPLITS):
            annotation_file, image_dir = paths[split]
            image_dir.mkdir(parents=True, exist_ok=True)
            images: list[dict[str, Any]] = []
            annotations: list[dict[str, Any]] = []
            pending: deque[Future[None]] = deque()
            for image_id in range(1, counts[split] + 1):
                rng = np.random.default_rng([seed, split_index, image_id - 1])
                image, instances = render_image(rng, height, width)
                file_name = _file_name(image_id)
                pending.append(pool.submit(_write_png_if_changed, image_dir / file_name, image))
                images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
                for category_id, visible in instances:
                    annotations.append(_annotation(len(annotations) + 1, image_id, category_id, visible))
                while len(pending) > _MAX_PENDING_WRITES or (pending and image_id == counts[split]):
                    pending.popleft().result()
                    done += 1
                    if progress is not None:
                        progress(done, total)
            atomic_write_json(annotation_file, _coco_document(split, images, annotations))
    atomic_write_json(root / MANIFEST_NAME, _manifest(num_train, num_val, (height, width), seed), indent=2)
    return paths


def _coco_document(split: str, images: list[dict[str, Any]], annotations: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "info": {"description": f"detkit synthetic shapes ({split})", "version": str(GENERATOR_VERSION)},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": cat_id, "name": name, "supercategory": "shape"} for cat_id, name in zip(CATEGORY_IDS, CLASS_NAMES)
        ],
    }


def _annotation(annotation_id: int, image_id: int, category_id: int, visible: np.ndarray) -> dict[str, Any]:
    ys, xs = np.nonzero(visible)
    x_min, x_max, y_min, y_max = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    rle = mask_utils.encode(np.asfortranarray(visible.astype(np.uint8)))
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
        "area": int(xs.size),
        "bbox": [x_min, y_min, x_max - x_min + 1, y_max - y_min + 1],
        "iscrowd": 0,
    }


def _write_png_if_changed(path: Path, rgb: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 PNG
        raise RuntimeError(f"could not encode {path.name}")
    data = encoded.tobytes()
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    atomic_write_bytes(path, data)


# ---------------------------------------------------------------------------------------------
# Drawing


def render_image(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Draw one image.

    Returns the ``uint8 [H, W, 3]`` RGB image and its annotated instances as
    ``(category_id, visible_mask bool [H, W])`` in drawing order (later ones on top).
    """
    canvas = _background(rng, height, width)
    _draw_clutter(rng, canvas)
    # owner[y, x] = index of the instance that painted the pixel last, -1 for background.
    owner = np.full((height, width), -1, dtype=np.int16)
    instances: list[_Instance] = []
    for _ in range(int(rng.integers(MIN_INSTANCES, MAX_INSTANCES + 1))):
        category_id = int(rng.integers(1, len(CLASS_NAMES) + 1))
        mask = _place_shape(rng, category_id, owner, instances)
        if mask is None:
            continue
        colour = _pick_colour(rng, canvas, mask, owner, instances)
        canvas[mask] = colour
        owner[mask] = len(instances)
        instances.append(_Instance(category_id, int(mask.sum()), colour))
    # Sensor-like noise after drawing: it changes pixels, never which instance owns them.
    noise_sigma = rng.uniform(0.0, 4.0)
    canvas += np.float32(noise_sigma) * rng.standard_normal(canvas.shape, dtype=np.float32)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return image, _visible_instances(owner, instances)


def _visible_instances(owner: np.ndarray, instances: list[_Instance]) -> list[tuple[int, np.ndarray]]:
    annotated = []
    for index, instance in enumerate(instances):
        visible = owner == index
        area = int(visible.sum())
        if area < MIN_VISIBLE_AREA or area < MIN_VISIBLE_FRACTION * instance.full_area:
            continue
        annotated.append((instance.category_id, visible))
    return annotated


def _place_shape(
    rng: np.random.Generator, category_id: int, owner: np.ndarray, instances: list[_Instance]
) -> np.ndarray | None:
    """A full (unoccluded) bool mask for a new shape that leaves earlier instances visible enough."""
    height, width = owner.shape
    visible_now = np.bincount(owner[owner >= 0], minlength=len(instances))
    needed = PLACEMENT_VISIBLE_FRACTION * np.array([inst.full_area for inst in instances], dtype=np.float64)
    for _ in range(PLACEMENT_TRIES):
        mask = _shape_mask(rng, category_id, height, width)
        if mask.sum() < MIN_VISIBLE_AREA:
            continue
        covered = owner[mask]
        lost = np.bincount(covered[covered >= 0], minlength=len(instances))
        if np.all(visible_now - lost >= needed):
            return mask
    return None


def _shape_mask(rng: np.random.Generator, category_id: int, height: int, width: int) -> np.ndarray:
    """Bool ``[H, W]`` mask of one shape, drawn without antialiasing so the mask is exact."""
    extent = rng.uniform(MIN_SCALE, MAX_SCALE) * min(height, width)
    radius = extent / 2.0
    cx = rng.uniform(radius, width - radius)
    cy = rng.uniform(radius, height - radius)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    mask = np.zeros((height, width), dtype=np.uint8)
    name = CLASS_NAMES[category_id - 1]
    if name == "circle":
        centre = (int(round(cx * _SCALE)), int(round(cy * _SCALE)))
        cv2.circle(mask, centre, int(round(radius * _SCALE)), 1, thickness=-1, lineType=cv2.LINE_8, shift=_SHIFT)
    else:
        points = _polygon(name, radius, angle) + np.array([cx, cy])
        fixed = np.round(points * _SCALE).astype(np.int32)
        cv2.fillPoly(mask, [fixed], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return mask.astype(bool)


def _polygon(name: str, radius: float, angle: float) -> np.ndarray:
    """Vertices ``[V, 2]`` (x, y) of a shape centred at 0 with circumradius ``radius``."""
    if name == "triangle":
        theta = angle + np.arange(3) * 2.0 * np.pi / 3.0
        local = np.stack([np.cos(theta), np.sin(theta)], axis=1) * radius
    elif name == "square":
        theta = angle + np.pi / 4.0 + np.arange(4) * np.pi / 2.0
        local = np.stack([np.cos(theta), np.sin(theta)], axis=1) * radius
    elif name == "star":
        # Deep inner vertices (0.42 R) keep a small star from reading as a blob or a circle.
        theta = angle + np.arange(10) * np.pi / 5.0
        r = np.where(np.arange(10) % 2 == 0, radius, 0.42 * radius)
        local = np.stack([np.cos(theta) * r, np.sin(theta) * r], axis=1)
    elif name == "cross":
        # Arm tips (a, r) sit at the circumradius, so every class obeys the same extent range.
        r = radius / np.hypot(1.0, 0.32)
        a = 0.32 * r
        plus = np.array(
            [
                (a, r),
                (a, a),
                (r, a),
                (r, -a),
                (a, -a),
                (a, -r),
                (-a, -r),
                (-a, -a),
                (-r, -a),
                (-r, a),
                (-a, a),
                (-a, r),
            ],
            dtype=np.float64,
        )
        c, s = np.cos(angle), np.sin(angle)
        local = plus @ np.array([[c, s], [-s, c]])
    else:  # pragma: no cover - guarded by CLASS_NAMES
        raise ValueError(name)
    return local


def _pick_colour(
    rng: np.random.Generator, canvas: np.ndarray, mask: np.ndarray, owner: np.ndarray, instances: list[_Instance]
) -> np.ndarray:
    """A random colour far from everything the shape is drawn over (background and earlier shapes)."""
    covered = owner[mask]
    references = [instances[i].colour for i in np.unique(covered[covered >= 0])]
    background = mask & (owner < 0)
    if background.any():
        references.append(canvas[background].mean(axis=0))
    reference = np.stack(references)
    best, best_distance = None, -1.0
    for _ in range(COLOUR_TRIES):
        colour = rng.integers(0, 256, size=3).astype(np.float32)
        distance = float(np.linalg.norm(reference - colour, axis=1).min())
        if distance > best_distance:
            best, best_distance = colour, distance
        if distance >= MIN_COLOUR_DISTANCE:
            break
    return cast(np.ndarray, best)  # COLOUR_TRIES >= 1: set on the first try


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A low-contrast textured background, ``float32 [H, W, 3]`` in roughly ``[0, 255]``."""
    base = rng.uniform(40.0, 215.0, size=3).astype(np.float32)
    amplitude = rng.uniform(8.0, 30.0)
    tint = rng.uniform(0.5, 1.0, size=3).astype(np.float32)  # texture strength per channel
    # Broadcasting [H, 1] against [1, W] builds each pattern without full coordinate grids.
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    kind = int(rng.integers(4))
    if kind == 0:  # smoothed noise
        cells = int(rng.integers(3, 10))
        coarse = rng.normal(0.0, 1.0, size=(cells, cells)).astype(np.float32)
        pattern: np.ndarray = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)  # float32
        pattern /= max(float(np.abs(pattern).max()), 1e-6)
    elif kind == 1:  # linear gradient
        theta = rng.uniform(0.0, 2.0 * np.pi)
        ramp = xs * np.cos(theta) + ys * np.sin(theta)
        pattern = 2.0 * (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6) - 1.0
    elif kind == 2:  # stripes
        theta = rng.uniform(0.0, np.pi)
        period = rng.uniform(6.0, 24.0)
        pattern = np.sin(2.0 * np.pi * (xs * np.cos(theta) + ys * np.sin(theta)) / period)
    else:  # checker
        cell = int(rng.integers(4, 17))
        pattern = (((xs // cell) + (ys // cell)) % 2) * 2.0 - 1.0
    if kind >= 2:
        # Periodic patterns catch the eye more than a ramp or blobs of the same amplitude: keep them faint.
        amplitude *= 0.6
    pattern = np.broadcast_to(pattern, (height, width)).astype(np.float32)
    canvas = base + np.float32(amplitude) * pattern[..., None] * tint
    return canvas.astype(np.float32)


def _random_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    c0, c1, c2 = (float(c) for c in rng.integers(0, 256, size=3))
    return c0, c1, c2


def _draw_clutter(rng: np.random.Generator, canvas: np.ndarray) -> None:
    """Non-class distractors under the shapes: thin lines, dots and blobs, wiggles."""
    height, width = canvas.shape[:2]
    for _ in range(int(rng.integers(0, 5))):  # thin lines
        p1 = (int(rng.integers(width)), int(rng.integers(height)))
        p2 = (int(rng.integers(width)), int(rng.integers(height)))
        cv2.line(canvas, p1, p2, _random_colour(rng), thickness=1, lineType=cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 7))):  # dots and small blobs
        centre = (int(rng.integers(width)), int(rng.integers(height)))
        axes = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        angle = float(rng.uniform(0.0, 180.0))
        cv2.ellipse(canvas, centre, axes, angle, 0.0, 360.0, _random_colour(rng), thickness=-1, lineType=cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 4))):  # wiggles: short random walks
        steps = int(rng.integers(5, 13))
        start = rng.uniform([0.0, 0.0], [width, height])
        headings = rng.uniform(0.0, 2.0 * np.pi) + np.cumsum(rng.normal(0.0, 0.8, size=steps))
        lengths = rng.uniform(2.0, 6.0, size=steps)
        walk = start + np.cumsum(np.stack([np.cos(headings), np.sin(headings)], axis=1) * lengths[:, None], axis=0)
        points = np.round(np.vstack([start, walk])).astype(np.int32)
        cv2.polylines(
            canvas, [points], False, _random_colour(rng), thickness=int(rng.integers(1, 3)), lineType=cv2.LINE_AA
        )
