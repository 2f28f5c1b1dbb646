"""One dense backward map per frame: triangle-id raster, per-triangle affines, one ``cv2.remap``.

The triangle-id raster is vectorised (each triangle's box of pixel centres tested against its
barycentric affine, the last containing triangle wins), so no Python loop runs per triangle.

Only the part of the frame where vertices moved is touched: the box around the moved triangles
is rasterised (optionally at a lower resolution, then bilinearly upsampled: where the map is
continuous and piecewise linear, upsampling is nearly exact) and remapped; the rest of the
frame is the photo itself.

Cuts. The mesh is cut along the lips and the lids (the upper and the lower lip are different
vertices): when the mouth closes further than in the photo, the upper lip's triangles meet the lower
lip's in the frame while their sources are the photo's two lips, a mouth opening apart. The map
jumps there, and a bilinearly upsampled map would sample the photo between the lips (teeth) along
the closed lip line. Low-resolution cells next to such a jump (a large second difference of the
map) are therefore recomputed at full resolution (``_exact_patches``).
"""

from __future__ import annotations

import cv2
import numpy as np

from .geometry import barycentric_affines

__all__ = ["BackwardMap", "compute_backward_map"]

_EPS = 1e-4  # barycentric tolerance: pixel centres on a shared edge belong to both triangles
_CUT_TOLERANCE = 1.5  # source pixels: a larger second difference of the low-res map is a jump
_PATCH = 8  # low-res cells per side of the blocks recomputed at full resolution around a jump

BackwardMap = tuple[int, int, np.ndarray, np.ndarray]
"""(x0, y0, map_x, map_y): source coordinates for the output pixels of the box at (x0, y0)."""


def _triangle_ids(
    tdst: np.ndarray, bary: np.ndarray, gx: np.ndarray, gy: np.ndarray, n: int, ident: int
) -> np.ndarray:
    """For every pixel of the (lh, lw) grid at ``gx`` x ``gy``: the last triangle that contains
    it (``ident`` where none does), int32.

    Vectorised: each triangle's bounding box of pixel centres is enumerated (row spans, then the
    pixels of each span: no division) and tested against its barycentric affine (no per-triangle
    Python loop). ``tdst`` are the triangles (T, 3, 2) in full-resolution pixels; degenerate
    (zero-area) ones cover nothing.
    """
    lw, lh = gx.shape[1], gy.shape[0]
    ox, oy = float(gx[0, 0]), float(gy[0, 0])
    v0, v1, v2 = tdst[:, 0], tdst[:, 1], tdst[:, 2]
    lo = np.minimum(np.minimum(v0, v1), v2)
    hi = np.maximum(np.maximum(v0, v1), v2)
    jx0 = np.clip(np.ceil((lo[:, 0] - ox) / n - 1e-6), 0, lw).astype(np.intp)
    jx1 = np.clip(np.floor((hi[:, 0] - ox) / n + 1e-6), -1, lw - 1).astype(np.intp)
    jy0 = np.clip(np.ceil((lo[:, 1] - oy) / n - 1e-6), 0, lh).astype(np.intp)
    jy1 = np.clip(np.floor((hi[:, 1] - oy) / n + 1e-6), -1, lh - 1).astype(np.intp)
    e1 = v1 - v0
    e2 = v2 - v0
    area = np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    bh = np.where(area > 1e-6, np.maximum(jy1 - jy0 + 1, 0), 0)
    bw = np.where(bh > 0, np.maximum(jx1 - jx0 + 1, 0), 0)
    # one span per (triangle, row of its box) ...
    rtri = np.repeat(np.arange(len(tdst)), bh)
    ry = jy0[rtri] + (np.arange(rtri.size) - (np.cumsum(bh) - bh)[rtri])
    rw = bw[rtri]
    # ... and one candidate per pixel of a span
    tri = np.repeat(rtri, rw)
    jx = np.arange(tri.size) - np.repeat(np.cumsum(rw) - rw - jx0[rtri], rw)
    jy = np.repeat(ry, rw)
    px = gx[0].take(jx)
    py = gy[:, 0].take(jy)
    b = bary.T
    c1 = b[0].take(tri) * px + b[1].take(tri) * py + b[2].take(tri)
    c2 = b[3].take(tri) * px + b[4].take(tri) * py + b[5].take(tri)
    inside = np.minimum(np.minimum(c1, c2), 1.0 - c1 - c2) >= -_EPS
    pix = (jy * lw + jx)[inside]
    winner = np.full(lh * lw, -1, np.intp)
    np.maximum.at(winner, pix, tri[inside])  # later triangles cover earlier ones
    return np.where(winner < 0, ident, winner).reshape(lh, lw).astype(np.int32)


