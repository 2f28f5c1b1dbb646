"""Posing the fitted avatar: expression coefficients, head pose and body residuals -> target geometry.

Per frame: the expression fields (see ``basis.py``) displace the neutral 3D landmarks in the head's
canonical frame (scaled by the outer-eye-corner distance D and rotated into camera space); the head
residual rotation (6D, Gram-Schmidt) turns them about the fitted head centre and the translation
(units of D) moves them, in camera space; the fitted pinhole camera projects them to pixels. Body
keypoints get their residuals (units of image height); pose keypoints 0-10 (nose, eyes, ears, mouth)
follow the face landmark nearest to each, and the shoulders follow a share of the head's motion.
A neutral ``MotionFrame`` gives back the fitted landmarks (to float rounding).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from vlogger.engines.avatar.basis import BasisConfig, build_basis
from vlogger.engines.avatar.fit import backproject
from vlogger.engines.avatar.types import AvatarFit, PosedFrame
from vlogger.engines.types import BODY_KEYPOINTS, EXPRESSION_NAMES, HEAD_DIMS, MotionFrame

__all__ = ["COEFFICIENT_RANGES", "Rig", "RigConfig", "rotation_from_6d", "rotation_to_6d"]

#: Allowed range of each expression coefficient (see engines/types.py).
COEFFICIENT_RANGES: Mapping[str, tuple[float, float]] = MappingProxyType(
    {n: ((-1.0, 1.0) if n.startswith("gaze") else (0.0, 1.0)) for n in EXPRESSION_NAMES}
)
_SHOULDERS = (11, 12)


@dataclass(frozen=True)
class RigConfig:
    """How motion drives the avatar."""

    basis: BasisConfig = field(default_factory=BasisConfig)
    """Strengths of the expression fields."""
    clip_coefficients: bool = True
    """Clip expression coefficients to their documented ranges (gaze is always clipped to [-1, 1]
    so the iris stays inside the eye)."""
    shoulder_follow: float = 0.25
    """Share of the head's on-screen translation that the shoulder keypoints follow."""
    min_depth_ratio: float = 0.2
    """Posed points never come nearer the camera than this share of the focal length."""


def rotation_from_6d(r6: np.ndarray) -> np.ndarray:
    """3x3 rotation from the 6D encoding (first two columns, column-major), Gram-Schmidt.

    Non-orthonormal input is orthonormalised; degenerate input (zero or parallel columns) gives the
    identity.
    """
    v = np.asarray(r6, dtype=np.float64).reshape(6)
    a1, a2 = v[:3], v[3:]
    n1 = float(np.linalg.norm(a1))
    if not np.isfinite(v).all() or n1 < 1e-8:
        return np.eye(3)
    b1 = a1 / n1
    b2 = a2 - b1 * float(b1 @ a2)
    n2 = float(np.linalg.norm(b2))
    if n2 < 1e-8:
        return np.eye(3)
    b2 = b2 / n2
    return np.stack([b1, b2, np.cross(b1, b2)], axis=1)


def rotation_to_6d(matrix: np.ndarray) -> np.ndarray:
    """The 6D encoding (float32, shape (6,)) of a 3x3 rotation: its first two columns."""
    m = np.asarray(matrix, dtype=np.float64).reshape(3, 3)
    return np.concatenate([m[:, 0], m[:, 1]]).astype(np.float32)


