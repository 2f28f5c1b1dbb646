"""Where each eye's 71 refined points go in the face mesh (mediapipe's eye-region index maps).

mediapipe's iris model and the eye branches of its attention face mesh (``attention.py``,
FaceMesh(refine_landmarks=True)) both regress 71 points per eye: the eyelids (the first 16: the
lower lid from the outer to the inner corner, then the upper lid), then 55 points around them up to
the lower brow. These are the mesh indices they replace (UpdateFaceLandmarksCalculator of the
iris_tracking graph; the same lists are the attention model's eye refinement maps). The iris model
itself is no longer run (step 1, commit 22de17e, ran it beside the 468-point mesh).

Naming follows mediapipe: its "left eye" (corners 33 and 133) is the person's right eye, on the
image's left, and yields the iris points 468-472; its "right eye" (362, 263) is the person's left
eye, iris 473-477.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EYE_CONTOUR_INDICES"]

_EYE_A = (
    *(33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173),
    *(130, 25, 110, 24, 23, 22, 26, 112, 243, 247, 30, 29, 27, 28, 56, 190),
    *(226, 31, 228, 229, 230, 231, 232, 233, 244, 113, 225, 224, 223, 222, 221, 189),
    *(35, 124, 46, 53, 52, 65),
    *(143, 111, 117, 118, 119, 120, 121, 128, 245, 156, 70, 63, 105, 66, 107, 55, 193),
)
_EYE_B = (
    *(263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398),
    *(359, 255, 339, 254, 253, 252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414),
    *(446, 261, 448, 449, 450, 451, 452, 453, 464, 342, 445, 444, 443, 442, 441, 413),
    *(265, 353, 276, 283, 282, 295),
    *(372, 340, 346, 347, 348, 349, 350, 357, 465, 383, 300, 293, 334, 296, 336, 285, 417),
)
EYE_CONTOUR_INDICES = np.array([_EYE_A, _EYE_B], dtype=np.int64)
"""(2, 71) mesh indices of each eye's 71 refined points: mediapipe's left eye (corners 33/133, the
person's right) then its right eye (362/263); the first 16 of each are the eyelids."""
