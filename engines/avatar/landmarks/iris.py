"""mediapipe's iris pipeline (iris_landmark.tflite) on face-mesh landmarks, in numpy + cv2.

Mirrors ``iris_landmark_left_and_right_from_face_landmarks_cpu.pbtxt`` and the subgraphs it uses:

1. Eye ROI (IrisLandmarkLandmarksToRoi): the two corner landmarks -> their bounding box, rotated
   so the first->second corner points right, squared on the long side (pixels), scaled by 2.3.
2. Crop (IrisLandmarkCpu): ImageCroppingCalculator cuts the rotated rect at integer centre and
   size with nearest-neighbour sampling (BORDER_REPLICATE); ImageTransformationCalculator fits it
   into 64x64 (INTER_AREA when shrinking, INTER_LINEAR when growing, replicate letterbox) and
   flips it horizontally for the eye given as "right"; the tensor is RGB / 255.
3. Decode: 71 eye-contour and 5 iris landmarks (x mirrored back for the flipped eye), letterbox
   removed, projected to the image with the float ROI (LandmarkProjectionCalculator).

Naming follows mediapipe's graph: its "left eye" (corners 33, 133, not flipped) is the person's
right eye, on the image's left; it yields iris points 468-472. Its "right eye" (362, 263, flipped)
is the person's left eye; iris 473-477.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .roi import RotatedRect, detection_to_rect, landmarks_to_detection, project_landmarks, transform_rect
from .roi import tensors_to_landmarks as _tensors_to_landmarks
from .warp import quad_transform, warp_perspective

__all__ = [
    "EYE_CONTOUR_INDICES",
    "EYE_CORNERS",
    "IRIS_INPUT_SIZE",
    "IRIS_RIM_ORDER",
    "IRIS_Z_SOURCES",
    "EyeResult",
    "decode_eye",
    "eye_roi",
    "eye_tensor",
]

IRIS_INPUT_SIZE = 64
EYE_CORNERS: tuple[tuple[tuple[int, int], bool], ...] = (((33, 133), False), ((362, 263), True))
"""((corner landmarks), flipped) for mediapipe's left eye (-> iris 468-472) and right eye (-> 473-477)."""

# UpdateFaceLandmarksCalculator (iris_tracking graph): where the 71 contour points of each eye go in
# the 468-point mesh (first eye: corners 33/133, second: 362/263). The same lists are the eye
# refinement maps of the attention mesh (refine_landmarks=True).
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
"""(2, 71) mesh indices of the iris model's 71 eye-contour points, per eye (EYE_CORNERS order)."""
IRIS_Z_SOURCES = EYE_CONTOUR_INDICES[:, :16]
IRIS_RIM_ORDER = np.array([[0, 1, 2, 3, 4], [0, 3, 2, 1, 4]], dtype=np.int64)
"""(2, 5) per eye: the iris pipeline's 5 points -> FaceMesh(refine_landmarks=True)'s order.

The iris model names its rim points for the unflipped eye (centre, image-right, top, image-left,
bottom); for the flipped eye the pipeline mirrors x back without reordering, which swaps the
right and left rim points. FaceMesh(refine_landmarks=True) has the image-right one first for both
eyes (474 is the right of 473), so the flipped eye's points 1 and 3 are swapped."""
"""(2, 16) eyelid indices whose mean z is each iris' z in FaceMesh(refine_landmarks=True)."""


@dataclass(frozen=True)
class EyeResult:
    """One eye's iris-model output, normalised to the image."""

    contour: np.ndarray
    """(71, 3) eye contour and brow points (EYE_CONTOUR_INDICES order)."""
    iris: np.ndarray
    """(5, 3) iris centre then 4 points on its rim."""
    roi: RotatedRect


def eye_roi(landmarks: np.ndarray, corners: tuple[int, int], image_size: tuple[int, int]) -> RotatedRect:
    """IrisLandmarkLandmarksToRoi: the eye ROI from two normalised corner landmarks."""
    det = landmarks_to_detection(np.asarray(landmarks)[list(corners), :2])
    rect = detection_to_rect(det, image_size, rotation_keypoints=(0, 1), target_angle_degrees=0.0)
    return transform_rect(rect, image_size, scale_x=2.3, scale_y=2.3, square_long=True)


def _round(v: float) -> int:
    """C's round(): halves away from zero."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def eye_tensor(
    image: np.ndarray, rect: RotatedRect, flip: bool, size: int = IRIS_INPUT_SIZE
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The (size, size, 3) float32 [0, 1] model input and its letterbox padding (l, t, r, b).

    ImageCroppingCalculator (CPU) + ImageTransformationCalculator (FIT, optional horizontal flip)
    + TfLiteConverterCalculator (zero_center false), see the module docstring.
    """
    img_h, img_w = image.shape[:2]
    cx = _round(rect.x_center * img_w)
    cy = _round(rect.y_center * img_h)
    cw = max(1, _round(rect.width * img_w))
    ch = max(1, _round(rect.height * img_h))
    corners = cv2.boxPoints(((cx, cy), (cw, ch), rect.rotation * 180.0 / math.pi))
    m = quad_transform(corners, [[0, ch - 1], [0, 0], [cw - 1, 0], [cw - 1, ch - 1]])
    crop = warp_perspective(image, m, (cw, ch), "nearest", cv2.BORDER_REPLICATE)
    scale = min(np.float32(size) / np.float32(cw), np.float32(size) / np.float32(ch))
    tw, th = _round(float(np.float32(cw) * scale)), _round(float(np.float32(ch) * scale))
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    resized = cv2.resize(crop, (tw, th), interpolation=interp)
    top, left = (size - th) // 2, (size - tw) // 2
    if (tw, th) != (size, size):
        resized = cv2.copyMakeBorder(
            resized, top, size - th - top, left, size - tw - left, cv2.BORDER_REPLICATE
        )
    if flip:
        resized = cv2.flip(resized, 1)
    in_aspect, pad = cw / ch, (0.0, 0.0, 0.0, 0.0)
    if in_aspect < 1.0:
        p = (1.0 - in_aspect) / 2.0
        pad = (p, 0.0, p, 0.0)
    elif in_aspect > 1.0:
        p = (1.0 - 1.0 / in_aspect) / 2.0
        pad = (0.0, p, 0.0, p)
    return resized.astype(np.float32) * np.float32(1.0 / 255.0), pad


def decode_eye(
    contour_raw: np.ndarray,
    iris_raw: np.ndarray,
    rect: RotatedRect,
    flip: bool,
    padding: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0),
    size: int = IRIS_INPUT_SIZE,
) -> EyeResult:
    """TensorsToLandmarks (mirrored back if ``flip``) + LandmarkLetterboxRemoval + projection."""
    left, top, right, bottom = padding
    out = []
    for raw, n in ((contour_raw, 71), (iris_raw, 5)):
        pts = _tensors_to_landmarks(raw, n, size, size, flip_horizontally=flip)
        pts[:, 0] = (pts[:, 0] - left) / (1.0 - left - right)
        pts[:, 1] = (pts[:, 1] - top) / (1.0 - top - bottom)
        pts[:, 2] = pts[:, 2] / (1.0 - left - right)
        out.append(project_landmarks(pts, rect))
    return EyeResult(out[0], out[1], rect)