class Rig:
    """The named linear expression rig of one fitted photo; ``pose(frame)`` gives the target geometry."""

    def __init__(self, fit: AvatarFit, config: RigConfig | None = None) -> None:
        self.config = config or RigConfig()
        self.fit = fit
        cam = fit.camera
        self._cam = (float(cam.focal), float(cam.cx), float(cam.cy))
        self._p = backproject(fit.face, cam)
        rot = rotation_from_6d(rotation_to_6d(fit.head_rotation))
        self._rot = rot
        self._center = np.asarray(fit.head_center, dtype=np.float64)
        self.face_size = float(np.linalg.norm(self._p[263] - self._p[33]))
        eyes = 0.5 * (self._p[33] + self._p[263])
        canon = (self._p - eyes) @ rot / self.face_size
        basis = build_basis(canon, self.config.basis)
        self.basis = basis
        # camera-space fields in pixels-at-depth units: rows are vectors, so v_cam = D * v @ R^T
        self._pos = self.face_size * basis.positive @ rot.T
        self._neg = self.face_size * basis.negative @ rot.T
        self._lo = np.array([COEFFICIENT_RANGES[n][0] for n in EXPRESSION_NAMES])
        self._hi = np.array([COEFFICIENT_RANGES[n][1] for n in EXPRESSION_NAMES])
        self._gaze = np.array([n.startswith("gaze") for n in EXPRESSION_NAMES])
        self.rest_face = self._project(self._p).astype(np.float32)
        self.rest_body = np.asarray(fit.body, dtype=np.float64).copy()
        face2d = np.asarray(fit.face, dtype=np.float64)[:, :2]
        d = np.linalg.norm(self.rest_body[:11, None, :] - face2d[None, :468, :], axis=2)
        self._pose_face_anchor = d.argmin(axis=1)
        self._image_height = float(2.0 * cam.cy)

    # -- helpers ----------------------------------------------------------------------------------

    def _project(self, p: np.ndarray) -> np.ndarray:
        f, cx, cy = self._cam
        z = np.maximum(p[:, 2], self.config.min_depth_ratio * f)
        return np.stack([f * p[:, 0] / z + cx, f * p[:, 1] / z + cy], axis=1)

    def support(self, name: str) -> np.ndarray:
        """(478,) bool: the landmarks the named coefficient moves (anywhere in its range)."""
        k = EXPRESSION_NAMES.index(name)
        moved = np.abs(self.basis.positive[k]).sum(axis=1) + np.abs(self.basis.negative[k]).sum(axis=1)
        return moved > 0.0

    def coefficients(self, expression: np.ndarray) -> np.ndarray:
        """The coefficients as the rig uses them (clipped per ``RigConfig``), float64."""
        c = np.nan_to_num(np.asarray(expression, dtype=np.float64).reshape(len(EXPRESSION_NAMES)))
        if self.config.clip_coefficients:
            return np.clip(c, self._lo, self._hi)
        return np.where(self._gaze, np.clip(c, -1.0, 1.0), c)

    def displacement(self, expression: np.ndarray) -> np.ndarray:
        """(478, 3) camera-space displacement of the landmarks for these coefficients."""
        c = self.coefficients(expression)
        return np.tensordot(np.maximum(c, 0.0), self._pos, axes=1) + np.tensordot(
            np.minimum(c, 0.0), self._neg, axes=1
        )

    # -- posing -----------------------------------------------------------------------------------

    def pose(self, frame: MotionFrame) -> PosedFrame:
        """Target geometry of one frame: face landmarks and body keypoints in pixels."""
        coef = self.coefficients(frame.expression)
        head = np.asarray(frame.head, dtype=np.float64).reshape(HEAD_DIMS)
        r = rotation_from_6d(head[:6])
        t = np.nan_to_num(head[6:9]) * self.face_size
        p = self._p + self.displacement(coef)
        posed3d = (p - self._center) @ r.T + self._center + t
        face = self._project(posed3d)

        body = self.rest_body.copy()
        res = np.nan_to_num(np.asarray(frame.body, dtype=np.float64).reshape(BODY_KEYPOINTS, 2))
        body += res * self._image_height
        anchors = self._pose_face_anchor
        body[:11] += face[anchors] - self.rest_face[anchors]
        center_shift = self._project((self._center + t)[None])[0] - self._project(self._center[None])[0]
        body[list(_SHOULDERS)] += self.config.shoulder_follow * center_shift
        return PosedFrame(
            index=frame.index,
            pts=frame.pts,
            face=face.astype(np.float32),
            body=body.astype(np.float32),
            expression=coef.astype(np.float32),
            head_rotation=r.astype(np.float32),
        )
