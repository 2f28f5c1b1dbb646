"""cv2.warpPerspective as the OpenCV inside mediapipe computes it (fixed point), on any cv2 version.

mediapipe's CPU crops (ImageToTensorCalculator, ImageCroppingCalculator) call
``cv::warpPerspective``. OpenCV 4.x computes each destination pixel's source position in double
precision, rounds it to 1/32 pixel (``INTER_BITS = 5``, half to even) and interpolates the uint8
image with 15-bit fixed-point bilinear weights (``cv::remap`` with CV_16SC2 + CV_16UC1 maps).
Newer OpenCV releases (4.11+, 5.x) changed these kernels, which moves ~9 % of the crop's pixels by
1-3 levels on edges. Building the same maps here and calling ``cv2.remap`` (whose fixed-point path
did not change) reproduces the old result to the bit (but for exact rounding ties), at about 0.3 ms
for a 192x192 crop.
"""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["quad_transform", "warp_perspective"]

_INTER_BITS = 5
_TAB = 1 << _INTER_BITS


# the OpenCV wheels' type stubs disagree on remap's optional map2 (None): call it untyped
_remap: Any = cv2.remap


def _to_int32(v: np.ndarray) -> np.ndarray:
    """Round half to even and saturate to int32, as OpenCV's saturate_cast<int>(double)."""
    lim = float(np.iinfo(np.int32).max)
    if not np.abs(v).max() < lim:  # NaN or out of range (degenerate warps only)
        np.clip(np.nan_to_num(v, copy=False), -lim, lim, out=v)
    return np.rint(v, out=v).astype(np.int32)


def _to_int16(v: np.ndarray) -> np.ndarray:
    """Saturate to int16, as saturate_cast<short>."""
    if v.size and (v.min() < -32768 or v.max() > 32767):
        return np.clip(v, -32768, 32767)
    return v


def quad_transform(src: npt.ArrayLike, dst: npt.ArrayLike) -> np.ndarray:
    """cv2.getPerspectiveTransform on float32 corners (as mediapipe passes them): 3x3 src->dst."""
    return cv2.getPerspectiveTransform(np.asarray(src, np.float32), np.asarray(dst, np.float32))


def warp_perspective(
    image: np.ndarray,
    matrix: np.ndarray,
    size: tuple[int, int],
    interpolation: Literal["linear", "nearest"] = "linear",
    border: int = cv2.BORDER_REPLICATE,
) -> np.ndarray:
    """``cv::warpPerspective(image, matrix, size, interpolation, border)`` as OpenCV 4.x does it.

    ``matrix`` maps source to destination pixels (it is inverted here, as OpenCV does); ``size``
    is (width, height) of the output; ``border`` a cv2.BORDER_* constant (constant border = 0).
    """
    ok, inv = cv2.invert(np.asarray(matrix, np.float64))
    if not ok:
        raise ValueError("singular warp matrix")
    w, h = size
    xs = np.arange(w, dtype=np.float64)
    ys = np.arange(h, dtype=np.float64)
    scale = float(_TAB) if interpolation == "linear" else 1.0
    den = np.add.outer(inv[2, 1] * ys + inv[2, 2], inv[2, 0] * xs)
    den /= scale
    np.divide(1.0, den, out=den, where=den != 0)
    fx = np.add.outer(inv[0, 1] * ys + inv[0, 2], inv[0, 0] * xs)
    fx *= den
    fy = np.add.outer(inv[1, 1] * ys + inv[1, 2], inv[1, 0] * xs)
    fy *= den
    x = _to_int32(fx)
    y = _to_int32(fy)
    xy = np.empty((h, w, 2), dtype=np.int16)
    if interpolation == "nearest":
        xy[..., 0] = _to_int16(x)
        xy[..., 1] = _to_int16(y)
        return _remap(image, xy, None, cv2.INTER_NEAREST, borderMode=border, borderValue=0)
    if interpolation != "linear":
        raise ValueError(f"unknown interpolation {interpolation!r} (choose 'linear' or 'nearest')")
    xy[..., 0] = _to_int16(x >> _INTER_BITS)
    xy[..., 1] = _to_int16(y >> _INTER_BITS)
    frac = ((y & (_TAB - 1)) << _INTER_BITS | (x & (_TAB - 1))).astype(np.uint16)
    return _remap(image, xy, frac, cv2.INTER_LINEAR, borderMode=border, borderValue=0)
