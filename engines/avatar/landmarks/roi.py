"""Regions of interest: rotated rects, the crop into a model tensor and the way back.

Mirrors these mediapipe calculators (0.10.21, CPU):

- DetectionsToRectsCalculator / AlignmentPointsRectsCalculator: a detection -> a rotated rect.
- RectTransformationCalculator: scale / shift / square a rect.
- ImageToTensorCalculator with its OpenCV converter: the rotated rect (optionally padded to the
  tensor's aspect ratio, ``keep_aspect_ratio``) is warped into a WxH tensor with bilinear
  interpolation on the uint8 image, then mapped to a float range.
- TensorsToLandmarksCalculator and LandmarkProjectionCalculator: model output -> normalised image
  coordinates.

Conventions (as mediapipe): rects and landmarks are normalised to the image (x by its width, y by
its height), rotation in radians, positive = clockwise on screen (y points down). The crop maps the
rect's corners onto the tensor's outer corners: tensor point (u, v) in [0, 1]^2 is image point
``centre + R(rotation) @ ((u - 0.5) * width, (v - 0.5) * height)`` (pixels, pixel centres at
integer coordinates on both sides, as OpenCV's warp does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

if TYPE_CHECKING:
    from .detection import Detection

from .warp import quad_transform, warp_perspective

__all__ = [
    "BorderMode",
    "RotatedRect",
    "alignment_points_rect",
    "detection_to_rect",
    "image_to_tensor",
    "landmarks_to_detection",
    "normalize_radians",
    "project_landmarks",
    "rect_iou",
    "subrect_matrix",
    "tensors_to_landmarks",
    "transform_rect",
]

BorderMode = Literal["replicate", "zero"]
_CV_BORDER = {"replicate": cv2.BORDER_REPLICATE, "zero": cv2.BORDER_CONSTANT}


@dataclass(frozen=True)
class RotatedRect:
    """A rect normalised to the image (mediapipe's NormalizedRect)."""

    x_center: float
    y_center: float
    width: float
    height: float
    rotation: float = 0.0
    """Radians, clockwise on screen (y down)."""

    def to_pixels(self, image_size: tuple[int, int]) -> tuple[float, float, float, float, float]:
        """``(cx, cy, w, h, rotation)`` in pixels of an image of ``(width, height)``."""
        w, h = image_size
        return self.x_center * w, self.y_center * h, self.width * w, self.height * h, self.rotation


def normalize_radians(angle: float) -> float:
    """``angle`` wrapped into [-pi, pi)."""
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def _rotation(
    keypoints: np.ndarray, image_size: tuple[int, int], start: int, end: int, target_degrees: float
) -> float:
    w, h = image_size
    x0, y0 = keypoints[start, 0] * w, keypoints[start, 1] * h
    x1, y1 = keypoints[end, 0] * w, keypoints[end, 1] * h
    target = math.pi * target_degrees / 180.0
    return normalize_radians(target - math.atan2(-(y1 - y0), x1 - x0))


def detection_to_rect(
    detection: Detection,
    image_size: tuple[int, int],
    rotation_keypoints: tuple[int, int] | None = None,
    target_angle_degrees: float = 0.0,
    use_keypoints: bool = False,
) -> RotatedRect:
    """DetectionsToRectsCalculator for one detection.

    The rect is the detection's box (``use_keypoints``: the bounding box of its keypoints, the
    USE_KEYPOINTS conversion mode). With ``rotation_keypoints=(start, end)`` the rotation is the
    one that turns the start->end vector (in pixels of ``image_size`` = (width, height)) to
    ``target_angle_degrees`` (0: pointing right, 90: pointing up).
    """
    if use_keypoints:
        kp = detection.keypoints
        x0, y0 = float(kp[:, 0].min()), float(kp[:, 1].min())
        x1, y1 = float(kp[:, 0].max()), float(kp[:, 1].max())
        rect = RotatedRect((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0)
    else:
        rect = RotatedRect(
            detection.xmin + detection.width / 2,
            detection.ymin + detection.height / 2,
            detection.width,
            detection.height,
        )
    if rotation_keypoints is None:
        return rect
    rot = _rotation(detection.keypoints, image_size, *rotation_keypoints, target_angle_degrees)
    return replace(rect, rotation=rot)


def alignment_points_rect(
    detection: Detection,
    image_size: tuple[int, int],
    rotation_keypoints: tuple[int, int],
    target_angle_degrees: float,
) -> RotatedRect:
    """AlignmentPointsRectsCalculator (pose): a square centred on the start keypoint.

    Its side is twice the start->end distance in pixels; rotation as in :func:`detection_to_rect`.
    """
    w, h = image_size
    start, end = rotation_keypoints
    kp = detection.keypoints
    cx, cy = kp[start, 0] * w, kp[start, 1] * h
    sx, sy = kp[end, 0] * w, kp[end, 1] * h
    side = math.hypot(sx - cx, sy - cy) * 2
    rot = _rotation(kp, image_size, start, end, target_angle_degrees)
    return RotatedRect(float(cx / w), float(cy / h), side / w, side / h, rot)


def transform_rect(
    rect: RotatedRect,
    image_size: tuple[int, int],
    scale_x: float = 1.0,
    scale_y: float = 1.0,
    shift_x: float = 0.0,
    shift_y: float = 0.0,
    square_long: bool = False,
    square_short: bool = False,
    rotation_degrees: float | None = None,
) -> RotatedRect:
    """RectTransformationCalculator on a normalised rect.

    Order as mediapipe: optional extra rotation, shift (by fractions of the rect's size, along the
    rect's rotated axes), squaring (long/short side in pixels), then scaling.
    """
    w_img, h_img = image_size
    width, height, rotation = rect.width, rect.height, rect.rotation
    if rotation_degrees is not None:
        rotation = normalize_radians(rotation + math.pi * rotation_degrees / 180.0)
    cx, cy = rect.x_center, rect.y_center
    if rotation == 0.0:
        cx += width * shift_x
        cy += height * shift_y
    else:
        dx = w_img * width * shift_x
        dy = h_img * height * shift_y
        cx += (dx * math.cos(rotation) - dy * math.sin(rotation)) / w_img
        cy += (dx * math.sin(rotation) + dy * math.cos(rotation)) / h_img
    if square_long:
        side = max(width * w_img, height * h_img)
        width, height = side / w_img, side / h_img
    elif square_short:
        side = min(width * w_img, height * h_img)
        width, height = side / w_img, side / h_img
    return RotatedRect(cx, cy, width * scale_x, height * scale_y, rotation)


def landmarks_to_detection(landmarks: np.ndarray) -> Detection:
    """LandmarksToDetectionCalculator: box = bounding box of the (normalised) landmarks' x, y.

    The keypoints are all the landmarks (x, y); the score is 0 (unused).
    """
    from .detection import Detection

    xy = np.asarray(landmarks, dtype=np.float64)[:, :2]
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    return Detection(float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]), xy, 0.0)


