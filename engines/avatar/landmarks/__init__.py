"""mediapipe's landmark pipelines without mediapipe: its models (ONNX, ``assets/``) + numpy pre/post.

Building blocks (shared by the face, pose and hand pipelines): SSD anchors (anchors.py),
detection decoding / NMS / letterbox / projection (detection.py), rotated ROIs, the ROI->tensor
crop and the landmark projection back (roi.py), the iris pipeline (iris.py). The face pipeline is
:class:`FaceLandmarker` (face.py); body.py has :class:`PoseLandmarker` and :class:`HandLandmarker`.
"""

from __future__ import annotations

from .anchors import FACE_SHORT_RANGE_ANCHORS, PALM_ANCHORS, POSE_ANCHORS, AnchorOptions, ssd_anchors
from .body import HandLandmarker, HandResult, PoseLandmarker, PoseResult
from .detection import (
    DecodeOptions,
    Detection,
    decode_detections,
    letterbox,
    non_max_suppression,
    project_detections,
    remove_letterbox,
)
from .face import ASSETS_DIR, FaceLandmarker, check_rgb
from .roi import (
    RotatedRect,
    alignment_points_rect,
    detection_to_rect,
    image_to_tensor,
    landmarks_to_detection,
    normalize_radians,
    project_landmarks,
    rect_iou,
    subrect_matrix,
    tensors_to_landmarks,
    transform_rect,
)

__all__ = [
    "ASSETS_DIR",
    "FACE_SHORT_RANGE_ANCHORS",
    "PALM_ANCHORS",
    "POSE_ANCHORS",
    "AnchorOptions",
    "DecodeOptions",
    "Detection",
    "FaceLandmarker",
    "HandLandmarker",
    "HandResult",
    "PoseLandmarker",
    "PoseResult",
    "RotatedRect",
    "alignment_points_rect",
    "check_rgb",
    "decode_detections",
    "detection_to_rect",
    "image_to_tensor",
    "landmarks_to_detection",
    "letterbox",
    "non_max_suppression",
    "normalize_radians",
    "project_detections",
    "project_landmarks",
    "rect_iou",
    "remove_letterbox",
    "ssd_anchors",
    "subrect_matrix",
    "tensors_to_landmarks",
    "transform_rect",
]
