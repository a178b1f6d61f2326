"""Width and depth multiples: one architecture scaled to a family of sizes (YOLOv5's n/s/m/l/x,
YOLOX's s/m/l, after EfficientNet's compound scaling, Tan & Le, ICML 2019, section 3.3).

    channels -> ``ceil(channels * width_multiple / 8) * 8``; blocks -> ``max(1, round(blocks * depth_multiple))``
"""

from __future__ import annotations


def scaled_channels(channels: int, width_multiple: float, divisor: int = 8) -> int:
    """``channels * width_multiple`` rounded up to a multiple of ``divisor`` (SIMD-friendly widths)."""
    return max(divisor, int(-(-channels * width_multiple // divisor) * divisor))


def scaled_depth(depth: int, depth_multiple: float) -> int:
    """``depth * depth_multiple`` rounded, at least 1."""
    return max(1, round(depth * depth_multiple))