def _affine_map(
    ids: np.ndarray,
    bary: np.ndarray,
    s0: np.ndarray,
    e1: np.ndarray,
    e2: np.ndarray,
    gx: np.ndarray,
    gy: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Source coordinates (map_x, map_y) of the pixels at ``gx`` x ``gy`` through triangle ``ids``."""
    b1 = np.take(bary[:, 0], ids) * gx + np.take(bary[:, 1], ids) * gy + np.take(bary[:, 2], ids)
    b2 = np.take(bary[:, 3], ids) * gx + np.take(bary[:, 4], ids) * gy + np.take(bary[:, 5], ids)
    # clamp into the triangle: a pixel the rasteriser added along an edge must not extrapolate
    # the triangle's map far outside its source triangle
    np.maximum(b1, 0.0, out=b1)
    np.maximum(b2, 0.0, out=b2)
    tot = np.maximum(b1 + b2, 1.0)
    b1 /= tot
    b2 /= tot
    mx = np.take(s0[:, 0], ids) + b1 * np.take(e1[:, 0], ids) + b2 * np.take(e2[:, 0], ids)
    my = np.take(s0[:, 1], ids) + b1 * np.take(e1[:, 1], ids) + b2 * np.take(e2[:, 1], ids)
    return mx, my


def _cut_cells(mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """(lh, lw) bool: low-resolution cells next to a jump of the map (a cut of the mesh).

    Within a triangle the map is affine, so its second difference along a row or a column is 0;
    across a shared edge it is a kink, at most the change of slope times one cell; across a cut
    it is the jump itself, on both sides. Cells flagged in excess (strong kinks) only cost an
    exact recomputation.
    """
    cut = np.zeros(mx.shape, bool)
    for m in (mx, my):
        ddx = np.abs(m[:, 2:] - 2.0 * m[:, 1:-1] + m[:, :-2]) > _CUT_TOLERANCE
        ddy = np.abs(m[2:, :] - 2.0 * m[1:-1, :] + m[:-2, :]) > _CUT_TOLERANCE
        cut[:, 1:-1] |= ddx
        cut[1:-1, :] |= ddy
    return cut


def _exact_patches(cut: np.ndarray, n: int, bw: int, bh: int) -> list[tuple[int, int, int, int]]:
    """Full-resolution boxes (y0, y1, x0, x1), box-relative, covering every pixel whose upsampled
    map interpolates a flagged cell: the bounding boxes of the connected groups of blocks of
    ``_PATCH`` x ``_PATCH`` cells that hold a flagged cell or one of its neighbours."""
    found = cv2.findNonZero(cut.view(np.uint8))  # x, y pairs; much faster than np.nonzero
    if found is None:
        return []
    found = found.reshape(-1, 2).astype(np.intp)
    xs, ys = found[:, 0], found[:, 1]
    lh, lw = cut.shape
    b = _PATCH  # >= 3: a cell and its neighbours lie in at most 2 x 2 blocks, those of the corners
    pw = -(-lw // b)
    rows = (np.maximum(ys - 1, 0) // b, np.minimum(ys + 1, lh - 1) // b)
    cols = (np.maximum(xs - 1, 0) // b, np.minimum(xs + 1, lw - 1) // b)
    active = np.zeros((-(-lh // b), pw), np.uint8)
    for r in rows:
        for c in cols:
            active[r, c] = 1
    # one box per connected group of blocks (a closed mouth, a closed eye)
    count, _, stats, _ = cv2.connectedComponentsWithStats(active, connectivity=8)
    boxes = []
    for k in range(1, count):
        c0, r0, cw, rh = (int(v) for v in stats[k, :4])
        boxes.append((r0 * b * n, min((r0 + rh) * b * n, bh), c0 * b * n, min((c0 + cw) * b * n, bw)))
    return boxes


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
    gx = (x0 + (n - 1) / 2.0 + n * np.arange(lw, dtype=np.float32))[None, :]
    gy = (y0 + (n - 1) / 2.0 + n * np.arange(lh, dtype=np.float32))[:, None]
    ids = _triangle_ids(tdst[idx], bary, gx, gy, n, len(idx)).astype(np.intp)  # take() wants intp
    mx, my = _affine_map(ids, bary, s0, e1, e2, gx, gy)
    if n > 1:
        cuts = _cut_cells(mx, my)
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
        tlo, thi = lo[idx], hi[idx]
        for py0, py1, px0, px1 in _exact_patches(cuts, n, bw, bh):
            fx = np.arange(x0 + px0, x0 + px1, dtype=np.float32)[None, :]
            fy = np.arange(y0 + py0, y0 + py1, dtype=np.float32)[:, None]
            # every triangle whose box meets the patch (slivers no low-res cell saw included)
            near = np.flatnonzero(
                (thi[:, 0] >= x0 + px0 - 1)
                & (tlo[:, 0] <= x0 + px1)
                & (thi[:, 1] >= y0 + py0 - 1)
                & (tlo[:, 1] <= y0 + py1)
            )  # ascending: the draw order is kept
            local = _triangle_ids(tdst[idx[near]], bary[near], fx, fy, 1, len(near))
            fids = np.append(near, len(idx))[local]  # back to the box's ids (the identity last)
            mx[py0:py1, px0:px1], my[py0:py1, px0:px1] = _affine_map(fids, bary, s0, e1, e2, fx, fy)
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x1, w), min(y1, h)
    mx = mx[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    my = my[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    return cx0, cy0, np.ascontiguousarray(mx), np.ascontiguousarray(my)
