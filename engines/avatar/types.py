"""Data the avatar engine hands to renderers: the fitted photo and per-frame posed geometry."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vlogger.engines.types import EXPRESSION_NAMES

__all__ = ["AvatarFit", "Camera", "PosedFrame"]


@dataclass(frozen=True)
class Camera:
    """A pinhole camera in pixel units of the avatar image."""

    focal: float
    """Focal length in pixels."""
    cx: float
    """Principal point x in pixels."""
    cy: float
    """Principal point y in pixels."""


@dataclass
class AvatarFit:
    """What fitting a photo found, in pixel coordinates of the avatar image it belongs to."""

    face: np.ndarray
    """(478, 3) float32: x, y in pixels; z depth in pixels (mediapipe's relative z times width)."""
    body: np.ndarray
    """(75, 2) float32 pixels: 33 pose + 21 left hand + 21 right hand keypoints."""
    body_visible: np.ndarray
    """(75,) bool: keypoints that were found and lie in the picture."""
    head_rotation: np.ndarray
    """(3, 3) float32 rotation from the head's canonical frame to camera space."""
    head_center: np.ndarray
    """(3,) float32 head pivot in camera space (pixel units at the face's depth)."""
    camera: Camera
    """The perspective camera assumed for the photo."""
    image_hash: str
    """sha256 of the source image bytes (the cache key)."""
    expression: np.ndarray = field(default_factory=lambda: np.zeros(len(EXPRESSION_NAMES), dtype=np.float32))
    """(15,) float32: the photo's own mouth expression in the rig's coefficients (only the mouth
    channels jaw_open ... lower_lip_down are non-zero; all zeros for a closed, neutral mouth),
    estimated by ``Fitter.fit`` (see ``rest.py``); the rig takes it out of its rest
    (``RigConfig.closed_rest``). Fits made without an estimate carry zeros: rest = photo."""
    faces: int = 1
    """How many faces the photo holds; the avatar is the largest (users are told when there are more)."""


@dataclass
class PosedFrame:
    """The avatar posed for one frame: target geometry the renderer warps the photo onto."""

    index: int
    """Frame number on the stream clock."""
    pts: float
    """Presentation time in seconds."""
    face: np.ndarray
    """(478, 2) float32 target landmark positions in pixels."""
    body: np.ndarray
    """(75, 2) float32 target body keypoints in pixels (rest position where not visible)."""
    expression: np.ndarray
    """The expression coefficients that produced ``face`` (renderers use e.g. blink, jaw)."""
    head_rotation: np.ndarray
    """(3, 3) float32 head rotation relative to the photo's own pose."""
