"""A picture of what the fit found (or where a posed frame puts things), drawn over the photo."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from vlogger.engines.avatar.topology import face_topology
from vlogger.engines.avatar.types import AvatarFit, PosedFrame

if TYPE_CHECKING:
    from vlogger.engines.avatar import Avatar

__all__ = ["HAND_CONNECTIONS", "POSE_CONNECTIONS", "debug_view"]

#: mediapipe's pose skeleton (33 keypoints) and hand skeleton (21 keypoints).
POSE_CONNECTIONS: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 4), (1, 2), (2, 3), (3, 7), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12), (11, 13),
    (11, 23), (12, 14), (12, 24), (13, 15), (14, 16), (15, 17), (15, 19), (15, 21), (16, 18),
    (16, 20), (16, 22), (17, 19), (18, 20), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28),
    (27, 29), (27, 31), (28, 30), (28, 32), (29, 31), (30, 32),
)  # fmt: skip
HAND_CONNECTIONS: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 5), (0, 17), (1, 2), (2, 3), (3, 4), (5, 6), (5, 9), (6, 7), (7, 8), (9, 10),
    (9, 13), (10, 11), (11, 12), (13, 14), (13, 17), (14, 15), (15, 16), (17, 18), (18, 19), (19, 20),
)  # fmt: skip

_SHIFT = 4  # sub-pixel drawing precision (cv2 shift bits)


def _pt(p: np.ndarray) -> tuple[int, int]:
    return round(float(p[0]) * (1 << _SHIFT)), round(float(p[1]) * (1 << _SHIFT))


def _poly(img: np.ndarray, pts: np.ndarray, color: tuple[int, int, int], closed: bool = True) -> None:
    arr = np.round(pts * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(img, [arr], closed, color, 1, cv2.LINE_AA, _SHIFT)


def debug_view(
    avatar: Avatar | None = None,
    posed: PosedFrame | None = None,
    *,
    image: np.ndarray | None = None,
    fit: AvatarFit | None = None,
    scale: float = 1.0,
    mesh: bool = True,
) -> np.ndarray:
    """RGB uint8 picture: mesh triangles, contours, irises, body and hand keypoints with skeletons.

    Draws the fitted geometry of ``avatar`` (or of ``image`` + ``fit``), or the geometry of ``posed``
    when given (over the unwarped photo). ``scale`` enlarges the picture so small faces stay legible.
    Invisible body keypoints are drawn hollow and grey.
    """
    if avatar is not None:
        image = avatar.image if image is None else image
        fit = avatar.fit if fit is None else fit
    if image is None or fit is None:
        raise ValueError("debug_view needs an avatar, or an image and a fit")
    face = (posed.face if posed is not None else fit.face[:, :2]).astype(np.float64) * scale
    body = (posed.body if posed is not None else fit.body).astype(np.float64) * scale
    vis = np.asarray(fit.body_visible, dtype=bool)
    h, w = image.shape[:2]
    out = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
    out = np.ascontiguousarray((out.astype(np.float32) * 0.75).astype(np.uint8))
    topo = face_topology()
    if mesh:
        for tri in topo.triangles:
            _poly(out, face[tri], (70, 160, 90))
    for name, color in (
        ("lips_outer", (255, 60, 60)),
        ("lips_inner", (255, 150, 150)),
        ("left_eye", (60, 200, 255)),
        ("right_eye", (60, 200, 255)),
        ("face_oval", (255, 220, 0)),
    ):
        _poly(out, face[getattr(topo, name)], color)
    for brow in (topo.left_brow, topo.right_brow):
        for i in brow:
            cv2.circle(out, _pt(face[i]), 2 << _SHIFT, (255, 140, 0), -1, cv2.LINE_AA, _SHIFT)
    for ring, center in ((topo.left_iris, 473), (topo.right_iris, 468)):
        _poly(out, face[ring], (0, 255, 255))
        cv2.circle(out, _pt(face[center]), 2 << _SHIFT, (0, 255, 255), -1, cv2.LINE_AA, _SHIFT)
    groups = [(0, POSE_CONNECTIONS, (255, 255, 255))]
    groups += [(33, HAND_CONNECTIONS, (255, 0, 255)), (54, HAND_CONNECTIONS, (0, 255, 0))]
    for off, conns, color in groups:
        for a, b in conns:
            if vis[off + a] and vis[off + b]:
                cv2.line(out, _pt(body[off + a]), _pt(body[off + b]), color, 2, cv2.LINE_AA, _SHIFT)
    for i, p in enumerate(body):
        if vis[i]:
            cv2.circle(out, _pt(p), 3 << _SHIFT, (255, 80, 80), -1, cv2.LINE_AA, _SHIFT)
        else:
            cv2.circle(out, _pt(p), 3 << _SHIFT, (150, 150, 150), 1, cv2.LINE_AA, _SHIFT)
    return out
