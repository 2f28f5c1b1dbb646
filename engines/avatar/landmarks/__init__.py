"""mediapipe's landmark pipelines without mediapipe: its models (ONNX, ``assets/``) + numpy pre/post.

Building blocks (shared by the face, pose and hand pipelines): SSD anchors (anchors.py),
detection decoding / NMS / letterbox / projection (detection.py), rotated ROIs, the ROI->tensor
crop and the landmark projection back (roi.py). The face pipeline is :class:`FaceLandmarker`
(face.py): the face detector, then the attention face mesh (attention.py, FaceMesh(refine_landmarks=
True): 478 points, lips, eyes and irises refined), whose three custom ops run in numpy
(:func:`landmarks_to_matrix`, :func:`transform_bilinear`) between its two ONNX parts; iris.py holds
the eye-region index map it shares with mediapipe's iris model. body.py has :class:`PoseLandmarker`
and :class:`HandLandmarker`. ``convert.py`` and ``convert_attention.py`` made the ONNX files (side
environment, not imported by the runtime).
"""

from __future__ import annotations

from .anchors import FACE_SHORT_RANGE_ANCHORS, PALM_ANCHORS, POSE_ANCHORS, AnchorOptions, ssd_anchors
from .attention import ATTENTION_DIR, LIPS_INDICES, AttentionMesh, landmarks_to_matrix, transform_bilinear
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
from .iris import EYE_CONTOUR_INDICES
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
    "ATTENTION_DIR",
    "EYE_CONTOUR_INDICES",
    "FACE_SHORT_RANGE_ANCHORS",
    "LIPS_INDICES",
    "PALM_ANCHORS",
    "POSE_ANCHORS",
    "AnchorOptions",
    "AttentionMesh",
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
    "landmarks_to_matrix",
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
    "transform_bilinear",
    "transform_rect",
]
