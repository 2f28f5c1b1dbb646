"""Measures of a face from its landmarks, for benchmarks and tests on rendered video.

They take raw mediapipe landmarks of any frame ((468 or 478, 2 or 3) arrays, pixels or normalised
coordinates: only ratios are used), so a rendered frame re-detected with mediapipe and a posed
frame from the rig are measured the same way.
"""

from __future__ import annotations

import numpy as np

__all__ = ["eye_openness", "face_width", "mouth_opening"]

# upper/lower lid pairs across the middle of each eye, and the eye corners
_LEFT_PAIRS = ((385, 380), (386, 374), (387, 373))
_RIGHT_PAIRS = ((158, 153), (159, 145), (160, 144))
_LEFT_CORNERS = (362, 263)
_RIGHT_CORNERS = (133, 33)


def _xy(face: np.ndarray) -> np.ndarray:
    a = np.asarray(face, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 468 or a.shape[1] < 2:
        raise ValueError(f"expected (468 or 478, 2 or 3) landmarks, got shape {a.shape}")
    return a[:, :2]


def face_width(face_xy: np.ndarray) -> float:
    """Distance between the outer eye corners (33, 263)."""
    p = _xy(face_xy)
    return float(np.linalg.norm(p[263] - p[33]))


def mouth_opening(face_xy: np.ndarray) -> float:
    """Inner-lip gap (13 to 14) over the outer-eye-corner distance (33 to 263).

    About 0.0-0.05 for a closed mouth, 0.1-0.3 while speaking, 0.3+ wide open.
    """
    p = _xy(face_xy)
    return float(np.linalg.norm(p[14] - p[13]) / max(face_width(p), 1e-9))


def _eye(p: np.ndarray, pairs: tuple[tuple[int, int], ...], corners: tuple[int, int]) -> float:
    axis = p[corners[1]] - p[corners[0]]
    width = float(np.linalg.norm(axis))
    if width < 1e-9:
        return 0.0
    axis = axis / width
    # the lid gap across the eye axis (pairs are not exactly above each other)
    gaps = [abs(float(axis[0] * (p[a] - p[b])[1] - axis[1] * (p[a] - p[b])[0])) for a, b in pairs]
    return float(np.mean(gaps) / width)


def eye_openness(face_xy: np.ndarray) -> tuple[float, float]:
    """(left, right) lid gap over eye width, the person's left eye first (image right).

    The gap is measured across the corner-to-corner axis (so head roll does not change it) and
    averaged over three lid pairs across the eye's middle; about 0.25-0.35 open, < 0.05 closed.
    """
    p = _xy(face_xy)
    return _eye(p, _LEFT_PAIRS, _LEFT_CORNERS), _eye(p, _RIGHT_PAIRS, _RIGHT_CORNERS)