def rect_iou(a: RotatedRect, b: RotatedRect) -> float:
    """IoU of the axis-aligned boxes of two rects, rotation ignored (AssociationNormRectCalculator)."""
    ax0, ay0 = a.x_center - a.width / 2, a.y_center - a.height / 2
    bx0, by0 = b.x_center - b.width / 2, b.y_center - b.height / 2
    ix = min(ax0 + a.width, bx0 + b.width) - max(ax0, bx0)
    iy = min(ay0 + a.height, by0 + b.height) - max(ay0, by0)
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


def _pad_to_aspect(w: float, h: float, out_w: int, out_h: int) -> tuple[float, float, float, float]:
    """PadRoi: grow (w, h) to the tensor's aspect; returns (w, h, horizontal pad, vertical pad)."""
    tensor_aspect = out_h / out_w
    roi_aspect = h / w
    if tensor_aspect > roi_aspect:
        return w, w * tensor_aspect, 0.0, (1.0 - roi_aspect / tensor_aspect) / 2.0
    return h / tensor_aspect, h, (1.0 - tensor_aspect / roi_aspect) / 2.0, 0.0


def subrect_matrix(
    center: tuple[float, float],
    size: tuple[float, float],
    rotation: float,
    image_size: tuple[int, int],
    flip_horizontally: bool = False,
) -> np.ndarray:
    """3x3 matrix taking tensor-normalised (u, v, 1) to image-normalised (x, y, 1).

    GetRotatedSubRectToRectTransformMatrix for a rect given in pixels (``center``, ``size``,
    ``rotation``) of an image of ``image_size`` = (width, height).
    """
    a, b = size
    c, d = math.cos(rotation), math.sin(rotation)
    e, f = center
    g, h = 1.0 / image_size[0], 1.0 / image_size[1]
    fl = -1.0 if flip_horizontally else 1.0
    return np.array(
        [
            [a * c * fl * g, -b * d * g, (-0.5 * a * c * fl + 0.5 * b * d + e) * g],
            [a * d * fl * h, b * c * h, (-0.5 * b * c - 0.5 * a * d * fl + f) * h],
            [0.0, 0.0, 1.0],
        ]
    )


