"""Preprocessing inside an exported graph: the pixels of one image in, the network's input out.

    image ``uint8 [3, H, W]`` RGB (the decoded pixels, channels first)
    -> ``[1, 3, H_pad, W_pad]`` float: scaled to [0, 1], normalized, resized (bilinear), zero-padded at
       the bottom and right to a multiple of the coarsest stride; and the resized ``(h, w)`` inside the
       padding, the frame of every box inside the model

Each step is the eager transform's (``modeling/transform.py``, ``modeling/yolo/letterbox.py``), in its
order, so a graph given an image's pixels computes what the eager model computes from
``data.images.image_to_tensor`` of them. The resized size is computed in float64 tensors: the eager
rules are Python float (double) arithmetic, and the ONNX exporter lowers symbolic shape arithmetic to
float32, which moved the size by a pixel for 32 of 300 random image sizes (measured).

The code is TorchScript (scripted for ``.torchscript`` files) and ``torch.export`` alike (traced for
ONNX): sizes are plain ints, which ``torch.export`` records symbolically.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# torch.jit.is_scripting itself (TorchScript knows the function, whatever its module), typed for mypy.
from torch._jit_internal import is_scripting


def unit_pixels(image: Tensor) -> Tensor:
    """``uint8 [3, H, W]`` -> float32 in [0, 1], as ``image_to_tensor`` (``.to(float32).div_(255)``)."""
    return image.to(torch.float32) / 255.0


def shorter_side_size(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """The two-stage resize (``ImageTransform._resize``): the shorter side to ``min_size`` unless the
    longer would pass ``max_size``; ``trunc(side * scale)``, as ``F.interpolate(recompute_scale_factor=True)``."""
    h, w = _float64(height), _float64(width)
    scale = torch.minimum(_float64(min_size) / torch.minimum(h, w), _float64(max_size) / torch.maximum(h, w))
    return _side(torch.floor(h * scale)), _side(torch.floor(w * scale))


def letterbox_size(height: int, width: int, side: int, letterbox: bool) -> tuple[int, int]:
    """The single-shot resize (``LetterboxTransform._scaled_size``): the longer side to ``side``, aspect
    kept, sides rounded half to even as Python's ``round``; ``side x side`` without ``letterbox``."""
    if not letterbox:
        return side, side
    h, w = _float64(height), _float64(width)
    scale = _float64(side) / torch.maximum(h, w)
    return _side(torch.round(h * scale).clamp(min=1)), _side(torch.round(w * scale).clamp(min=1))


def resize_and_pad(image: Tensor, size: tuple[int, int], size_divisible: int) -> Tensor:
    """``[3, H, W]`` normalized -> ``[1, 3, H_pad, W_pad]``: bilinear to ``size``, zeros to a multiple of
    ``size_divisible`` at the bottom and right (``transform.pad_images`` of one image)."""
    resized = F.interpolate(image[None], size=[size[0], size[1]], mode="bilinear", align_corners=False)
    padded_h = _blocks(size[0], size_divisible) * size_divisible
    padded_w = _blocks(size[1], size_divisible) * size_divisible
    return F.pad(resized, [0, padded_w - size[1], 0, padded_h - size[0]])


def _blocks(side: int, block: int) -> int:
    """``ceil(side / block)``. Read back from a tensor, so that ``torch.export`` knows the padded side as
    ``block * n`` (every stride-2 layer then halves it exactly) rather than as ``side`` plus a remainder,
    whose expressions through a hundred layers made exporting several times slower."""
    if is_scripting():
        return (side + block - 1) // block
    return _traced_side(
        torch.div(torch.scalar_tensor(side + block - 1, dtype=torch.int64), block, rounding_mode="floor")
    )


def _float64(value: int) -> Tensor:
    """A size as a float64 scalar tensor. Both sides of every division are tensors: ``torch.export`` writes
    ``number / tensor`` as ``number * reciprocal(tensor)``, which is not always the double the eager
    division gives. ``scalar_tensor``, not ``tensor(float(value))``, which would make ``torch.export`` fix
    the size at the example's."""
    return torch.scalar_tensor(value, dtype=torch.float64)


def _side(value: Tensor) -> int:
    """A whole-valued float64 scalar as an int size, through int64 (``torch.export`` reasons about an int64
    scalar as an integer, about a float one not at all)."""
    if is_scripting():
        return int(value.to(torch.int64))
    return _traced_side(value.to(torch.int64))


@torch.jit.unused
def _traced_side(value: Tensor) -> int:
    """``item()``, which ``torch.export`` records as a size known when the graph runs (``int()`` would make
    it fix the example's), and the fact, which it cannot see, that the size is at least 1."""
    side: int = value.item()  # type: ignore[assignment]  # an int64 scalar's item() is an int
    torch._check(side >= 1)
    return side
