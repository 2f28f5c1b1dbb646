"""One dense backward map per frame: triangle-id raster, per-triangle affines, one ``cv2.remap``.

Only the part of the frame where vertices moved is touched: the box around the moved triangles
is rasterised (optionally at a lower resolution, then bilinearly upsampled: the map is
continuous and piecewise linear, so upsampling is nearly exact) and remapped; the rest of the
frame is the photo itself.
"""

from __future__ import annotations

import cv2
import numpy as np

from .geometry import barycentric_affines

__all__ = ["BackwardMap", "compute_backward_map"]

_SHIFT = 4  # sub-pixel bits for cv2.fillConvexPoly

BackwardMap = tuple[int, int, np.ndarray, np.ndarray]
"""(x0, y0, map_x, map_y): source coordinates for the output pixels of the box at (x0, y0)."""


def _resolve(
    bad: np.ndarray,
    ids: np.ndarray,
    ids_first: np.ndarray,
    bary: np.ndarray,
    gx: np.ndarray,
    gy: np.ndarray,
    b1: np.ndarray,
    b2: np.ndarray,
) -> None:
    """Give pixels that their painted triangle does not contain the right triangle (in place).

    Candidates are the triangles painted on the pixel and its 8 neighbours (last and first drawn);
    among those that contain the pixel the last drawn wins, else the least outside one.
    """
    ys, xs = np.nonzero(bad)
    h, w = ids.shape
    cands = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            yy = np.clip(ys + dy, 0, h - 1)
            xx = np.clip(xs + dx, 0, w - 1)
            cands += [ids[yy, xx], ids_first[yy, xx]]
    c = np.stack(cands, axis=1)  # (N, 18)
    px = gx[0, xs][:, None]
    py = gy[ys, 0][:, None]
    c1 = bary[c, 0] * px + bary[c, 1] * py + bary[c, 2]
    c2 = bary[c, 3] * px + bary[c, 4] * py + bary[c, 5]
    inside = np.minimum(np.minimum(c1, c2), 1.0 - c1 - c2)
    contains = inside >= -1e-3
    # the identity "triangle" (largest id) only wins when nothing else contains the pixel
    ident = len(bary) - 1
    score = np.where(contains, np.where(c == ident, -1, c).astype(np.float64) + 1e6, inside)
    best = np.argmax(score, axis=1)
    row = np.arange(len(ys))
    ids[ys, xs] = c[row, best]
    b1[ys, xs] = c1[row, best]
    b2[ys, xs] = c2[row, best]