def image_to_tensor(
    image: np.ndarray,
    rect: RotatedRect | None,
    width: int,
    height: int,
    float_range: tuple[float, float] = (0.0, 1.0),
    border: BorderMode = "replicate",
    keep_aspect_ratio: bool = False,
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]]:
    """ImageToTensorCalculator (CPU/OpenCV path) for one RGB uint8 image.

    ``rect=None`` takes the whole image. Returns ``(tensor, matrix, padding)``: the (height,
    width, 3) float32 tensor, the 3x3 tensor->image matrix (normalised coordinates, see
    :func:`subrect_matrix`; the MATRIX output) and the letterbox padding (left, top, right, bottom)
    as fractions of the tensor (LETTERBOX_PADDING; zero without ``keep_aspect_ratio``).

    Like mediapipe: the rect's corners map onto the tensor's outer corners (the same four-point
    transform), sampled bilinearly on the uint8 image the way mediapipe's OpenCV does it
    (:func:`.warp.warp_perspective`: the same bytes), then ``v * scale + offset`` maps [0, 255] to
    ``float_range``.
    ``border``: "replicate" (mediapipe's default) or "zero" (black, i.e. ``float_range[0]``).
    """
    img_h, img_w = image.shape[:2]
    if rect is None:
        cx, cy, w, h, rot = img_w / 2, img_h / 2, float(img_w), float(img_h), 0.0
    else:
        cx, cy, w, h, rot = rect.to_pixels((img_w, img_h))
    if not (w > 0 and h > 0) or any(math.isnan(v) for v in (cx, cy, w, h, rot)):
        raise ValueError(f"invalid ROI (centre {cx:.1f},{cy:.1f} size {w:.1f}x{h:.1f} rotation {rot})")
    pad = (0.0, 0.0, 0.0, 0.0)
    if keep_aspect_ratio:
        w, h, ph, pv = _pad_to_aspect(w, h, width, height)
        pad = (ph, pv, ph, pv)
    corners = cv2.boxPoints(((cx, cy), (w, h), rot * 180.0 / math.pi))
    m = quad_transform(corners, [[0, height], [0, 0], [width, 0], [width, height]])
    warped = warp_perspective(image, m, (width, height), "linear", _CV_BORDER[border])
    lo, hi = float_range
    scale = (hi - lo) / 255.0
    tensor = warped.astype(np.float32) * np.float32(scale) + np.float32(lo)
    return tensor, subrect_matrix((cx, cy), (w, h), rot, (img_w, img_h)), pad


def tensors_to_landmarks(
    raw: np.ndarray,
    num_landmarks: int,
    input_width: int,
    input_height: int,
    flip_horizontally: bool = False,
    flip_vertically: bool = False,
    normalize_z: float = 1.0,
) -> np.ndarray:
    """TensorsToLandmarksCalculator (NORM_LANDMARKS): (num_landmarks, 3) normalised to the tensor.

    ``raw`` holds ``num_landmarks * d`` values (d >= 3 per landmark: x, y, z in tensor pixels, extra
    values such as visibility are dropped). Flips mirror x (or y) within the tensor first; z is
    divided by the tensor width (and ``normalize_z``).
    """
    flat = np.asarray(raw, dtype=np.float64).reshape(-1)
    dims = flat.size // num_landmarks
    if dims < 3 or dims * num_landmarks != flat.size:
        raise ValueError(f"{flat.size} values do not hold {num_landmarks} landmarks of >= 3 values")
    pts = flat.reshape(num_landmarks, dims)[:, :3].copy()
    if flip_horizontally:
        pts[:, 0] = input_width - pts[:, 0]
    if flip_vertically:
        pts[:, 1] = input_height - pts[:, 1]
    pts[:, 0] /= input_width
    pts[:, 1] /= input_height
    pts[:, 2] /= input_width * normalize_z
    return pts


def project_landmarks(landmarks: np.ndarray, rect: RotatedRect, ignore_rotation: bool = False) -> np.ndarray:
    """LandmarkProjectionCalculator (NORM_RECT input): tensor-normalised -> image-normalised.

    As mediapipe: the offset from the tensor centre is rotated in normalised units, then scaled by
    the rect's normalised size (exact for rects that are square in pixels, like all the face, eye,
    hand and pose ROIs); z is multiplied by the rect's normalised width.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    angle = 0.0 if ignore_rotation else rect.rotation
    c, s = math.cos(angle), math.sin(angle)
    x = pts[:, 0] - 0.5
    y = pts[:, 1] - 0.5
    out = pts.copy()
    out[:, 0] = (c * x - s * y) * rect.width + rect.x_center
    out[:, 1] = (s * x + c * y) * rect.height + rect.y_center
    if pts.shape[1] > 2:
        out[:, 2] = pts[:, 2] * rect.width
    return out
