"""The warp mesh: face triangles, eye and mouth fills, rings around the face, border and torso.

Built once per avatar. Per frame, ``targets`` turns a posed frame into target positions of every
vertex; the source positions (where each vertex sits in the photo) never change.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Delaunay

from vlogger.engines.avatar.topology import FaceTopology

from .config import WarpConfig
from .eyes import EyeModel
from .geometry import similarity
from .mouth import MouthModel

__all__ = ["FrameTargets", "WarpMesh"]

NUM_FACE = 478


@dataclass
class FrameTargets:
    """Target vertex positions of one frame plus what the overlays need."""

    vertices: np.ndarray
    """(V, 2) float64 target positions, same order as ``WarpMesh.source``."""
    eye_fill: list[np.ndarray]
    """Per eye, the target upper boundary of the eye fill (the photo's opening)."""
    eye_closure: list[float]
    """Per eye, 0 = as open as in the photo, 1 = closed."""


def _strip(a: list[int], b: list[int]) -> list[tuple[int, int, int]]:
    tris = []
    for i in range(len(a) - 1):
        for tri in ((a[i], a[i + 1], b[i + 1]), (a[i], b[i + 1], b[i])):
            if len(set(tri)) == 3:
                tris.append(tri)
    return tris


class WarpMesh:
    """All vertices and triangles of the warp, with the per-frame target computation."""

    def __init__(
        self,
        shape: tuple[int, int],
        face: np.ndarray,
        body: np.ndarray,
        body_visible: np.ndarray,
        topology: FaceTopology,
        eyes: list[EyeModel],
        mouth: MouthModel,
        config: WarpConfig,
    ) -> None:
        h, w = shape
        self.shape = shape
        self.config = config
        self.eyes = eyes
        self.mouth = mouth
        face2 = face[:, :2].astype(np.float64)
        src: list[np.ndarray] = [face2]
        n = NUM_FACE
        # mouth middle rows
        m = len(mouth.upper)
        self.mouth_m1 = np.arange(n, n + m)
        self.mouth_m2 = np.arange(n + m, n + 2 * m)
        src += [mouth.src_mid, mouth.src_mid]
        n += 2 * m
        # eye fills: duplicated upper lid + iris centre
        self.eye_fill_idx: list[np.ndarray] = []
        self.eye_centre_idx: list[int] = []
        self.eye_inner_idx: list[np.ndarray] = []
        for eye in eyes:
            k = len(eye.upper)
            self.eye_fill_idx.append(np.arange(n, n + k))
            self.eye_centre_idx.append(n + k)
            self.eye_inner_idx.append(np.arange(n + k + 1, n + k + 1 + len(eye.contour)))
            src += [face2[eye.upper], eye.source_centre(face2)[None, :], eye.source_inner(face2)]
            n += k + 1 + len(eye.contour)
        # rings around the oval
        oval = np.asarray(topology.face_oval, np.int64)
        self.oval = oval
        self.centre = face2[oval].mean(axis=0)
        rings = self._rings(face2[oval], w, h)
        self.ring_idx = [oval]
        for r in rings:
            self.ring_idx.append(np.arange(n, n + len(oval)))
            src.append(r)
            n += len(oval)
        # border + torso grid around the outermost ring
        outer_ring = rings[-1] if rings else face2[oval]
        extra, n_border = self._outer_points(outer_ring, w, h)
        self.outer_idx = np.arange(n, n + len(extra))
        self.n_border = n_border
        src.append(extra)
        n += len(extra)
        self.source: np.ndarray = np.concatenate(src).astype(np.float64)
        """(V, 2) where every vertex sits in the photo."""

        # --- triangles, in draw order: background, eye fills, face (far to near), mouth
        outer_tris = self._outer_triangles(self.ring_idx[-1], self.outer_idx)
        ring_tris = []
        for a, b in zip(self.ring_idx[:-1], self.ring_idx[1:], strict=True):
            a_l = [*a.tolist(), int(a[0])]
            b_l = [*b.tolist(), int(b[0])]
            ring_tris += _strip(a_l, b_l)
        eye_tris = []
        for eye, fill_idx, c, inner in zip(
            eyes, self.eye_fill_idx, self.eye_centre_idx, self.eye_inner_idx, strict=True
        ):
            rep = dict(zip(eye.upper.tolist(), fill_idx.tolist(), strict=True))
            loop = [rep.get(int(i), int(i)) for i in eye.contour]
            il = inner.tolist()
            eye_tris += [(c, il[j], il[(j + 1) % len(il)]) for j in range(len(il))]
            eye_tris += _strip([*il, il[0]], [*loop, loop[0]])
        tris = np.asarray(topology.triangles, np.int64)
        depth = face[:, 2][tris].mean(axis=1) if face.shape[1] > 2 else np.zeros(len(tris))
        face_tris = tris[np.argsort(-depth, kind="stable")]
        ca, cb = mouth.corner_a, mouth.corner_b
        rows = [
            [ca, *mouth.upper.tolist(), cb],
            [ca, *self.mouth_m1.tolist(), cb],
            [ca, *self.mouth_m2.tolist(), cb],
            [ca, *mouth.lower.tolist(), cb],
        ]
        mouth_tris = _strip(rows[0], rows[1]) + _strip(rows[1], rows[2]) + _strip(rows[2], rows[3])
        self.triangles = np.concatenate(
            [
                np.asarray(outer_tris, np.int64).reshape(-1, 3),
                np.asarray(ring_tris, np.int64).reshape(-1, 3),
                np.asarray(eye_tris, np.int64).reshape(-1, 3),
                face_tris,
                np.asarray(mouth_tris, np.int64).reshape(-1, 3),
            ]
        ).astype(np.int32)

        # --- torso drivers
        keys = [k for k in config.torso_keypoints if k < len(body) and bool(body_visible[k])]
        self.torso_keys = np.asarray(keys, np.int64)
        self.torso_src = body[self.torso_keys].astype(np.float64) if keys else np.zeros((0, 2))
        if 11 in keys and 12 in keys:
            span = float(np.linalg.norm(body[11] - body[12]))
        else:
            span = 0.3 * max(w, h)
        self.torso_reach = max(config.torso_reach * span, 1.0)
        self._torso_free = [self.source[i] for i in self.ring_idx[1:]] + [self.source[self.outer_idx]]
        self._border_fall = [self._border_falloff(p, w, h) for p in self._torso_free]

    # ----------------------------------------------------------------- construction helpers
    def _rings(self, oval: np.ndarray, w: int, h: int) -> list[np.ndarray]:
        scales = np.asarray(self.config.ring_scales, np.float64)
        if len(scales) == 0:
            return []
        d = oval - self.centre
        margin = 0.03 * min(w, h)
        smax = np.full(len(oval), np.inf)
        for axis, lim in ((0, w - 1), (1, h - 1)):
            pos = d[:, axis] > 1e-9
            neg = d[:, axis] < -1e-9
            smax[pos] = np.minimum(smax[pos], (lim - margin - self.centre[axis]) / d[pos, axis])
            smax[neg] = np.minimum(smax[neg], (margin - self.centre[axis]) / d[neg, axis])
        top = scales[-1]
        squeeze = np.clip((smax - 1.0) / max(top - 1.0, 1e-9), 0.05, 1.0)
        return [self.centre + (1.0 + (s - 1.0) * squeeze)[:, None] * d for s in scales]

    def _outer_points(self, ring: np.ndarray, w: int, h: int) -> tuple[np.ndarray, int]:
        nb = max(self.config.border_points, 1)
        xs = np.linspace(0.0, w - 1.0, nb + 1)[1:-1]
        ys = np.linspace(0.0, h - 1.0, nb + 1)[1:-1]
        corners = [(0.0, 0.0), (w - 1.0, 0.0), (0.0, h - 1.0), (w - 1.0, h - 1.0)]
        sides = [(x, 0.0) for x in xs] + [(x, h - 1.0) for x in xs]
        sides += [(0.0, y) for y in ys] + [(w - 1.0, y) for y in ys]
        contour = ring.astype(np.float32).reshape(-1, 1, 2)
        step = min(w, h) / max(self.config.torso_grid, 1)
        sides = [
            p for p in sides if cv2.pointPolygonTest(contour, (float(p[0]), float(p[1])), True) < -0.25 * step
        ]
        border_a = np.asarray(corners + sides, np.float64)
        g = max(self.config.torso_grid, 1)
        gx, gy = np.meshgrid(np.linspace(0, w - 1, g + 1)[1:-1], np.linspace(0, h - 1, g + 1)[1:-1])
        grid = np.column_stack([gx.ravel(), gy.ravel()])
        keep_g = [
            p for p in grid if cv2.pointPolygonTest(contour, (float(p[0]), float(p[1])), True) < -0.6 * step
        ]
        pts = np.concatenate([border_a, np.asarray(keep_g, np.float64).reshape(-1, 2)])
        return pts, len(border_a)

    def _outer_triangles(self, ring_idx: np.ndarray, outer_idx: np.ndarray) -> list[tuple[int, int, int]]:
        ring_pts = self._src_of(ring_idx)
        extra = list(range(len(outer_idx)))
        n_r = len(ring_idx)
        for _ in range(60):
            pts = np.concatenate([ring_pts, self._src_of(outer_idx[extra])])
            tri = Delaunay(pts)
            simp = tri.simplices
            edges = {
                tuple(sorted((int(a), int(b))))
                for s in simp
                for a, b in ((s[0], s[1]), (s[1], s[2]), (s[0], s[2]))
            }
            missing = [i for i in range(n_r) if tuple(sorted((i, (i + 1) % n_r))) not in edges]
            if not missing:
                break
            # drop the non-ring point closest to the first missing edge's midpoint (never a corner)
            i = missing[0]
            mid = 0.5 * (ring_pts[i] + ring_pts[(i + 1) % n_r])
            cand = [k for k in range(len(extra)) if extra[k] >= 4]  # the 4 corners stay
            dist = [float(np.linalg.norm(pts[n_r + k] - mid)) for k in cand]
            extra.pop(cand[int(np.argmin(dist))])
        contour = ring_pts.astype(np.float32).reshape(-1, 1, 2)
        glob = np.concatenate([ring_idx, outer_idx[extra]])
        out = []
        for s in simp:
            c = pts[s].mean(axis=0)
            if cv2.pointPolygonTest(contour, (float(c[0]), float(c[1])), False) > 0:
                continue
            out.append((int(glob[s[0]]), int(glob[s[1]]), int(glob[s[2]])))
        return out

    def _src_of(self, idx: np.ndarray) -> np.ndarray:
        return self.source[idx]

    def _border_falloff(self, p: np.ndarray, w: int, h: int) -> np.ndarray:
        d = np.minimum.reduce([p[:, 0], w - 1 - p[:, 0], p[:, 1], h - 1 - p[:, 1]])
        return np.clip(d / (0.1 * min(w, h)), 0.0, 1.0)

    # ----------------------------------------------------------------- per frame
    def torso_displacement(self, p: np.ndarray, body: np.ndarray, falloff: np.ndarray) -> np.ndarray:
        if len(self.torso_keys) == 0:
            return np.zeros_like(p)
        disp = body[self.torso_keys].astype(np.float64) - self.torso_src
        if not np.any(np.abs(disp) > 1e-6):
            return np.zeros_like(p)
        d2 = ((p[:, None, :] - self.torso_src[None, :, :]) ** 2).sum(-1)
        wgt = 1.0 / (d2 + (0.15 * self.torso_reach) ** 2)
        mean = (wgt[:, :, None] * disp[None, :, :]).sum(1) / wgt.sum(1)[:, None]
        near = np.exp(-d2.min(axis=1) / self.torso_reach**2)
        return mean * (near * falloff)[:, None]

    def targets(self, face: np.ndarray, body: np.ndarray) -> FrameTargets:
        dst = self.source.copy()
        f = face[:, :2].astype(np.float64)
        dst[:NUM_FACE] = f
        m1, m2 = self.mouth.mid_targets(f)
        dst[self.mouth_m1] = m1
        dst[self.mouth_m2] = m2
        fills, closures = [], []
        for eye, fi, ci, ii in zip(
            self.eyes, self.eye_fill_idx, self.eye_centre_idx, self.eye_inner_idx, strict=True
        ):
            fill, centre, closure = eye.fill_targets(f)
            dst[fi] = fill
            dst[ci] = centre
            dst[ii] = eye.inner_targets(f, fill, centre)
            fills.append(fill)
            closures.append(closure)
        src_oval = self.source[self.oval]
        dst_oval = f[self.oval]
        sim = similarity(src_oval, dst_oval)
        resid = dst_oval - (src_oval @ sim[:, :2].T + sim[:, 2])
        cfg = self.config
        for k, idx in enumerate(self.ring_idx[1:]):
            p = self.source[idx]
            head = p @ sim[:, :2].T + sim[:, 2] - p
            fol = cfg.ring_follow[k] if k < len(cfg.ring_follow) else 0.0
            res = cfg.ring_residual[k] if k < len(cfg.ring_residual) else 0.0
            torso = self.torso_displacement(p, body, self._border_fall[k])
            dst[idx] = p + fol * head + res * resid + (1.0 - fol) * torso
        p = self.source[self.outer_idx]
        dst[self.outer_idx] = p + self.torso_displacement(p, body, self._border_fall[-1])
        return FrameTargets(vertices=dst, eye_fill=fills, eye_closure=closures)
