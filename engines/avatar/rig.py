"""Posing the fitted avatar: expression coefficients, head pose and body residuals -> target geometry.

Per frame: the expression fields (see ``basis.py``) displace the neutral 3D landmarks in the head's
canonical frame (scaled by the outer-eye-corner distance D and rotated into camera space); the head
residual rotation (6D, Gram-Schmidt) turns them about the fitted head centre and the translation
(units of D) moves them, in camera space; the fitted pinhole camera projects them to pixels. Body
keypoints get their residuals (units of image height); pose keypoints 0-10 (nose, eyes, ears, mouth)
follow the face landmark nearest to each, and the shoulders follow a share of the head's motion.

The rest. The fields are added to the rig's rest, not to the photo: with ``RigConfig.closed_rest``
(the default) the rest is the photo with its own mouth expression taken out (``AvatarFit.expression``,
estimated when the photo was fitted, see ``rest.py``: rest = photo - displacement(photo's mouth
coefficients), then the inner lips sealed where a gap is left; the fields are then built from
the rest), so a photo taken mid-speech or smiling rests with closed lips and every coefficient
counts from that closed mouth, as for a photo with closed lips. A neutral
``MotionFrame`` gives back the rest: the fitted landmarks themselves (to float rounding) when the
photo's mouth was read as closed and neutral, or when ``closed_rest`` is off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from vlogger.engines.avatar.basis import BasisConfig, ExpressionBasis, build_basis
from vlogger.engines.avatar.fit import backproject
from vlogger.engines.avatar.rest import MOUTH_CHANNELS, estimate_mouth_expression, lip_seal
from vlogger.engines.avatar.types import AvatarFit, PosedFrame
from vlogger.engines.types import BODY_KEYPOINTS, EXPRESSION_NAMES, HEAD_DIMS, MotionFrame

__all__ = [
    "COEFFICIENT_RANGES",
    "Rig",
    "RigConfig",
    "photo_expression",
    "rotation_from_6d",
    "rotation_to_6d",
]

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
    closed_rest: bool = True
    """Rest with closed lips and a neutral mouth: the photo's own mouth expression
    (``AvatarFit.expression``) is taken out of the rest, and the inner lips are sealed where the
    linear fields leave a gap, so a photo taken mid-speech or smiling shows closed lips in a
    neutral frame and expression coefficients mean "from a closed mouth". A photo read as closed
    and neutral (all zeros) keeps its exact face. Off: the rest is the photo's own face (an open
    photo's mouth stays open at rest and opens further when speaking)."""


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
        photo_basis = build_basis(canon, self.config.basis)
        self._lo = np.array([COEFFICIENT_RANGES[n][0] for n in EXPRESSION_NAMES])
        self._hi = np.array([COEFFICIENT_RANGES[n][1] for n in EXPRESSION_NAMES])
        self._gaze = np.array([n.startswith("gaze") for n in EXPRESSION_NAMES])
        self.photo_expression = self._photo_expression(fit, canon, photo_basis)
        """(15,) float32: the photo's own mouth expression as this rig's fields read it (zeros for
        a closed, neutral mouth or a fit that carries none)."""
        self.rest_expression = (
            self.photo_expression if self.config.closed_rest else np.zeros_like(self.photo_expression)
        )
        """(15,) float32: what was taken out of the photo to make the rest (zeros: rest = photo)."""
        basis = photo_basis
        self._rest = self._p
        if self.rest_expression.any():
            # the photo = the closed rest + the photo's expression, both read with the fields built
            # from the photo; the rest's inner lips are then sealed, and the rig's fields are built
            # again from the rest (so e.g. lip_press presses a closed mouth, not the photo's gap)
            c = np.maximum(self.rest_expression.astype(np.float64), 0.0)  # mouth channels: >= 0
            canon = canon - np.tensordot(c, photo_basis.positive, axes=1)
            canon = canon + lip_seal(canon)
            self._rest = eyes + self.face_size * canon @ rot.T
            basis = build_basis(canon, self.config.basis)
        self.canonical = canon
        """(478, 3) the rest's landmarks in the head's canonical frame, units of D (the fields are
        built from these)."""
        self.basis = basis
        # camera-space fields in pixels-at-depth units: rows are vectors, so v_cam = D * v @ R^T
        self._pos = self.face_size * basis.positive @ rot.T
        self._neg = self.face_size * basis.negative @ rot.T
        self.photo_face = self._project(self._p).astype(np.float32)
        """(478, 2) float32: the fitted landmarks in pixels (where the photo shows them)."""
        self.rest_face = self._project(self._rest).astype(np.float32)
        """(478, 2) float32: the rest in pixels (a neutral frame's face)."""
        self.rest_body = np.asarray(fit.body, dtype=np.float64).copy()
        face2d = np.asarray(fit.face, dtype=np.float64)[:, :2]
        d = np.linalg.norm(self.rest_body[:11, None, :] - face2d[None, :468, :], axis=2)
        self._pose_face_anchor = d.argmin(axis=1)
        self._image_height = float(2.0 * cam.cy)

    @property
    def rest_points(self) -> np.ndarray:
        """(478, 3) float64 camera-space landmarks of the rest (the photo's own when the rest
        expression is zero): what the fields displace; e.g. for fitting frames into the rig."""
        return self._rest.copy()

    # -- helpers ----------------------------------------------------------------------------------

    def _photo_expression(self, fit: AvatarFit, canon: np.ndarray, basis: ExpressionBasis) -> np.ndarray:
        """The fit's mouth estimate, read again with this rig's fields when they are not the
        default ones the fitter used (a fit without an estimate, or all zeros, stays zeros)."""
        stored = getattr(fit, "expression", None)
        if stored is None:
            return np.zeros(len(EXPRESSION_NAMES), dtype=np.float32)
        e = np.nan_to_num(np.asarray(stored, dtype=np.float64).reshape(len(EXPRESSION_NAMES)))
        if e.any() and self.config.basis != BasisConfig():
            e = estimate_mouth_expression(canon, basis).astype(np.float64)
        mouth = np.isin(np.array(EXPRESSION_NAMES), MOUTH_CHANNELS)
        return np.where(mouth, np.clip(e, self._lo, self._hi), 0.0).astype(np.float32)

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
        p = self._rest + self.displacement(coef)
        posed3d = (p - self._center) @ r.T + self._center + t
        face = self._project(posed3d)

        body = self.rest_body.copy()
        res = np.nan_to_num(np.asarray(frame.body, dtype=np.float64).reshape(BODY_KEYPOINTS, 2))
        body += res * self._image_height
        anchors = self._pose_face_anchor
        body[:11] += face[anchors] - self.photo_face[anchors]  # the body was found on the photo
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


def photo_expression(fit: AvatarFit, basis: BasisConfig | None = None) -> np.ndarray:
    """Estimate the photo's own mouth expression ((15,) float32, only the mouth channels non-zero)
    with the rig's fields for ``basis`` (default: the default fields): see ``rest.py``."""
    rig = Rig(fit, RigConfig(basis=basis or BasisConfig(), closed_rest=False))
    return estimate_mouth_expression(rig.canonical, rig.basis)
