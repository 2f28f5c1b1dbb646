"""Eyes for the warp renderer: the eye-hole fan (gaze), lid closure geometry and the lid overlay."""

from __future__ import annotations

import cv2
import numpy as np

from .config import WarpConfig
from .geometry import clip_into_polygon, eye_chains, local_frame, smoothstep

__all__ = ["EyeModel"]


def _interp_chain(s_query: np.ndarray, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    order = np.argsort(s)
    return np.interp(s_query, s[order], t[order])


class EyeModel:
    """One eye: which landmarks bound it, how open the photo's eye is, and the lid's colours.

    The eye hole is filled by a fan around the iris centre so that moving the iris centre moves
    the iris texture inside the (fixed) lid contour. The fan's upper boundary stays at the photo's
    opening even when the lid comes down; the face triangles of the lid are drawn after the fan, so
    a lowering lid covers the eye instead of squashing it, and a skin-coloured lid with a lash line
    is blended over the covered part by the closure amount.
    """

    def __init__(self, image: np.ndarray, face: np.ndarray, contour: np.ndarray, iris: int) -> None:
        self.contour = np.asarray(contour, np.int64)
        self._src_face = face[:, :2].astype(np.float64).copy()
        self.iris = int(iris)
        self.corner_a, self.corner_b, self.upper, self.lower = eye_chains(self.contour, face)
        o, x, y, width = local_frame(face[self.corner_a], face[self.corner_b])
        self.src_width = max(width, 1.0)
        su, tu = self._local(face[self.upper], o, x, y)
        sl, tl = self._local(face[self.lower], o, x, y)
        sl = np.concatenate([[0.0], sl, [width]])
        tl = np.concatenate([[0.0], tl, [0.0]])
        self.src_gap = np.maximum(_interp_chain(su, sl, tl) - tu, 0.0)
        """Photo's opening above each upper-lid point (pixels, along the eye's normal)."""
        self._src_centre = self.source_centre(self._src_face)
        h, w = image.shape[:2]
        height = max(float(self.src_gap.max()), 1.0)
        # lid skin: above the upper lid by 0.6-1.4 eye heights; lashes: on the lid line
        samples = []
        for k in np.linspace(0.4, 1.2, 9):
            pts = face[self.upper[1:-1]] - k * height * y
            samples.append(pts)
        sk = np.concatenate(samples)
        xi = np.clip(np.round(sk[:, 0]).astype(int), 0, w - 1)
        yi = np.clip(np.round(sk[:, 1]).astype(int), 0, h - 1)
        px = image[yi, xi].astype(np.float32)
        lum = px.sum(axis=1)
        # lid skin: the middle of the brightness range (not lashes, not highlights)
        order = np.argsort(lum)
        self.lid_rgb = px[
            order[len(order) * 2 // 5 : max(len(order) * 4 // 5, len(order) * 2 // 5 + 1)]
        ].mean(axis=0)
        lx = np.clip(np.round(face[self.upper, 0]).astype(int), 0, w - 1)
        ly = np.clip(np.round(face[self.upper, 1]).astype(int), 0, h - 1)
        lash = image[ly, lx].astype(np.float32)
        self.lash_rgb = np.minimum(
            lash[np.argsort(lash.sum(axis=1))[: max(1, len(lash) // 2)]].mean(0), self.lid_rgb * 0.45
        )

    @staticmethod
    def _local(p: np.ndarray, o: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = p.astype(np.float64) - o
        return d @ x, d @ y

    def polygon(self, face: np.ndarray, fill_upper: np.ndarray) -> np.ndarray:
        """The eye-fill polygon in contour order, upper lid replaced by ``fill_upper``."""
        pos = {int(i): face[i] for i in self.contour}
        for k, i in enumerate(self.upper):
            pos[int(i)] = fill_upper[k]
        return np.array([pos[int(i)] for i in self.contour], dtype=np.float64)

    INNER = 0.55
    """The inner loop of the eye fill sits this far from the iris centre towards the lid contour."""

    def source_inner(self, face: np.ndarray) -> np.ndarray:
        c = self.source_centre(face)
        poly = self.polygon(face, face[self.upper])
        return c + self.INNER * (poly - c)

    def inner_targets(self, face: np.ndarray, fill: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """The inner loop moves rigidly with the iris centre (so the iris keeps its shape), as far as
        it stays inside the eye opening; else it falls back towards the linear fan."""
        src_poly = self.polygon(face_src := self._src_face, face_src[self.upper])
        c_s = self._src_centre
        _, x, _, width = local_frame(face[self.corner_a], face[self.corner_b])
        _, xs, _, _ = local_frame(face_src[self.corner_a], face_src[self.corner_b])
        k = width / self.src_width
        cos, sin = float(x @ xs), float(xs[0] * x[1] - xs[1] * x[0])
        rot = k * np.array([[cos, -sin], [sin, cos]])
        rigid = centre + (self.INNER * (src_poly - c_s)) @ rot.T
        poly = self.polygon(face, fill)
        linear = centre + self.INNER * (poly - centre)
        contour = poly.astype(np.float32).reshape(-1, 1, 2)
        for t in (0.0, 0.25, 0.5, 0.75, 1.0):
            q = rigid + t * (linear - rigid)
            if all(cv2.pointPolygonTest(contour, (float(a), float(b)), True) >= 0.3 for a, b in q):
                return q
        return linear

    def fill_targets(self, face: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Upper boundary of the eye fill (at least the photo's opening), iris centre, closure 0..1."""
        o, x, y, width = local_frame(face[self.corner_a], face[self.corner_b])
        k = width / self.src_width
        su, tu = self._local(face[self.upper], o, x, y)
        sl, tl = self._local(face[self.lower], o, x, y)
        sl = np.concatenate([[0.0], sl, [width]])
        tl = np.concatenate([[0.0], tl, [0.0]])
        t_low = _interp_chain(su, sl, tl)
        rest = k * self.src_gap
        gap = t_low - tu
        lift = np.maximum(0.0, rest - gap)
        fill = face[self.upper].astype(np.float64) - lift[:, None] * y[None, :]
        closure = float(np.clip(1.0 - max(gap.sum(), 0.0) / max(rest.sum(), 1e-6), 0.0, 1.0))
        poly = self.polygon(face, fill)
        centre = clip_into_polygon(face[self.iris].astype(np.float64), poly, margin=0.5)
        return fill, centre, closure

    def source_centre(self, face: np.ndarray) -> np.ndarray:
        poly = self.polygon(face, face[self.upper])
        return clip_into_polygon(face[self.iris].astype(np.float64), poly, margin=0.5)

    def composite(
        self, out: np.ndarray, face: np.ndarray, fill: np.ndarray, closure: float, config: WarpConfig
    ) -> None:
        """Blend lid skin (and a lash line at the lid edge) over the part of the eye the lid covers."""
        if closure <= 0.02:
            return
        h, w = out.shape[:2]
        o, x, y, width = local_frame(face[self.corner_a], face[self.corner_b])
        pts = np.concatenate([face[self.contour], fill])
        x0 = max(int(np.floor(pts[:, 0].min())) - 2, 0)
        x1 = min(int(np.ceil(pts[:, 0].max())) + 3, w)
        y0 = max(int(np.floor(pts[:, 1].min())) - 2, 0)
        y1 = min(int(np.ceil(pts[:, 1].max())) + 3, h)
        if x1 <= x0 or y1 <= y0:
            return
        gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64))
        s = (gx - o[0]) * x[0] + (gy - o[1]) * x[1]
        t = (gx - o[0]) * y[0] + (gy - o[1]) * y[1]
        su, tu = self._local(face[self.upper], o, x, y)
        sf, tf = self._local(fill, o, x, y)
        su = np.concatenate([[0.0], su, [width]])
        tu = np.concatenate([[0.0], tu, [0.0]])
        sf = np.concatenate([[0.0], sf, [width]])
        tf = np.concatenate([[0.0], tf, [0.0]])
        t_cur = _interp_chain(s, su, tu)
        t_fill = _interp_chain(s, sf, tf)
        fe = max(config.feather * width, 0.6)
        inside_s = smoothstep(np.minimum(s, width - s) / fe + 0.5)
        # mediapipe's lower lid line sits a little inside the visible eye: when the lid is (nearly)
        # closed, the lid skin reaches slightly below the contact line
        rest_gap = _interp_chain(
            s, sf, np.concatenate([[0.0], self.src_gap * (width / self.src_width), [0.0]])
        )
        ext = 0.35 * rest_gap * float(smoothstep(np.asarray((closure - 0.5) / 0.5)))
        t_low = t_cur + ext
        # the photo's lashes sit just above its lid line and travel down with the lid skin
        t_top = t_fill - 0.4 * rest_gap * closure
        soft_top = max(fe, 0.4 * float(np.max(t_cur - t_fill)))
        lid = smoothstep((t - t_top) / soft_top + 0.5) * smoothstep((t_low - t) / fe + 0.5)
        lash_w = max(0.035 * width, 0.6)
        lash = 0.7 * np.clip(1.0 - np.abs(t - t_cur - 0.4 * ext + 0.3 * lash_w) / lash_w, 0.0, 1.0)
        q = (s / max(width, 1e-6)) * 2.0 - 1.0
        down = np.clip((t - t_top) / np.maximum(t_low - t_top, 1e-6), 0.0, 1.0)
        shade = (1.0 + 0.04 * (1.0 - q * q)) * (1.0 - 0.12 * down * down)
        # per column, match the skin just above the covered part (no visible top edge)
        above = fill - (1.5 + (0.3 + 0.4 * closure) * float(self.src_gap.max())) * y[None, :]
        ax = np.clip(np.round(above[:, 0]).astype(int), 0, w - 1)
        ay = np.clip(np.round(above[:, 1]).astype(int), 0, h - 1)
        top = 0.5 * out[ay, ax].astype(np.float64) + 0.5 * self.lid_rgb[None, :]
        sc = (fill - o) @ x
        cols = np.stack([_interp_chain(s, sc, top[:, c]) for c in range(3)], axis=-1)
        skin = cols * shade[..., None]
        colour = skin * (1.0 - lash[..., None]) + self.lash_rgb[None, None, :] * lash[..., None]
        lash_on = smoothstep(np.asarray(closure * 2.0 - 0.4))
        a_lid = closure * config.lid_strength * np.maximum(lid, lash * lash_on)
        alpha = (a_lid * inside_s)[..., None]
        region = out[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = np.clip(region * (1.0 - alpha) + colour * alpha + 0.5, 0, 255).astype(np.uint8)
