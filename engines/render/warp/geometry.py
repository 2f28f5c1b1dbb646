"""Small 2D geometry helpers shared by the warp renderer's parts (pure numpy / OpenCV)."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "UPPER_LANDMARKS",
    "barycentric_affines",
    "clip_into_polygon",
    "eye_chains",
    "local_frame",
    "similarity",
    "smoothstep",
]


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2D similarity (rotation, uniform scale, shift) taking ``src`` to ``dst``: (2, 3)."""
    zs = src[:, 0].astype(np.float64) + 1j * src[:, 1]
    zd = dst[:, 0].astype(np.float64) + 1j * dst[:, 1]
    ms, md = zs.mean(), zd.mean()
    den = float(np.sum(np.abs(zs - ms) ** 2))
    a = complex(np.sum(np.conj(zs - ms) * (zd - md)) / den) if den > 1e-9 else 1.0 + 0j
    b = md - a * ms
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]], dtype=np.float64)


def barycentric_affines(tri: np.ndarray) -> np.ndarray:
    """Per triangle, (b1, b2) barycentric coordinates as affine functions of the pixel: (T, 6).

    ``b1 = a x + b y + c``, ``b2 = d x + e y + f`` (``b0 = 1 - b1 - b2``). Degenerate triangles
    (which cover no pixels) give the centroid everywhere.
    """
    t = tri.astype(np.float64)
    e1 = t[:, 1] - t[:, 0]
    e2 = t[:, 2] - t[:, 0]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    ok = np.abs(det) > 1e-9
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    a = e2[:, 1] * inv
    b = -e2[:, 0] * inv
    d = -e1[:, 1] * inv
    e = e1[:, 0] * inv
    c = -(a * t[:, 0, 0] + b * t[:, 0, 1])
    f = -(d * t[:, 0, 0] + e * t[:, 0, 1])
    c = np.where(ok, c, 1.0 / 3.0)
    f = np.where(ok, f, 1.0 / 3.0)
    return np.stack([a, b, c, d, e, f], axis=1)


#: Landmarks that lie on an upper chain: the upper inner lip's middle, the upper lids' middles.
UPPER_LANDMARKS = (13, 159, 386)


def eye_chains(contour: np.ndarray, pts: np.ndarray) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Split an ordered eye contour into (corner_a, corner_b, upper chain, lower chain).

    Corners are the extremes along the contour's main axis; chains run from corner_a to corner_b
    (corners excluded); "upper" is the chain holding a known upper landmark (13: the upper inner
    lip; 159 / 386: the upper lids), else the one with the smaller mean y. The mean y alone is a coin
    toss when the lips or lids touch (a closed mouth in the photo): swapped chains made the mouth
    gap read negative and the mouth interior was never drawn.
    """
    p = pts[contour].astype(np.float64)
    c = p - p.mean(axis=0)
    axis = np.linalg.svd(c, full_matrices=False)[2][0]
    if axis[0] < 0:
        axis = -axis
    proj = c @ axis
    ia, ib = int(np.argmin(proj)), int(np.argmax(proj))
    n = len(contour)
    fwd = [contour[(ia + k) % n] for k in range(1, (ib - ia) % n)]
    back = [contour[(ia - k) % n] for k in range(1, (ia - ib) % n)]
    one, other = np.asarray(fwd, np.int64), np.asarray(back, np.int64)
    known = [k for k in UPPER_LANDMARKS if k in one or k in other]
    if known:
        if known[0] in other:
            one, other = other, one
    elif pts[one, 1].mean() > pts[other, 1].mean():
        one, other = other, one
    return int(contour[ia]), int(contour[ib]), one, other


def local_frame(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Origin ``a``, unit axis towards ``b``, its normal pointing image-down, and the length."""
    v = (b - a).astype(np.float64)
    n = float(np.hypot(v[0], v[1]))
    x = v / max(n, 1e-9)
    y = np.array([-x[1], x[0]])
    return a.astype(np.float64), x, y, n


def clip_into_polygon(p: np.ndarray, poly: np.ndarray, margin: float) -> np.ndarray:
    """Move ``p`` towards the polygon's centroid until it lies ``margin`` pixels inside (if it can)."""
    c = poly.mean(axis=0)
    contour = poly.astype(np.float32).reshape(-1, 1, 2)
    for t in (1.0, 0.85, 0.7, 0.55, 0.4, 0.25, 0.1, 0.0):
        q = c + t * (p - c)
        if cv2.pointPolygonTest(contour, (float(q[0]), float(q[1])), True) >= margin:
            return q
    return c


def smoothstep(x: np.ndarray) -> np.ndarray:
    """Hermite ramp: 0 below 0, 1 above 1, smooth between."""
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)
