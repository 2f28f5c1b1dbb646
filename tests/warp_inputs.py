"""Test inputs for the warp renderer: the default portrait fitted with mediapipe, hand-posed faces.

Until the avatar ``Rig`` lands these helpers stand in for it: they run mediapipe FaceMesh
(refine_landmarks=True) and Pose(model_complexity=1) on the shipped portrait and displace
landmarks by hand (jaw open, eyes closed, gaze, head roll, torso sway).
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import numpy as np

from vlogger.engines.avatar.topology import LEFT_IRIS_CENTER, RIGHT_IRIS_CENTER, face_topology
from vlogger.engines.avatar.types import AvatarFit, Camera, PosedFrame
from vlogger.engines.metrics import face_width
from vlogger.engines.types import BODY_KEYPOINTS, EXPRESSION_NAMES

__all__ = [
    "PORTRAIT",
    "close_eyes",
    "default_fit",
    "open_jaw",
    "posed",
    "rotate_face",
    "shift_gaze",
    "sway_body",
]

PORTRAIT = Path(__file__).resolve().parents[1] / "engines" / "avatar" / "assets" / "default_portrait.png"


def _load_rgb(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return np.ascontiguousarray(bgr[:, :, ::-1])


def fit_image(image: np.ndarray) -> AvatarFit:
    """Fit an RGB image with the landmarkers (face + pose, no hands, no rig) into an ``AvatarFit``."""
    from vlogger.engines.avatar.landmarks import FaceLandmarker, PoseLandmarker

    h, w = image.shape[:2]
    with FaceLandmarker(static=True, max_faces=1) as fm:
        faces = fm.process(image)
    assert faces, "no face found"
    face = np.asarray(faces[0], dtype=np.float32)
    body = np.zeros((BODY_KEYPOINTS, 2), dtype=np.float32)
    vis = np.zeros(BODY_KEYPOINTS, dtype=bool)
    with PoseLandmarker() as po:
        pres = po.process(image)
    if pres is not None:
        for i, ((x, y), v) in enumerate(zip(*pres, strict=True)):
            body[i] = (x, y)
            vis[i] = v > 0.5 and 0 <= x < w and 0 <= y < h
    centre = face[:, :3].mean(axis=0)
    return AvatarFit(
        face=face,
        body=body,
        body_visible=vis,
        head_rotation=np.eye(3, dtype=np.float32),
        head_center=centre.astype(np.float32),
        camera=Camera(focal=float(max(h, w)), cx=w / 2.0, cy=h / 2.0),
        image_hash=hashlib.sha256(image.tobytes()).hexdigest(),
    )


@cache
def _default() -> tuple[np.ndarray, AvatarFit]:
    image = _load_rgb(PORTRAIT)
    return image, fit_image(image)


def default_fit() -> tuple[np.ndarray, AvatarFit]:
    """The shipped portrait (RGB, 512x512) and its fit; copies, so tests may modify them."""
    image, fit = _default()
    return image.copy(), fit


def posed(
    fit: AvatarFit,
    face: np.ndarray | None = None,
    body: np.ndarray | None = None,
    index: int = 0,
    **coefficients: float,
) -> PosedFrame:
    """A ``PosedFrame`` with the given 2D face/body (default: the fit's own) and named coefficients."""
    expr = np.zeros(len(EXPRESSION_NAMES), dtype=np.float32)
    for name, value in coefficients.items():
        expr[EXPRESSION_NAMES.index(name)] = value
    return PosedFrame(
        index=index,
        pts=index / 25.0,
        face=(fit.face[:, :2] if face is None else face).astype(np.float32).copy(),
        body=(fit.body if body is None else body).astype(np.float32).copy(),
        expression=expr,
        head_rotation=np.eye(3, dtype=np.float32),
    )


def open_jaw(face: np.ndarray, amount: float) -> np.ndarray:
    """Open the mouth: points below the upper inner lip move down by up to ``amount`` x face width."""
    f = face[:, :2].astype(np.float32).copy()
    fw = face_width(f)
    y_top, y_low = f[13, 1], f[14, 1]
    span = max(y_low - y_top, 0.04 * fw)
    w = np.clip((f[:, 1] - y_top) / span, 0.0, 1.0)
    lateral = np.exp(-(((f[:, 0] - f[13, 0]) / (0.9 * fw)) ** 2))
    f[:, 1] += amount * fw * w * lateral
    return f


def _eye_chains(contour: np.ndarray, face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower lid chains (corners excluded) of an ordered eye contour."""
    xs = face[contour, 0]
    a, b = int(np.argmin(xs)), int(np.argmax(xs))
    lo, hi = min(a, b), max(a, b)
    one = contour[lo + 1 : hi]
    other = np.concatenate([contour[hi + 1 :], contour[:lo]])
    if face[one, 1].mean() < face[other, 1].mean():
        return one, other
    return other, one


def close_eyes(face: np.ndarray, amount: float = 1.0) -> np.ndarray:
    """Bring each upper lid onto its lower lid (``amount`` 1 = closed); the crease follows a little."""
    f = face[:, :2].astype(np.float32).copy()
    topo = face_topology()
    for contour in (topo.left_eye, topo.right_eye):
        upper, lower = _eye_chains(contour, f)
        order = np.argsort(f[lower, 0])
        target = np.interp(f[upper, 0], f[lower, 0][order], f[lower, 1][order])
        travel = amount * (target - f[upper, 1])
        f[upper, 1] += travel
        # skin between lid and brow follows partly
        x0, x1 = f[contour, 0].min(), f[contour, 0].max()
        top = f[upper, 1].min() - travel.max()
        hgt = max(float(travel.max()), 1.0)
        sel = np.setdiff1d(np.arange(468), contour)
        sel = sel[(f[sel, 0] > x0) & (f[sel, 0] < x1) & (f[sel, 1] < top) & (f[sel, 1] > top - 2.5 * hgt)]
        fall = np.clip(1.0 - (top - f[sel, 1]) / (2.5 * hgt), 0.0, 1.0)
        f[sel, 1] += 0.35 * float(travel.mean()) * fall
    return f


def shift_gaze(face: np.ndarray, dx: float, dy: float = 0.0) -> np.ndarray:
    """Move both irises (centre + ring) by (dx, dy) x the eye's width."""
    f = face[:, :2].astype(np.float32).copy()
    topo = face_topology()
    for centre, ring, contour in (
        (LEFT_IRIS_CENTER, topo.left_iris, topo.left_eye),
        (RIGHT_IRIS_CENTER, topo.right_iris, topo.right_eye),
    ):
        ew = float(np.ptp(f[contour, 0]))
        idx = np.concatenate([[centre], ring])
        f[idx] += np.array([dx * ew, dy * ew], dtype=np.float32)
    return f


def rotate_face(face: np.ndarray, degrees: float, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Rotate all face points about the face centre (image plane, + = clockwise on screen), then shift."""
    f = face[:, :2].astype(np.float32).copy()
    c = f[:468].mean(axis=0)
    t = np.deg2rad(degrees)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]], dtype=np.float32)
    return (f - c) @ rot.T + c + np.asarray(shift, dtype=np.float32)


def sway_body(body: np.ndarray, dx: float, dy: float = 0.0) -> np.ndarray:
    """Shift the upper-body keypoints (shoulders, elbows, hips) by (dx, dy) pixels."""
    b = body.astype(np.float32).copy()
    b[[11, 12, 13, 14, 23, 24]] += np.array([dx, dy], dtype=np.float32)
    return b
