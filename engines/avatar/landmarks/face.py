"""Face landmarks without mediapipe: its face detector and attention face mesh run by onnxruntime.

:class:`FaceLandmarker` reproduces ``FaceMesh(refine_landmarks=True)`` (graph FaceLandmarkFrontCpu
of mediapipe 0.10.21 with the attention model): 478 points, the lips, eyes and irises refined.

- detection (FaceDetectionShortRangeCpu): the image letterboxed into 128x128 [-1, 1], 896 SSD
  anchors, weighted NMS (IoU 0.3), projected back; at most ``max_faces`` detections.
- face ROI: detection box, rotated by its eye keypoints (0 -> 1) to horizontal, squared on the long
  side and scaled 1.5 (FaceDetectionFrontDetectionToRoi).
- mesh (FaceLandmarkCpu with attention, ``attention.py``): the ROI warped into 192x192 [0, 1],
  478 landmarks (mesh + refined lips, eyes and irises), face-presence score (sigmoid) must exceed
  ``min_tracking_confidence``.
- tracking (``static=False``, FaceMesh video mode): the next frame's ROI comes from the landmarks
  (their bounding box, rotated by 33 -> 263, squared, x1.5, FaceLandmarkLandmarksToRoi); detection
  runs only while fewer than ``max_faces`` faces are tracked, its ROIs merged with the tracked
  ones (AssociationNormRectCalculator, IoU > 0.5: the tracked one wins).
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import numpy as np

from ...backends.ort import OrtConfig, OrtRunner
from .anchors import FACE_SHORT_RANGE_ANCHORS, ssd_anchors
from .attention import ATTENTION_DIR, AttentionMesh
from .detection import (
    DecodeOptions,
    Detection,
    decode_detections,
    letterbox,
    non_max_suppression,
    project_detections,
)
from .roi import (
    RotatedRect,
    detection_to_rect,
    image_to_tensor,
    landmarks_to_detection,
    project_landmarks,
    rect_iou,
    tensors_to_landmarks,
    transform_rect,
)

__all__ = ["ASSETS_DIR", "FaceLandmarker", "check_rgb"]

ASSETS_DIR = Path(__file__).with_name("assets")
_DETECTOR_SIZE = 128
_MESH_SIZE = 192
_NUM_POINTS = 478
_ASSOCIATION_IOU = 0.5


def _face_decode_options(min_score: float) -> DecodeOptions:
    return DecodeOptions(
        num_coords=16,
        x_scale=128.0,
        y_scale=128.0,
        w_scale=128.0,
        h_scale=128.0,
        num_keypoints=6,
        min_score_thresh=min_score,
    )


def check_rgb(image: object) -> np.ndarray:
    """``image`` as a C-contiguous (H, W, 3) uint8 array, or ValueError saying what is wrong."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected an RGB image as a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image, got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"empty image of shape {image.shape}")
    return np.ascontiguousarray(image)


