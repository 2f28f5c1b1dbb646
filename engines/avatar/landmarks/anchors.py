"""SSD anchors as mediapipe's SsdAnchorsCalculator makes them (its non-multiscale mode).

The detectors (face short range, pose, palm) predict box and keypoint offsets relative to a fixed
grid of anchors. Each layer ``i`` has a feature map of ``ceil(input_size / strides[i])`` cells;
consecutive layers with the same stride are merged (their anchors interleave per cell). Per cell
and merged layer, one anchor per aspect ratio at the layer's scale, plus (when
``interpolated_scale_aspect_ratio > 0``) one at the geometric mean of this and the next scale.
With ``fixed_anchor_size`` every anchor is 1x1 (the models regress absolute sizes), which is what
all three detectors use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["FACE_SHORT_RANGE_ANCHORS", "PALM_ANCHORS", "POSE_ANCHORS", "AnchorOptions", "ssd_anchors"]


@dataclass(frozen=True)
class AnchorOptions:
    """The SsdAnchorsCalculatorOptions fields the mediapipe detectors use (same defaults)."""

    input_size_width: int
    input_size_height: int
    strides: tuple[int, ...]
    """One stride per layer (``num_layers`` is ``len(strides)``)."""
    min_scale: float = 0.1484375
    max_scale: float = 0.75
    aspect_ratios: tuple[float, ...] = (1.0,)
    anchor_offset_x: float = 0.5
    anchor_offset_y: float = 0.5
    interpolated_scale_aspect_ratio: float = 1.0
    """Aspect ratio of the extra anchor between two scales; <= 0: no extra anchor (proto default 1)."""
    reduce_boxes_in_lowest_layer: bool = False
    """Layer 0 gets the fixed set (ratio 1 scale 0.1, ratio 2 and 0.5 at the layer's scale)."""
    fixed_anchor_size: bool = False
    """All anchors 1x1 (the boxes are regressed in absolute units)."""
    feature_map_widths: tuple[int, ...] = ()
    """Explicit feature map sizes (override the strides for the grid, as in mediapipe)."""
    feature_map_heights: tuple[int, ...] = ()

    @property
    def num_layers(self) -> int:
        """Number of layers (one per stride)."""
        return len(self.strides)


FACE_SHORT_RANGE_ANCHORS = AnchorOptions(128, 128, (8, 16, 16, 16), fixed_anchor_size=True)
"""face_detection_short_range (128x128 input): 896 anchors."""
POSE_ANCHORS = AnchorOptions(224, 224, (8, 16, 32, 32, 32), fixed_anchor_size=True)
"""pose_detection (224x224 input): 2254 anchors."""
PALM_ANCHORS = AnchorOptions(192, 192, (8, 16, 16, 16), fixed_anchor_size=True)
"""palm_detection_full (192x192 input): 2016 anchors."""


def _scale(options: AnchorOptions, index: int) -> float:
    n = options.num_layers
    if n == 1:
        return (options.min_scale + options.max_scale) * 0.5
    return options.min_scale + (options.max_scale - options.min_scale) * index / (n - 1.0)


def _layer_shapes(options: AnchorOptions, layer: int) -> tuple[int, int]:
    """(height, width) of the feature map of ``layer``."""
    if options.feature_map_heights:
        return options.feature_map_heights[layer], options.feature_map_widths[layer]
    stride = options.strides[layer]
    return (
        math.ceil(options.input_size_height / stride),
        math.ceil(options.input_size_width / stride),
    )


def ssd_anchors(options: AnchorOptions) -> np.ndarray:
    """All anchors, (N, 4) float32 ``[x_center, y_center, width, height]`` normalised to the input.

    Order: layer groups (same stride merged), then rows, columns, and the anchors of a cell.
    """
    if options.feature_map_heights and (
        len(options.feature_map_heights) != options.num_layers
        or len(options.feature_map_widths) != options.num_layers
    ):
        raise ValueError("feature_map_heights/widths need one entry per layer (stride)")
    out: list[np.ndarray] = []
    layer = 0
    n = options.num_layers
    while layer < n:
        ratios: list[float] = []
        scales: list[float] = []
        last = layer
        while last < n and options.strides[last] == options.strides[layer]:
            scale = _scale(options, last)
            if last == 0 and options.reduce_boxes_in_lowest_layer:
                ratios += [1.0, 2.0, 0.5]
                scales += [0.1, scale, scale]
            else:
                for ratio in options.aspect_ratios:
                    ratios.append(ratio)
                    scales.append(scale)
                if options.interpolated_scale_aspect_ratio > 0.0:
                    scale_next = 1.0 if last == n - 1 else _scale(options, last + 1)
                    scales.append(math.sqrt(scale * scale_next))
                    ratios.append(options.interpolated_scale_aspect_ratio)
            last += 1
        sqrt_r = np.sqrt(np.asarray(ratios, dtype=np.float64))
        heights = np.asarray(scales) / sqrt_r
        widths = np.asarray(scales) * sqrt_r
        fh, fw = _layer_shapes(options, layer)
        ys, xs = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
        k = len(ratios)
        cx = np.repeat(((xs + options.anchor_offset_x) / fw).reshape(-1), k)
        cy = np.repeat(((ys + options.anchor_offset_y) / fh).reshape(-1), k)
        if options.fixed_anchor_size:
            w = np.ones_like(cx)
            h = np.ones_like(cx)
        else:
            w = np.tile(widths, fh * fw)
            h = np.tile(heights, fh * fw)
        out.append(np.stack([cx, cy, w, h], axis=1))
        layer = last
    return np.concatenate(out).astype(np.float32)
