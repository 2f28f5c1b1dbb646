"""Per-frame controls of the diffusion renderer, built from posed geometry (paper §3.2, DESIGN.md).

For one :class:`~vlogger.engines.avatar.types.PosedFrame` and a square crop of the frame
(:class:`CropBox`) the :class:`ControlBuilder` draws, at the renderer's resolution ``size``:

* the **dense face map**: the 478-point mesh rasterised with every vertex coloured by its
  canonical (frontalised, face-width normalised) position, 3 channels in [0, 1];
* **semantic masks**: lips, mouth interior, eyes, irises (the visible part, inside the eye
  opening), brows, skin (face oval less the other parts), 1 channel each, 0 or 1;
* a **body-keypoint map**: the visible upper-body skeleton drawn as lines, 1 channel;
* the **reference partial view**: the photo warped to the target pose (the ``warp`` renderer's
  frame), cropped and resized, 3 channels in [-1, 1].

:data:`CONTROL_CHANNELS` names the channels in the order of the stacked array.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vlogger.engines.avatar.topology import LEFT_IRIS_CENTER, RIGHT_IRIS_CENTER, face_topology
from vlogger.engines.avatar.types import AvatarFit, PosedFrame

__all__ = [
    "BODY_EDGES",
    "CONTROL_CHANNELS",
    "MASK_NAMES",
    "ControlBuilder",
    "CropBox",
    "crop_image",
    "face_crop",
    "from_model_image",
    "to_model_image",
]

#: The semantic masks, in channel order.
MASK_NAMES: tuple[str, ...] = ("lips", "mouth_interior", "eyes", "irises", "brows", "skin")

#: Every control channel, in order (13).
CONTROL_CHANNELS: tuple[str, ...] = (
    "dense_x",
    "dense_y",
    "dense_z",
    *MASK_NAMES,
    "body",
    "partial_r",
    "partial_g",
    "partial_b",
)

#: Upper-body skeleton edges (mediapipe pose indices): shoulders, arms, torso sides, hips.
BODY_EDGES: tuple[tuple[int, int], ...] = (
    (11, 12),
    (11, 13),
    (13, 15),
    (12, 14),
    (14, 16),
    (11, 23),
    (12, 24),
    (23, 24),
)
_SHIFT = 4
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class CropBox:
    """A square window of the frame, in pixels of the avatar image (may reach past its edges)."""

    x0: float
    """Left edge."""
    y0: float
    """Top edge."""
    side: float
    """Side length."""

    def to_crop(self, points: np.ndarray, size: int) -> np.ndarray:
        """Frame pixel coordinates -> pixel coordinates of the crop resized to ``size``."""
        p = np.asarray(points, dtype=np.float64)[..., :2]
        return (p - np.array([self.x0, self.y0])) * (size / self.side)

    def affine(self, size: int) -> np.ndarray:
        """(2, 3) affine taking frame pixels to crop pixels (for ``cv2.warpAffine``)."""
        s = size / self.side
        return np.array([[s, 0.0, -self.x0 * s], [0.0, s, -self.y0 * s]])

    def ints(self) -> tuple[int, int, int]:
        """(x0, y0, side) rounded to whole pixels."""
        return round(self.x0), round(self.y0), max(1, round(self.side))


def face_crop(fit: AvatarFit, image_shape: tuple[int, ...], scale: float = 4.0, drop: float = 0.6) -> CropBox:
    """The face-and-shoulders square of a fitted photo.

    Side = ``scale`` x the outer-eye-corner distance, centred on the eyes' midpoint moved down by
    ``drop`` eye distances (chin and shoulders). It is shifted to lie inside the image where it
    fits; a side larger than the image is shrunk to the image's smaller side.
    """
    h, w = int(image_shape[0]), int(image_shape[1])
    face = np.asarray(fit.face, dtype=np.float64)[:, :2]
    d = float(np.linalg.norm(face[263] - face[33]))
    cx, cy = 0.5 * (face[263] + face[33])
    cy += drop * d
    side = float(round(min(scale * d, float(min(h, w)))))
    x0 = float(round(np.clip(cx - side / 2, 0.0, w - side)))
    y0 = float(round(np.clip(cy - side / 2, 0.0, h - side)))
    return CropBox(x0, y0, side)


def _fix(points: np.ndarray) -> np.ndarray:
    return np.round(points * _ONE).astype(np.int32)


def _poly(size: int, pts: np.ndarray, ss: int = 4) -> np.ndarray:
    """Area rule: a pixel belongs to the polygon when at least half of it is inside (4x supersampled).

    Only the polygon's box (whole output pixels, one spare each side, inside the image) is
    supersampled: shifting by whole output pixels and area-averaging ss x ss blocks are exact.
    """
    fixed = _fix(pts * ss - 0.5)
    lo = np.clip((fixed.min(axis=0) >> _SHIFT) // ss - 1, 0, size)
    hi = np.clip((fixed.max(axis=0) >> _SHIFT) // ss + 2, 0, size)
    out = np.zeros((size, size), np.uint8)
    (x0, y0), (x1, y1) = lo.tolist(), hi.tolist()
    if x1 <= x0 or y1 <= y0:
        return out
    m = np.zeros(((y1 - y0) * ss, (x1 - x0) * ss), np.uint8)
    cv2.fillPoly(m, [fixed - np.array([x0, y0], np.int32) * (ss * _ONE)], 255, cv2.LINE_8, _SHIFT)
    small = cv2.resize(m, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    np.greater_equal(small, 128, out=out[y0:y1, x0:x1], casting="unsafe")
    return out


class ControlBuilder:
    """Draws the controls of one avatar's posed frames inside a fixed crop at ``size`` pixels.

    Vertex colours and triangle draw order come from the photo's fit (its canonical, frontalised
    mesh), so they are fixed per avatar; only positions change per frame.
    """

    def __init__(self, fit: AvatarFit, crop: CropBox, size: int) -> None:
        if size < 8:
            raise ValueError(f"control size must be at least 8 pixels, got {size}")
        self.crop = crop
        self.size = int(size)
        self.topology = face_topology()
        face = np.asarray(fit.face, dtype=np.float64)
        d = max(float(np.linalg.norm(face[263, :2] - face[33, :2])), 1e-6)
        rot = np.asarray(fit.head_rotation, dtype=np.float64)
        centre = 0.5 * (face[263] + face[33])
        canon = (face - centre) @ rot / d  # rows: canonical coordinates in eye distances
        lo, hi = canon.min(axis=0), canon.max(axis=0)
        self._colors = ((canon - lo) / np.maximum(hi - lo, 1e-6)).astype(np.float32)
        tris = self.topology.triangles
        order = np.argsort(-canon[tris, 2].mean(axis=1))  # far triangles first
        self._tris = tris[order]
        self._tri_colors = self._colors[self._tris].mean(axis=1)
        self._tri_color_list = self._tri_colors.tolist()  # cv2 wants Python scalars: convert once
        self._body_visible = np.asarray(fit.body_visible, dtype=bool)

    # -- pieces -------------------------------------------------------------------------------

    def dense_map(self, posed: PosedFrame) -> np.ndarray:
        """(3, S, S) float32: the mesh coloured by canonical vertex position (0 off the face)."""
        return np.ascontiguousarray(self._dense_hwc(posed).transpose(2, 0, 1))

    def _dense_hwc(self, posed: PosedFrame) -> np.ndarray:
        s = self.size
        pts = _fix(self.crop.to_crop(posed.face, s) - 0.5)  # pixel i spans [i, i + 1): centre i + 0.5
        img = np.zeros((s, s, 3), np.float32)
        for tri, col in zip(pts[self._tris], self._tri_color_list, strict=True):
            cv2.fillConvexPoly(img, tri, col, cv2.LINE_8, _SHIFT)
        return img

    def masks(self, posed: PosedFrame) -> dict[str, np.ndarray]:
        """The semantic masks, (S, S) uint8 0/1 each, keyed by :data:`MASK_NAMES`."""
        s, t = self.size, self.topology
        p = self.crop.to_crop(posed.face, s)
        inner = _poly(s, p[t.lips_inner])
        lips = np.clip(_poly(s, p[t.lips_outer]) - inner, 0, 1).astype(np.uint8)
        eyes = _poly(s, p[t.left_eye]) | _poly(s, p[t.right_eye])
        irises = np.zeros((s, s), np.uint8)
        for centre, ring in ((LEFT_IRIS_CENTER, t.left_iris), (RIGHT_IRIS_CENTER, t.right_iris)):
            r = float(np.linalg.norm(p[ring] - p[centre], axis=1).mean())
            c = tuple(int(v) for v in np.round((p[centre] - 0.5) * _ONE))
            cv2.circle(irises, c, max(1, round(r * _ONE)), 1, -1, cv2.LINE_8, _SHIFT)
        irises &= eyes
        brows = np.zeros((s, s), np.uint8)
        for idx in (t.left_brow, t.right_brow):
            hull = cv2.convexHull(p[idx].astype(np.float32).reshape(-1, 1, 2)).reshape(-1, 2)
            brows |= _poly(s, hull.astype(np.float64))
        oval = _poly(s, p[t.face_oval])
        skin = oval & (1 - (eyes | brows | lips | inner))
        return {
            "lips": lips,
            "mouth_interior": inner,
            "eyes": eyes,
            "irises": irises,
            "brows": brows,
            "skin": skin,
        }

    def body_map(self, posed: PosedFrame) -> np.ndarray:
        """(S, S) float32: visible upper-body skeleton lines (1 on the lines)."""
        s = self.size
        img = np.zeros((s, s), np.float32)
        pts = _fix(self.crop.to_crop(posed.body, s) - 0.5)
        thick = max(1, s // 48)
        for a, b in BODY_EDGES:
            if self._body_visible[a] and self._body_visible[b]:
                cv2.line(img, tuple(pts[a].tolist()), tuple(pts[b].tolist()), 1.0, thick, cv2.LINE_AA, _SHIFT)
        return img

    def partial_view(self, frame: np.ndarray) -> np.ndarray:
        """(3, S, S) float32 in [-1, 1]: the warped frame (uint8 RGB, frame size) in the crop."""
        return to_model_image(crop_image(frame, self.crop, self.size))

    def build(self, posed: PosedFrame, warped_frame: np.ndarray) -> np.ndarray:
        """(13, S, S) float32: every control channel (:data:`CONTROL_CHANNELS`) stacked."""
        s, nm = self.size, len(MASK_NAMES)
        out = np.empty((len(CONTROL_CHANNELS), s, s), np.float32)
        out[:3] = self._dense_hwc(posed).transpose(2, 0, 1)
        m = self.masks(posed)
        for i, k in enumerate(MASK_NAMES):
            out[3 + i] = m[k]
        out[3 + nm] = self.body_map(posed)
        _to_model_image(crop_image(warped_frame, self.crop, self.size), out[4 + nm :])
        return out


def crop_image(frame: np.ndarray, crop: CropBox, size: int) -> np.ndarray:
    """The crop of a uint8 RGB frame resized to (size, size) (area filter when shrinking).

    Parts of the box outside the frame repeat the frame's edge pixels.
    """
    x0, y0, side = crop.ints()
    h, w = frame.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    src = frame
    if pad:
        src = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    patch = src[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]
    if side == size:
        return np.ascontiguousarray(patch)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interp)


def to_model_image(rgb: np.ndarray) -> np.ndarray:
    """uint8 (S, S, 3) -> float32 (3, S, S) in [-1, 1]."""
    return _to_model_image(rgb, np.empty((3, *rgb.shape[:2]), np.float32))


def _to_model_image(rgb: np.ndarray, out: np.ndarray) -> np.ndarray:
    np.divide(rgb.transpose(2, 0, 1), 127.5, out=out, dtype=np.float32)
    out -= 1.0
    return out


def from_model_image(x: np.ndarray) -> np.ndarray:
    """float (3, S, S) in [-1, 1] -> uint8 (S, S, 3)."""
    return np.clip((np.asarray(x).transpose(1, 2, 0) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
