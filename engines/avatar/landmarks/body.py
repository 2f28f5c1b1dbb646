"""Body and hand landmarks of a still photo: mediapipe's Pose and Hands pipelines without mediapipe.

Runs mediapipe 0.10.21's own models (ONNX, ``assets/``) with onnxruntime and its pre- and
post-processing in numpy (the shared blocks of this package), static image mode only.

``PoseLandmarker`` = ``mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1,
enable_segmentation=False)``:

1. pose_detection: the whole image letterboxed into 224x224 (values in [-1, 1], black border),
   SSD decoding, weighted NMS (IoU 0.3); the best detection is kept;
2. ROI (``PoseDetectionToRoi``): a square centred on keypoint 0 (mid hip), side twice the distance
   to keypoint 1, rotated so that keypoint 0 -> 1 points up; scaled 1.25, squared on its long side;
3. pose_landmark_full on a 256x256 crop of the ROI ([0, 1], replicated border): 39 landmarks x
   (x, y, z, visibility logit, presence logit), a pose-presence score (no pose below 0.5) and a
   64x64 heatmap that moves each landmark (:func:`refine_from_heatmap`);
4. projection back to the image; the first 33 landmarks are the pose.

In static mode mediapipe neither re-crops with the landmarks (``PoseLandmarksToRoi`` only feeds
the next frame) nor filters them, so neither happens here.

``HandLandmarker`` = ``mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=2,
model_complexity=1)``:

1. palm_detection_full: 192x192 letterboxed ([0, 1], black border), weighted NMS (IoU 0.3), the
   ``max_hands`` best palms;
2. ROI (``PalmDetectionDetectionToRoi``): the palm box rotated so that keypoint 0 (wrist) -> 2
   points up, shifted by half its height towards the fingers, squared, scaled 2.6; of two ROIs
   whose axis-aligned boxes overlap by IoU > 0.5 the later one is kept (``AssociationNormRect``);
3. hand_landmark_full on a 224x224 crop ([0, 1], replicated border): 21 landmarks, hand presence
   (no hand below 0.5) and handedness;
4. projection back. Labels are mediapipe's, which assume a mirrored (selfie) image: "Right" is the
   person's *left* hand in an ordinary photo.

mediapipe re-crops a hand with its own landmarks only when tracking, so static mode does not.
Parity with mediapipe itself: ``benchmarks/fit_body.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vlogger.engines.avatar.landmarks.anchors import PALM_ANCHORS, POSE_ANCHORS, ssd_anchors
from vlogger.engines.avatar.landmarks.detection import (
    DecodeOptions,
    Detection,
    decode_detections,
    letterbox,
    non_max_suppression,
    remove_letterbox,
)
from vlogger.engines.avatar.landmarks.face import ASSETS_DIR, check_rgb
from vlogger.engines.avatar.landmarks.roi import (
    RotatedRect,
    alignment_points_rect,
    detection_to_rect,
    image_to_tensor,
    project_landmarks,
    rect_iou,
    tensors_to_landmarks,
    transform_rect,
)
from vlogger.engines.backends.ort import OrtConfig, OrtRunner

__all__ = [
    "HandLandmarker",
    "HandResult",
    "PoseLandmarker",
    "PoseResult",
    "associate_rects",
    "hand_roi",
    "pose_roi",
    "refine_from_heatmap",
    "remove_landmark_letterbox",
]

NUM_POSE = 33
NUM_HAND = 21
PRESENCE_THRESHOLD = 0.5
"""The presence gate of the landmark models (mediapipe's ``min_tracking_confidence`` default)."""
HEATMAP_KERNEL = 9
"""Window of the pose heatmap refinement. The compiled graph's options say 7, but mediapipe 0.10.21
returns what the proto default 9 gives (checked landmark by landmark on 149 photos and frames)."""

_POSE_DECODE = DecodeOptions(12, 224.0, 224.0, 224.0, 224.0, num_keypoints=4)
"""pose_detection_cpu's TensorsToDetectionsCalculator (the score threshold is set per landmarker)."""
_PALM_DECODE = DecodeOptions(18, 192.0, 192.0, 192.0, 192.0, num_keypoints=7)
"""palm_detection_cpu's TensorsToDetectionsCalculator."""


# -- the pieces the shared modules do not have --------------------------------------------------


def pose_roi(detection: Detection, image_size: tuple[int, int]) -> RotatedRect:
    """``PoseDetectionToRoi``: the alignment keypoints 0 (centre) and 1 (size, rotation to 90
    degrees) of a pose detection (normalised to the image) -> the landmark model's ROI."""
    rect = alignment_points_rect(detection, image_size, (0, 1), 90.0)
    return transform_rect(rect, image_size, 1.25, 1.25, square_long=True)


def hand_roi(detection: Detection, image_size: tuple[int, int]) -> RotatedRect:
    """``PalmDetectionDetectionToRoi``: a palm detection -> the hand landmark model's ROI."""
    rect = detection_to_rect(detection, image_size, (0, 2), 90.0)
    return transform_rect(rect, image_size, 2.6, 2.6, shift_y=-0.5, square_long=True)


def associate_rects(rects: list[RotatedRect], threshold: float = 0.5) -> list[RotatedRect]:
    """``AssociationNormRectCalculator`` on one list: each rect removes the earlier ones whose
    axis-aligned boxes overlap it by IoU > ``threshold``, then joins the end of the list."""
    out: list[RotatedRect] = []
    for r in rects:
        out = [q for q in out if rect_iou(r, q) <= threshold]
        out.append(r)
    return out


def remove_landmark_letterbox(points: np.ndarray, padding: tuple[float, float, float, float]) -> np.ndarray:
    """``LandmarkLetterboxRemovalCalculator``: (N, 2+) tensor-normalised points -> the unpadded ROI
    (z, if present, scales like x)."""
    left, top, right, bottom = padding
    sx, sy = 1.0 - left - right, 1.0 - top - bottom
    out = np.array(points, dtype=np.float64)
    out[:, 0] = (out[:, 0] - left) / sx
    out[:, 1] = (out[:, 1] - top) / sy
    if out.shape[1] > 2:
        out[:, 2] /= sx
    return out


def refine_from_heatmap(
    xy: np.ndarray, heatmap: np.ndarray, kernel: int = HEATMAP_KERNEL, min_confidence: float = 0.5
) -> np.ndarray:
    """``RefineLandmarksFromHeatmapCalculator``: (N, 2) landmarks normalised to the crop, heatmap
    (H, W, >= N) logits. Each landmark moves to the sigmoid-weighted mean cell of the ``kernel`` x
    ``kernel`` window around its cell (cut at the heatmap's edges) when the window's peak is
    ``>= min_confidence``. As in mediapipe, cells come from truncation towards zero and the row
    is (mistakenly) bounded by the heatmap height only through the column test.
    """
    hh, hw = heatmap.shape[:2]
    n = len(xy)
    off = (kernel - 1) // 2
    out = np.array(xy, dtype=np.float64)
    cols = np.trunc(out[:, 0].astype(np.float32) * np.float32(hw)).astype(np.int64)
    rows = np.trunc(out[:, 1].astype(np.float32) * np.float32(hh)).astype(np.int64)
    ok = (cols >= 0) & (cols < hw) & (rows >= 0) & (cols < hh)
    ok &= rows < hh + off  # (rows beyond have empty windows)
    if not ok.any():
        return out
    # logits padded with -inf: outside cells weigh sigmoid(-inf) = 0, i.e. the window is cut
    pad = np.full((hh + 3 * off, hw + 2 * off, n), -np.inf, np.float32)
    pad[off : off + hh, off : off + hw] = heatmap[:, :, :n]
    d = np.arange(kernel)
    idx = np.flatnonzero(ok)
    r = rows[idx][:, None, None] + d[None, :, None]
    c = cols[idx][:, None, None] + d[None, None, :]
    with np.errstate(over="ignore"):
        conf = 1.0 / (1.0 + np.exp(-pad[r, c, idx[:, None, None]]))
    total = conf.sum(axis=(1, 2))
    peak = conf.max(axis=(1, 2))
    grid_r = r - off
    grid_c = c - off
    move = (peak >= min_confidence) & (total > 0)
    safe = np.where(total > 0, total, 1.0)
    new_x = (conf * grid_c).sum(axis=(1, 2)) / hw / safe
    new_y = (conf * grid_r).sum(axis=(1, 2)) / hh / safe
    out[idx[move], 0] = new_x[move]
    out[idx[move], 1] = new_y[move]
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


class _Detector:
    """A mediapipe SSD detector (pose or palm): letterboxed input, decoding, weighted NMS."""

    def __init__(
        self,
        model: Path,
        anchors: np.ndarray,
        size: int,
        value_range: tuple[float, float],
        decode: DecodeOptions,
        threads: int,
    ) -> None:
        self.runner = OrtRunner(model, "onnxruntime", OrtConfig(threads=threads))
        self.anchors = anchors
        self.size = size
        self.range = value_range
        self.decode = decode

    def __call__(self, img: np.ndarray, min_score: float) -> list[Detection]:
        """Detections normalised to ``img``, best first (NMS output order)."""
        tensor, _, padding = letterbox(img, self.size, self.size, self.range, "zero")
        out = self.runner.infer({self.runner.input_names[0]: tensor[None]})
        boxes, scores = (out[n] for n in self.runner.output_names[:2])
        dets = decode_detections(
            boxes[0], scores[0], self.anchors, replace(self.decode, min_score_thresh=min_score)
        )
        return remove_letterbox(non_max_suppression(dets, 0.3, "weighted"), padding)


def _landmark_runner(model: Path, threads: int, sizes: tuple[int, ...]) -> OrtRunner:
    """An onnxruntime runner of a landmark model whose outputs hold ``sizes`` values, in that order
    (mediapipe reads them by position; two of the hand model's outputs share a size)."""
    runner = OrtRunner(model, "onnxruntime", OrtConfig(threads=threads))
    shapes = [o.shape[1:] for o in runner.session.get_outputs()]
    got = tuple(math.prod(d) if all(isinstance(v, int) for v in d) else -1 for d in shapes)
    if got[: len(sizes)] != sizes:
        raise ValueError(f"{model.name}: expected outputs of {sizes} values, found {got}")
    return runner


def _valid(rect: RotatedRect) -> bool:
    v = (rect.x_center, rect.y_center, rect.width, rect.height, rect.rotation)
    return all(math.isfinite(x) for x in v) and rect.width > 0 and rect.height > 0


# -- pose -------------------------------------------------------------------------------------------


@dataclass
class PoseResult:
    """One pose: 33 landmarks in pixels and mediapipe's per-landmark scores."""

    xy: np.ndarray
    """(33, 2) float64 pixels (mediapipe's normalised x * width, y * height)."""
    z: np.ndarray
    """(33,) mediapipe's relative depth (in image widths)."""
    visibility: np.ndarray
    """(33,) sigmoid of the visibility logits."""
    presence: np.ndarray
    """(33,) sigmoid of the presence logits."""
    score: float
    """Pose presence score of the landmark model (>= the presence gate)."""
    detection_score: float
    roi: RotatedRect
    """The crop the landmarks come from (normalised to the image)."""


class PoseLandmarker:
    """mediapipe Pose (static image mode, model_complexity=1, no segmentation) on onnxruntime.

    ``threads``: onnxruntime intra-op threads per model. ``min_presence_confidence`` is the pose
    presence gate (mediapipe's ``min_tracking_confidence``, also used in static mode).
    """

    def __init__(
        self,
        min_detection_confidence: float = 0.5,
        threads: int = 1,
        *,
        min_presence_confidence: float = PRESENCE_THRESHOLD,
        assets: Path = ASSETS_DIR,
    ) -> None:
        self.min_detection_confidence = float(min_detection_confidence)
        self.min_presence_confidence = float(min_presence_confidence)
        threads = int(threads)
        self._detector: _Detector | None = _Detector(
            Path(assets) / "pose_detector.onnx",
            ssd_anchors(POSE_ANCHORS),
            224,
            (-1.0, 1.0),
            _POSE_DECODE,
            threads,
        )
        self._landmarks: OrtRunner | None = _landmark_runner(
            Path(assets) / "pose_landmarks.onnx", threads, (195, 1, 256 * 256, 64 * 64 * 39, 117)
        )

    def close(self) -> None:
        """Release the onnxruntime sessions (idempotent)."""
        self._detector = self._landmarks = None

    def __enter__(self) -> PoseLandmarker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def detect(self, rgb: np.ndarray) -> PoseResult | None:
        """The most confident pose in an RGB uint8 (H, W, 3) image with its scores, or None."""
        img = check_rgb(rgb)
        if self._detector is None or self._landmarks is None:
            raise RuntimeError("this PoseLandmarker is closed")
        h, w = img.shape[:2]
        dets = self._detector(img, self.min_detection_confidence)
        if not dets:
            return None
        roi = pose_roi(dets[0], (w, h))
        if not _valid(roi):
            return None
        tensor, _, padding = image_to_tensor(
            img, roi, 256, 256, (0.0, 1.0), "replicate", keep_aspect_ratio=True
        )
        runner = self._landmarks
        res = runner.infer({runner.input_names[0]: tensor[None]})
        out = [res[n] for n in runner.output_names]
        flag = float(out[1].reshape(-1)[0])
        if not flag >= self.min_presence_confidence:
            return None
        raw = out[0].reshape(-1)
        pts = tensors_to_landmarks(raw, 39, 256, 256)[:NUM_POSE]
        scores = raw.reshape(39, 5)[:NUM_POSE, 3:5]
        pts[:, :2] = refine_from_heatmap(pts[:, :2], out[3][0])
        pts = project_landmarks(remove_landmark_letterbox(pts, padding), roi)
        return PoseResult(
            xy=pts[:, :2] * np.array([w, h], dtype=np.float64),
            z=pts[:, 2],
            visibility=_sigmoid(scores[:, 0]),
            presence=_sigmoid(scores[:, 1]),
            score=flag,
            detection_score=float(dets[0].score),
            roi=roi,
        )

    def process(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``(xy (33, 2) pixels, visibility (33,))`` of the most confident pose, or None."""
        res = self.detect(rgb)
        return None if res is None else (res.xy, res.visibility)


# -- hands ------------------------------------------------------------------------------------------


@dataclass
class HandResult:
    """One hand: 21 landmarks in pixels, mediapipe's handedness label and the scores."""

    xy: np.ndarray
    """(21, 2) float64 pixels."""
    z: np.ndarray
    """(21,) relative depth (in image widths)."""
    label: str
    """"Left" or "Right", mediapipe's mirrored-image convention ("Right" = the person's left hand
    in an ordinary photo)."""
    handedness: float
    """Score of ``label`` (>= 0.5)."""
    score: float
    """Hand presence score of the landmark model (>= the presence gate)."""
    roi: RotatedRect


class HandLandmarker:
    """mediapipe Hands (static image mode, model_complexity=1) on onnxruntime.

    ``max_hands``: palms kept after NMS (``max_num_hands``). ``min_presence_confidence``: the hand
    presence gate (mediapipe's ``min_tracking_confidence``, also used in static mode).
    """

    def __init__(
        self,
        max_hands: int = 2,
        min_detection_confidence: float = 0.5,
        threads: int = 1,
        *,
        min_presence_confidence: float = PRESENCE_THRESHOLD,
        assets: Path = ASSETS_DIR,
    ) -> None:
        if int(max_hands) < 1:
            raise ValueError(f"max_hands must be >= 1, got {max_hands}")
        self.max_hands = int(max_hands)
        self.min_detection_confidence = float(min_detection_confidence)
        self.min_presence_confidence = float(min_presence_confidence)
        threads = int(threads)
        self._detector: _Detector | None = _Detector(
            Path(assets) / "palm_detector.onnx",
            ssd_anchors(PALM_ANCHORS),
            192,
            (0.0, 1.0),
            _PALM_DECODE,
            threads,
        )
        self._landmarks: OrtRunner | None = _landmark_runner(
            Path(assets) / "hand_landmarks.onnx", threads, (63, 1, 1, 63)
        )

    def close(self) -> None:
        """Release the onnxruntime sessions (idempotent)."""
        self._detector = self._landmarks = None

    def __enter__(self) -> HandLandmarker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rois(self, rgb: np.ndarray) -> list[RotatedRect]:
        """The hand ROIs of the ``max_hands`` best palms (overlapping ones merged), mediapipe's order."""
        img = check_rgb(rgb)
        if self._detector is None:
            raise RuntimeError("this HandLandmarker is closed")
        h, w = img.shape[:2]
        palms = self._detector(img, self.min_detection_confidence)[: self.max_hands]
        return associate_rects([hand_roi(d, (w, h)) for d in palms])

    def detect(self, rgb: np.ndarray) -> list[HandResult]:
        """Every hand found in an RGB uint8 (H, W, 3) image, with its scores (mediapipe's order)."""
        img = check_rgb(rgb)
        rois = self.rois(img)
        runner = self._landmarks
        if runner is None:
            raise RuntimeError("this HandLandmarker is closed")
        h, w = img.shape[:2]
        found: list[HandResult] = []
        for roi in rois:
            if not _valid(roi):
                continue
            tensor, _, padding = image_to_tensor(
                img, roi, 224, 224, (0.0, 1.0), "replicate", keep_aspect_ratio=True
            )
            res = runner.infer({runner.input_names[0]: tensor[None]})
            out = [res[n] for n in runner.output_names]
            presence = float(out[1].reshape(-1)[0])
            if not presence >= self.min_presence_confidence:
                continue
            left = float(out[2].reshape(-1)[0])  # binary classifier: P("Left"), already a sigmoid
            pts = tensors_to_landmarks(out[0], NUM_HAND, 224, 224, normalize_z=0.4)
            pts = project_landmarks(remove_landmark_letterbox(pts, padding), roi)
            label, score = ("Left", left) if left >= 1.0 - left else ("Right", 1.0 - left)
            found.append(
                HandResult(
                    xy=pts[:, :2] * np.array([w, h], dtype=np.float64),
                    z=pts[:, 2],
                    label=label,
                    handedness=score,
                    score=presence,
                    roi=roi,
                )
            )
        return found

    def process(self, rgb: np.ndarray) -> list[tuple[np.ndarray, str]]:
        """``[(xy (21, 2) pixels, "Left" | "Right"), ...]`` for every hand found, mediapipe's labels."""
        return [(r.xy, r.label) for r in self.detect(rgb)]
