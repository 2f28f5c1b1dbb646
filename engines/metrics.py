"""Evaluation metrics shared by the tests, the benchmarks and the training scripts.

Face measures (:func:`mouth_opening`, :func:`eye_openness`, :func:`face_width`) take raw face
landmarks of any frame ((468 or 478, 2 or 3) arrays in the FaceMesh numbering, pixels or normalised
coordinates: only ratios are used), so a rendered frame re-detected by the landmarker and a posed
frame from the rig are measured the same way; :func:`mouth_openings` does a stack of frames at once.

Lip-sync scores (:func:`pearson`, :func:`shifted_pairs`, :func:`best_lag`, :func:`best_lag_r`)
compare a predicted mouth-opening series with the real one: Pearson r at the best lag within
``+-max_lag`` frames, NaN frames ignored. The project's headline score uses ``max_lag=2`` (80 ms at
25 fps); ``benchmarks/teacher_lipsync.py`` and the motion-network benchmarks use 3.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "LIPSYNC_MAX_LAG",
    "best_lag",
    "best_lag_r",
    "eye_openness",
    "face_width",
    "mouth_opening",
    "mouth_openings",
    "pearson",
    "shifted_pairs",
]

#: The lag window (frames) of the lip-sync score.
LIPSYNC_MAX_LAG = 2

# upper/lower lid pairs across the middle of each eye, and the eye corners
_LEFT_PAIRS = ((385, 380), (386, 374), (387, 373))
_RIGHT_PAIRS = ((158, 153), (159, 145), (160, 144))
_LEFT_CORNERS = (362, 263)
_RIGHT_CORNERS = (133, 33)


# ---------------------------------------------------------------------------------------------
# face measures


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


def mouth_openings(faces: np.ndarray) -> np.ndarray:
    """:func:`mouth_opening` of a stack of frames ``(n, 468 or 478, 2 or 3)`` -> ``(n,)``."""
    a = np.asarray(faces, dtype=np.float64)
    if a.ndim != 3 or a.shape[1] < 468 or a.shape[2] < 2:
        raise ValueError(f"expected (n, 468 or 478, 2 or 3) landmarks, got shape {a.shape}")
    gap = np.linalg.norm(a[:, 13, :2] - a[:, 14, :2], axis=1)
    return np.asarray(gap / np.linalg.norm(a[:, 33, :2] - a[:, 263, :2], axis=1), np.float64)


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


# ---------------------------------------------------------------------------------------------
# lip-sync scores


def shifted_pairs(real: np.ndarray, pred: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (real[t], pred[t - lag]) where both are finite: lag > 0 pairs the real mouth with an
    EARLIER prediction frame (the prediction leads). The longer series is cut to the shorter."""
    n = min(len(real), len(pred))
    r, p = np.asarray(real[:n], np.float64), np.asarray(pred[:n], np.float64)
    if lag > 0:
        r, p = r[lag:], p[:-lag]
    elif lag < 0:
        r, p = r[:lag], p[-lag:]
    ok = np.isfinite(r) & np.isfinite(p)
    return r[ok], p[ok]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r; NaN for fewer than 3 pairs or no variance."""
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def best_lag(real: np.ndarray, pred: np.ndarray, max_lag: int = LIPSYNC_MAX_LAG) -> tuple[float, int]:
    """Pearson r of ``pred`` with ``real`` at the best lag in ``[-max_lag, max_lag]`` frames, and that
    lag (lag > 0: the prediction moves that many frames BEFORE the real mouth). NaN frames are
    ignored; (nan, 0) when no lag has 3 finite pairs with variance. Ties go to the smaller |lag|."""
    best, lag_best = float("nan"), 0
    for lag in sorted(range(-max_lag, max_lag + 1), key=lambda k: (abs(k), k)):
        r = pearson(*shifted_pairs(real, pred, lag))
        if not np.isnan(r) and (np.isnan(best) or r > best + 1e-12):
            best, lag_best = r, lag
    return best, lag_best


def best_lag_r(real: np.ndarray, pred: np.ndarray, max_lag: int = LIPSYNC_MAX_LAG) -> tuple[float, int]:
    """:func:`best_lag` with 0 for a prediction that never moves (a clip the gate kept closed)."""
    r, lag = best_lag(real, pred, max_lag)
    return (0.0 if np.isnan(r) else r), lag