def compute_backward_map(
    src: np.ndarray,
    dst: np.ndarray,
    triangles: np.ndarray,
    shape: tuple[int, int],
    downsample: int = 2,
    epsilon: float = 0.01,
) -> BackwardMap | None:
    """Backward map of the piecewise-affine warp taking ``src`` vertices to ``dst`` vertices.

    Triangles are drawn in order (later ones cover earlier ones). Pixels that no triangle covers
    map to themselves. Returns None when nothing moved (the output is the photo).
    """
    h, w = shape
    n = max(int(downsample), 1)
    moved = np.abs(dst - src).max(axis=1) > epsilon
    tri_moved = moved[triangles].any(axis=1)
    if not tri_moved.any():
        return None
    tdst = dst[triangles]  # (T, 3, 2)
    lo = tdst.min(axis=1)
    hi = tdst.max(axis=1)
    mlo = lo[tri_moved].min(axis=0)
    mhi = hi[tri_moved].max(axis=0)
    pad = 2 * n
    x0 = int(np.floor(max(mlo[0], 0.0))) - pad
    y0 = int(np.floor(max(mlo[1], 0.0))) - pad
    x1 = int(np.ceil(min(mhi[0], w - 1.0))) + pad + 1
    y1 = int(np.ceil(min(mhi[1], h - 1.0))) + pad + 1
    x0 -= x0 % n
    y0 -= y0 % n
    x1 += (-(x1 - x0)) % n
    y1 += (-(y1 - y0)) % n
    if x1 <= x0 or y1 <= y0:
        return None
    bw, bh = x1 - x0, y1 - y0
    lw, lh = bw // n, bh // n
    sel = (hi[:, 0] >= x0) & (lo[:, 0] <= x1) & (hi[:, 1] >= y0) & (lo[:, 1] <= y1)
    idx = np.nonzero(sel)[0]
    # barycentric coordinates (b1, b2) as affine functions of the target pixel, per triangle;
    # the last "triangle" is a large identity one for pixels that no triangle covers
    big = float(4 * (bw + bh))
    ident = np.array([[x0 - big, y0 - big], [x0 + 3 * big, y0 - big], [x0 - big, y0 + 3 * big]])
    tri_dst = np.concatenate([tdst[idx], ident[None]])
    tri_src = np.concatenate([src[triangles[idx]], ident[None]])
    bary = barycentric_affines(tri_dst).astype(np.float32)
    s0 = tri_src[:, 0].astype(np.float32)
    e1 = (tri_src[:, 1] - tri_src[:, 0]).astype(np.float32)
    e2 = (tri_src[:, 2] - tri_src[:, 0]).astype(np.float32)
    # low-res pixel j <-> full-res coordinate x0 + n*j + (n-1)/2
    off = np.array([x0 + (n - 1) / 2.0, y0 + (n - 1) / 2.0])
    pts = np.round((tdst[idx] - off) / n * (1 << _SHIFT)).astype(np.int32)
    # The rasteriser also paints pixels just outside a triangle's edges. For slivers that pixel can
    # be far outside in barycentric terms, so each pixel gets two candidates (last and first
    # triangle drawn over it) and keeps the last one unless only the first really contains it.
    ids = np.full((lh, lw), len(idx), np.int32)
    ids_first = np.full((lh, lw), len(idx), np.int32)
    fill = cv2.fillConvexPoly
    for k in range(len(idx)):
        fill(ids, pts[k], k, cv2.LINE_8, _SHIFT)
    for k in range(len(idx) - 1, -1, -1):
        fill(ids_first, pts[k], k, cv2.LINE_8, _SHIFT)
    gx = (x0 + (n - 1) / 2.0 + n * np.arange(lw, dtype=np.float32))[None, :]
    gy = (y0 + (n - 1) / 2.0 + n * np.arange(lh, dtype=np.float32))[:, None]

    def coords(i: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c1 = np.take(bary[:, 0], i) * gx + np.take(bary[:, 1], i) * gy + np.take(bary[:, 2], i)
        c2 = np.take(bary[:, 3], i) * gx + np.take(bary[:, 4], i) * gy + np.take(bary[:, 5], i)
        return c1, c2, np.minimum(np.minimum(c1, c2), 1.0 - c1 - c2)

    b1, b2, inside = coords(ids)
    bad = inside < -1e-3
    if bad.any():
        _resolve(bad, ids, ids_first, bary, gx, gy, b1, b2)
    # clamp into the triangle: a pixel the rasteriser added along an edge must not extrapolate
    # the triangle's map far outside its source triangle
    np.maximum(b1, 0.0, out=b1)
    np.maximum(b2, 0.0, out=b2)
    tot = np.maximum(b1 + b2, 1.0)
    b1 /= tot
    b2 /= tot
    mx = np.take(s0[:, 0], ids) + b1 * np.take(e1[:, 0], ids) + b2 * np.take(e2[:, 0], ids)
    my = np.take(s0[:, 1], ids) + b1 * np.take(e1[:, 1], ids) + b2 * np.take(e2[:, 1], ids)
    if n > 1:
        mx = cv2.resize(mx, (bw, bh), interpolation=cv2.INTER_LINEAR)
        my = cv2.resize(my, (bw, bh), interpolation=cv2.INTER_LINEAR)
        # the padded rim is still; resize clamps there, so restore the exact identity
        e = n
        xs = np.arange(x0, x1, dtype=np.float32)
        ys = np.arange(y0, y1, dtype=np.float32)
        mx[:e, :] = xs[None, :]
        mx[-e:, :] = xs[None, :]
        mx[:, :e] = xs[:e][None, :]
        mx[:, -e:] = xs[-e:][None, :]
        my[:e, :] = ys[:e][:, None]
        my[-e:, :] = ys[-e:][:, None]
        my[:, :e] = ys[:, None]
        my[:, -e:] = ys[:, None]
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x1, w), min(y1, h)
    mx = mx[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    my = my[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    return cx0, cy0, np.ascontiguousarray(mx), np.ascontiguousarray(my)
