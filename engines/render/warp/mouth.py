"""Mouth for the warp renderer: the mouth-hole mesh and the synthesised interior.

The hole inside the inner lips is filled by four rows of vertices: upper lip, two middle rows,
lower lip. The photo's own opening is split at ``share`` (the dark line between its teeth rows):
the part above stays attached to the upper lip (upper teeth), the part below to the lower lip, so
opening the jaw does not stretch the photo's teeth; the space between the middle rows maps to a
single line of the photo and is covered by a synthesised interior (dark cavity, teeth bands,
tongue hint) blended in by how far the mouth opens beyond the photo's own opening.
"""

from __future__ import annotations

import cv2
import numpy as np

from .config import WarpConfig
from .geometry import eye_chains, local_frame, smoothstep

__all__ = ["MouthModel"]


def _interp(sq: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    order = np.argsort(s)
    return np.interp(sq, s[order], v[order])


class MouthModel:
    """The inner-lip chains, the photo's opening and teeth, and the interior synthesis."""

    def __init__(
        self, image: np.ndarray, face: np.ndarray, lips_inner: np.ndarray, config: WarpConfig
    ) -> None:
        contour = np.asarray(lips_inner, np.int64)
        ca, cb, upper, lower = eye_chains(contour, face)
        if len(upper) != len(lower):  # fall back to mediapipe's known corners (78, 308)
            ca, cb = int(contour[5]), int(contour[15])
            upper = np.concatenate([contour[4::-1], contour[19:15:-1]])
            lower = contour[6:15]
        self.corner_a, self.corner_b = ca, cb
        self.upper, self.lower = upper, lower
        self.contour = contour
        u = face[upper].astype(np.float64)
        lo = face[lower].astype(np.float64)
        d = lo - u
        self.src_gap = np.hypot(d[:, 0], d[:, 1])
        """Photo's opening per column (pixels)."""
        _, _, _, width = local_frame(face[ca], face[cb])
        self.src_width = max(width, 1.0)
        self.src_open = float(self.src_gap.mean() / self.src_width)
        self.teeth_visible, self.teeth_rgb = self._teeth(image, face, config)
        self.share = self._share(image, u, lo, config)
        self.src_mid = u + self.share * d
        """Where the photo's upper and lower parts of the opening meet (both middle rows map here)."""

    def _teeth(self, image: np.ndarray, face: np.ndarray, config: WarpConfig) -> tuple[bool, np.ndarray]:
        h, w = image.shape[:2]
        poly = np.round(face[self.contour, :2]).astype(np.int32)
        filled = np.zeros((h, w), np.uint8)
        cv2.fillPoly(filled, [poly], 1)
        mask = cv2.erode(filled, np.ones((3, 3), np.uint8))
        px = image[mask > 0].astype(np.float32)
        default = np.asarray(config.default_teeth_rgb, np.float32)
        if len(px) < 12:
            return False, default
        mx = px.max(axis=1)
        sat = (mx - px.min(axis=1)) / np.maximum(mx, 1.0)
        bright = (mx > 110) & (sat < 0.45)
        if bright.mean() < 0.2:
            return False, default
        return True, np.median(px[bright], axis=0)

    def _share(self, image: np.ndarray, u: np.ndarray, lo: np.ndarray, config: WarpConfig) -> float:
        if not self.teeth_visible or self.src_gap.max() < 4.0:
            return float(config.upper_teeth_share)
        h, w = image.shape[:2]
        mid = len(u) // 2
        cols = range(max(mid - 1, 0), min(mid + 2, len(u)))
        ts = np.linspace(0.0, 1.0, 21)
        prof = np.zeros_like(ts)
        for c in cols:
            p = u[c][None, :] + ts[:, None] * (lo[c] - u[c])[None, :]
            xi = np.clip(np.round(p[:, 0]).astype(int), 0, w - 1)
            yi = np.clip(np.round(p[:, 1]).astype(int), 0, h - 1)
            prof += image[yi, xi].astype(np.float32).mean(axis=1)
        band = (ts >= 0.4) & (ts <= 0.9)
        return float(ts[band][np.argmin(prof[band])])

    def chains(self) -> tuple[int, int, np.ndarray, np.ndarray]:
        return self.corner_a, self.corner_b, self.upper, self.lower

    def mid_targets(self, face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Target positions of the two middle rows (upper-teeth edge, lower-teeth edge)."""
        u = face[self.upper].astype(np.float64)
        lo = face[self.lower].astype(np.float64)
        _, _, ny, width = local_frame(face[self.corner_a], face[self.corner_b])
        d = lo - u
        g = np.hypot(d[:, 0], d[:, 1])
        unit = np.where(g[:, None] > 1e-6, d / np.maximum(g, 1e-6)[:, None], ny[None, :])
        band = np.minimum(self.src_gap * (width / self.src_width), g)
        m1 = u + (self.share * band)[:, None] * unit
        m2 = lo - ((1.0 - self.share) * band)[:, None] * unit
        return m1, m2

    def composite(self, out: np.ndarray, face: np.ndarray, config: WarpConfig) -> float:
        """Blend the synthesised interior into ``out``; returns the blend weight used (0 = none)."""
        o, x, y, width = local_frame(face[self.corner_a], face[self.corner_b])
        if width < 2.0:
            return 0.0
        u = face[self.upper].astype(np.float64)
        lo = face[self.lower].astype(np.float64)
        su, tu = (u - o) @ x, (u - o) @ y
        sl, tl = (lo - o) @ x, (lo - o) @ y
        gap_cols = np.maximum(_interp(su, sl, tl) - tu, 0.0)
        openness = float(gap_cols.mean() / width)
        weight = float(np.clip((openness - self.src_open) / config.mouth_open_range, 0.0, 1.0))
        if weight <= 0.0:
            return 0.0
        h, w = out.shape[:2]
        pts = np.concatenate([u, lo, face[[self.corner_a, self.corner_b]]])
        x0 = max(int(np.floor(pts[:, 0].min())) - 1, 0)
        x1 = min(int(np.ceil(pts[:, 0].max())) + 2, w)
        y0 = max(int(np.floor(pts[:, 1].min())) - 1, 0)
        y1 = min(int(np.ceil(pts[:, 1].max())) + 2, h)
        if x1 <= x0 or y1 <= y0:
            return 0.0
        gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64))
        s = (gx - o[0]) * x[0] + (gy - o[1]) * x[1]
        t = (gx - o[0]) * y[0] + (gy - o[1]) * y[1]
        sue = np.concatenate([[0.0], su, [width]])
        tue = np.concatenate([[0.0], tu, [0.0]])
        sle = np.concatenate([[0.0], sl, [width]])
        tle = np.concatenate([[0.0], tl, [0.0]])
        t_up = _interp(s, sue, tue)
        t_lo = _interp(s, sle, tle)
        d_u = t - t_up
        d_l = t_lo - t
        gap = np.maximum(t_lo - t_up, 1e-6)
        fe = max(config.feather * width, 0.7)
        inside = smoothstep(np.minimum(d_u, d_l) / fe + 0.5)
        q = np.clip(s / width * 2.0 - 1.0, -1.0, 1.0)
        k = width / self.src_width
        photo_band = _interp(
            s, np.concatenate([[0.0], su, [width]]), np.concatenate([[0.0], self.src_gap * k, [0.0]])
        )
        photo_band = np.minimum(photo_band, gap)
        if self.teeth_visible:
            t_upper = np.clip(self.share * float(self.src_gap.max()) * k, 0.07 * width, 0.16 * width)
        else:
            t_upper = 0.11 * width
        t_lower = 0.5 * t_upper
        teeth = self.teeth_rgb.astype(np.float64)
        depth = smoothstep(np.minimum(d_u, d_l) / (0.25 * width + 1e-6))
        cavity = np.array([52.0, 20.0, 22.0]) * (1.0 - 0.45 * depth)[..., None]
        cavity = cavity * (0.75 + 0.25 * (1.0 - q * q))[..., None]
        tongue_h = np.minimum(0.55 * gap, 0.25 * width)
        tongue = smoothstep(
            (1.0 - (q / 0.7) ** 2 - ((d_l + 0.3 * tongue_h) / np.maximum(tongue_h, 1e-6)) ** 2) * 3.0
        )
        tongue_rgb = np.array([150.0, 68.0, 72.0]) * (0.55 + 0.45 * (1.0 - q * q))[..., None]
        colour = cavity * (1.0 - tongue[..., None]) + tongue_rgb * tongue[..., None]
        lower_t = smoothstep((t_lower - d_l) / 1.0 + 0.5) * smoothstep((0.42 - np.abs(q)) / 0.15)
        lower_t = lower_t * smoothstep(gap / (4.0 * t_lower) - 0.5)
        shade_l = (0.85 - 0.6 * q * q)[..., None]
        colour = colour * (1.0 - lower_t[..., None]) + (teeth * shade_l) * lower_t[..., None]
        upper_t = smoothstep((t_upper - d_u) / 1.0 + 0.5) * smoothstep((0.8 - np.abs(q)) / 0.25)
        shade_u = (1.0 - 0.7 * q * q) * (0.85 + 0.15 * smoothstep(1.0 - d_u / max(t_upper, 1e-6)))
        colour = colour * (1.0 - upper_t[..., None]) + (teeth * shade_u[..., None]) * upper_t[..., None]
        alpha = inside * weight
        if self.teeth_visible:
            # keep the photo's own teeth (carried by the mesh) where they are
            keep_u = smoothstep((self.share * photo_band - d_u) / fe + 0.5)
            keep_l = smoothstep(((1.0 - self.share) * photo_band - d_l) / fe + 0.5)
            alpha = alpha * (1.0 - np.maximum(keep_u, keep_l))
        a = alpha[..., None]
        region = out[y0:y1, x0:x1].astype(np.float64)
        out[y0:y1, x0:x1] = np.clip(region * (1.0 - a) + colour * a + 0.5, 0, 255).astype(np.uint8)
        return weight