def _outputs_by_size(out: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Model outputs keyed by their number of values (names differ between converters)."""
    return {int(v.size): v for v in out.values()}


class FaceLandmarker:
    """478 face landmarks per face in pixels, from mediapipe's models (no mediapipe needed).

    ``static``: detect on every call (FaceMesh static_image_mode); otherwise track across calls
    like FaceMesh's video mode (:meth:`reset` forgets the tracked faces). ``threads``: onnxruntime
    intra-op threads per model. ``assets_dir``: where face_detector.onnx and attention/ are (default:
    the package's).

    One deviation from FaceMesh: with ``max_faces`` > 1, tracked and newly detected faces together
    can outnumber ``max_faces`` in mediapipe; here only the ``max_faces`` largest are returned and
    tracked.
    """

    def __init__(
        self,
        static: bool = True,
        max_faces: int = 1,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        threads: int = 1,
        assets_dir: str | Path | None = None,
    ):
        if max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
        for name, value in (
            ("min_detection_confidence", min_detection_confidence),
            ("min_tracking_confidence", min_tracking_confidence),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.static = static
        self.max_faces = max_faces
        self.min_tracking_confidence = min_tracking_confidence
        folder = Path(assets_dir) if assets_dir is not None else ASSETS_DIR
        config = OrtConfig(threads=threads)
        self._detector: OrtRunner | None = OrtRunner(folder / "face_detector.onnx", "onnxruntime", config)
        attention = folder / "attention" if assets_dir is not None else ATTENTION_DIR
        self._mesh: AttentionMesh | None = AttentionMesh(threads=threads, assets_dir=attention)
        self._anchors = ssd_anchors(FACE_SHORT_RANGE_ANCHORS)
        self._decode = _face_decode_options(min_detection_confidence)
        self._tracked: list[RotatedRect] = []

    # -- public API -----------------------------------------------------------------------------

    def process(self, rgb: np.ndarray) -> list[np.ndarray]:
        """All faces found in an RGB uint8 (H, W, 3) image, largest first.

        Each face is a (478, 3) float64 array in pixels: x * W, y * H, z * W of mediapipe's
        normalised landmarks (the 468 mesh points, then the iris centre and rim of the person's
        right eye, 468-472, and left eye, 473-477). Raises ValueError for a non-uint8 or
        non-(H, W, 3) input, RuntimeError after :meth:`close`.
        """
        image = check_rgb(rgb)
        h, w = image.shape[:2]
        size = (w, h)
        faces: list[tuple[np.ndarray, RotatedRect]] = []
        for rect in self._rois(image, size):
            mesh = self._mesh_landmarks(image, rect)
            if mesh is not None:
                faces.append((mesh, self._rect_from_landmarks(mesh, size)))
        faces.sort(key=lambda f: -float(np.prod(np.ptp(f[0][:, :2] * size, axis=0))))
        faces = faces[: self.max_faces]
        if not self.static:
            self._tracked = [rect for _, rect in faces]
        scale = np.array([w, h, w], dtype=np.float64)
        return [mesh * scale for mesh, _ in faces]

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """The face detector's detections (normalised to the image), best first, at most max_faces."""
        image = check_rgb(rgb)
        tensor, matrix, _ = letterbox(image, _DETECTOR_SIZE, _DETECTOR_SIZE, (-1.0, 1.0), "zero")
        out = _outputs_by_size(self._runner("_detector").infer({self._input("_detector"): tensor[None]}))
        n = self._anchors.shape[0]
        dets = decode_detections(out[n * 16], out[n], self._anchors, self._decode)
        dets = non_max_suppression(dets, 0.3, "weighted")
        return project_detections(dets, matrix)[: self.max_faces]

    def reset(self) -> None:
        """Forget the tracked faces: the next call detects again."""
        self._tracked = []

    def close(self) -> None:
        """Release the onnxruntime sessions (idempotent)."""
        self._detector = None
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None
        self._tracked = []

    def __enter__(self) -> FaceLandmarker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- pipeline steps -------------------------------------------------------------------------

    def _runner(self, name: str) -> OrtRunner:
        runner: OrtRunner | None = getattr(self, name)
        if runner is None:
            raise RuntimeError("FaceLandmarker is closed")
        return runner

    def _input(self, name: str) -> str:
        return self._runner(name).input_names[0]

    def _attention(self) -> AttentionMesh:
        if self._mesh is None:
            raise RuntimeError("FaceLandmarker is closed")
        return self._mesh

    def _rois(self, image: np.ndarray, size: tuple[int, int]) -> list[RotatedRect]:
        """Face ROIs for this frame: tracked ones, plus detected ones when too few are tracked."""
        tracked = [] if self.static else self._tracked
        if len(tracked) >= self.max_faces:
            return list(tracked)
        detected = [self._rect_from_detection(d, size) for d in self.detect(image)]
        merged: list[RotatedRect] = []
        for rect in detected + tracked:  # later ones win on overlap
            merged = [r for r in merged if rect_iou(r, rect) <= _ASSOCIATION_IOU]
            merged.append(rect)
        return merged

    @staticmethod
    def _rect_from_detection(det: Detection, size: tuple[int, int]) -> RotatedRect:
        rect = detection_to_rect(det, size, rotation_keypoints=(0, 1), target_angle_degrees=0.0)
        return transform_rect(rect, size, scale_x=1.5, scale_y=1.5, square_long=True)

    @staticmethod
    def _rect_from_landmarks(mesh: np.ndarray, size: tuple[int, int]) -> RotatedRect:
        det = landmarks_to_detection(mesh)
        rect = detection_to_rect(det, size, rotation_keypoints=(33, 263), target_angle_degrees=0.0)
        return transform_rect(rect, size, scale_x=1.5, scale_y=1.5, square_long=True)

    def _mesh_landmarks(self, image: np.ndarray, rect: RotatedRect) -> np.ndarray | None:
        """(478, 3) normalised landmarks in ``rect``, or None when the face-presence score is too low
        (or the ROI is degenerate)."""
        values = (rect.x_center, rect.y_center, rect.width, rect.height, rect.rotation)
        if not (np.all(np.isfinite(values)) and rect.width > 0 and rect.height > 0):
            return None
        tensor, _, _ = image_to_tensor(image, rect, _MESH_SIZE, _MESH_SIZE, (0.0, 1.0), "replicate")
        crop_points, logit = self._attention().infer(tensor[None])
        presence = 1.0 / (1.0 + np.exp(-logit))
        if not presence > self.min_tracking_confidence:
            return None
        pts = tensors_to_landmarks(crop_points.reshape(-1), _NUM_POINTS, _MESH_SIZE, _MESH_SIZE)
        return project_landmarks(pts, rect)
