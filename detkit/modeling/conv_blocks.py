"""Convolution, optional normalization, optional ReLU: the layers the FPN, RPN, box and mask heads stack.

    ``[N, C_in, H, W]`` -> conv (k x k, stride 1, same padding) -> norm? -> ReLU? -> ``[N, C_out, H, W]``

The layers come as a flat list (conv, norm, ReLU) rather than one module per block, so a stack of
``n`` blocks is one ``nn.Sequential`` whose parameter names are the flattened indices: conv ``i`` of
a normalized stack is entry ``3i``, its norm ``3i + 1``; without norm conv ``i`` is entry ``2i``.
These are torchvision's ``Conv2dNormActivation`` blocks with the nesting removed, which keeps the
names of every head that existed before normalization was an option.

``norm`` is one of ``CONV_NORMS``: ``"none"`` or ``"bn"`` (BatchNorm2d, trained with the head, as in
torchvision's ``*_v2`` detectors; Li et al., "Benchmarking Detection Transfer Learning with Vision
Transformers", 2021, section 3).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

CONV_NORMS: dict[str, Callable[[int], nn.Module] | None] = {"none": None, "bn": nn.BatchNorm2d}


def conv_norm(in_channels: int, out_channels: int, kernel_size: int, norm: str, relu: bool) -> list[nn.Module]:
    """``[conv, norm?, ReLU?]`` for one block; ``ValueError`` for an unknown ``norm``."""
    if norm not in CONV_NORMS:
        raise ValueError(f"norm {norm!r} is not one of {', '.join(CONV_NORMS)}")
    norm_layer = CONV_NORMS[norm]
    # A norm's shift replaces the conv's bias, which would only be subtracted again with the mean.
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=norm_layer is None)
    ]
    if norm_layer is not None:
        layers.append(norm_layer(out_channels))
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return layers


def conv_stack(in_channels: int, channels: int, num_convs: int, norm: str) -> nn.Sequential:
    """``num_convs`` 3x3 blocks with ReLU: ``[N, in_channels, H, W]`` -> ``[N, channels, H, W]``.

    Empty (the identity) for ``num_convs = 0``.
    """
    layers: list[nn.Module] = []
    for index in range(num_convs):
        layers += conv_norm(in_channels if index == 0 else channels, channels, 3, norm, relu=True)
    return nn.Sequential(*layers)


def convs_of(module: nn.Module) -> list[nn.Conv2d]:
    """Every ``Conv2d`` inside ``module``, in registration order (for initialization)."""
    return [layer for layer in module.modules() if isinstance(layer, nn.Conv2d)]
