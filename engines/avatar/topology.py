"""The 478-point face-mesh topology: triangles and named landmark groups (see build_topology.py).

mediapipe's naming is kept: "left" is the person's left, which is the image's right.
Iris centres are 468 (right iris, ring 469-472) and 473 (left iris, ring 474-477).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

__all__ = ["LEFT_IRIS_CENTER", "NUM_LANDMARKS", "RIGHT_IRIS_CENTER", "FaceTopology", "face_topology"]

NUM_LANDMARKS = 478
RIGHT_IRIS_CENTER = 468
LEFT_IRIS_CENTER = 473
_ASSET = Path(__file__).with_name("assets") / "face_topology.npz"


@dataclass(frozen=True)
class FaceTopology:
    """Triangles and ordered contours of the face mesh (all int32 landmark indices)."""

    triangles: np.ndarray
    """(T, 3) triangles rebuilt from FACEMESH_TESSELATION (eyes and mouth are holes)."""
    lips_outer: np.ndarray
    """Outer lip contour, ordered, starting at the top middle (0)."""
    lips_inner: np.ndarray
    """Inner lip contour, ordered, starting at the top middle (13); 14 is the bottom middle."""
    left_eye: np.ndarray
    """Person's left eye contour (image right), ordered."""
    right_eye: np.ndarray
    """Person's right eye contour (image left), ordered."""
    left_iris: np.ndarray
    """Left iris ring (474-477)."""
    right_iris: np.ndarray
    """Right iris ring (469-472)."""
    face_oval: np.ndarray
    """Face outline, ordered."""
    left_brow: np.ndarray
    """Left brow points (unordered)."""
    right_brow: np.ndarray
    """Right brow points (unordered)."""
    nose: np.ndarray
    """Nose points (unordered)."""


@cache
def face_topology() -> FaceTopology:
    """Load the committed topology (immutable, so caching it is safe)."""
    with np.load(_ASSET) as d:
        return FaceTopology(**{k: np.asarray(d[k], dtype=np.int32) for k in d.files})
