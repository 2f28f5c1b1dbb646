"""SSD detections: decoding (TensorsToDetections), non-max suppression, letterbox and projection.

Mirrors mediapipe's TensorsToDetectionsCalculator (CPU path with anchors), NonMaxSuppression-
Calculator (WEIGHTED and DEFAULT algorithms), the letterboxed ImageToTensorCalculator input of
the detectors (``keep_aspect_ratio``) and DetectionProjectionCalculator (the MATRIX back to the
image) / DetectionLetterboxRemovalCalculator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .roi import BorderMode, image_to_tensor

__all__ = [
    "DecodeOptions",
    "Detection",
    "decode_detections",
    "letterbox",
    "non_max_suppression",
    "project_detections",
    "remove_letterbox",
]


@dataclass(frozen=True, eq=False)
class Detection:
    """One detection, normalised to its frame (tensor or image): box, keypoints and score."""

    xmin: float
    ymin: float
    width: float
    height: float
    keypoints: np.ndarray = field(repr=False)
    """(k, 2) float64 x, y."""
    score: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)``."""
        return self.xmin, self.ymin, self.xmin + self.width, self.ymin + self.height


@dataclass(frozen=True)
class DecodeOptions:
    """The TensorsToDetectionsCalculatorOptions used by the mediapipe detectors."""

    num_coords: int
    """Values per box: 4 box values + 2 per keypoint."""
    x_scale: float
    y_scale: float
    w_scale: float
    h_scale: float
    num_keypoints: int = 0
    box_coord_offset: int = 0
    keypoint_coord_offset: int = 4
    reverse_output_order: bool = True
    """Box values as (x, y, w, h) and keypoints as (x, y); False: (y, x, h, w) and (y, x)."""
    apply_exponential_on_box_size: bool = False
    sigmoid_score: bool = True
    score_clipping_thresh: float | None = 100.0
    """Raw scores are clipped to +-this before the sigmoid (None: no clipping)."""
    min_score_thresh: float | None = 0.5
    """Detections scoring below are dropped (None: keep all)."""


def decode_detections(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, options: DecodeOptions
) -> list[Detection]:
    """Decode the detector outputs (boxes (N, num_coords), scores (N, classes)) against ``anchors``.

    ``anchors`` is (N, 4) ``[x_center, y_center, w, h]`` (see :func:`.anchors.ssd_anchors`). The score
    of a box is its best class (after the optional clipped sigmoid). Boxes below
    ``min_score_thresh`` or with negative / NaN size are dropped. Returns detections normalised to
    the model input, in anchor order.
    """
    o = options
    boxes = np.asarray(raw_boxes, dtype=np.float32).reshape(-1, o.num_coords)
    n = boxes.shape[0]
    scores = np.asarray(raw_scores, dtype=np.float32).reshape(n, -1)
    if anchors.shape[0] != n:
        raise ValueError(f"{n} boxes but {anchors.shape[0]} anchors")
    if o.sigmoid_score:
        if o.score_clipping_thresh is not None:
            scores = np.clip(scores, -o.score_clipping_thresh, o.score_clipping_thresh)
        with np.errstate(over="ignore"):  # exp(100) overflows float32 to inf: score 0, as in C++
            scores = (1.0 / (1.0 + np.exp(-scores))).astype(np.float32)
    best = scores.max(axis=1)
    keep = np.ones(n, dtype=bool) if o.min_score_thresh is None else best >= o.min_score_thresh
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        return []
    b = boxes[idx].astype(np.float64)
    a = anchors[idx].astype(np.float64)
    ax, ay, aw, ah = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
    off = o.box_coord_offset
    if o.reverse_output_order:
        x, y, w, h = b[:, off], b[:, off + 1], b[:, off + 2], b[:, off + 3]
    else:
        y, x, h, w = b[:, off], b[:, off + 1], b[:, off + 2], b[:, off + 3]
    xc = x / o.x_scale * aw + ax
    yc = y / o.y_scale * ah + ay
    if o.apply_exponential_on_box_size:
        w = np.exp(w / o.w_scale) * aw
        h = np.exp(h / o.h_scale) * ah
    else:
        w = w / o.w_scale * aw
        h = h / o.h_scale * ah
    kp = np.zeros((idx.size, o.num_keypoints, 2))
    for k in range(o.num_keypoints):
        p = o.keypoint_coord_offset + 2 * k
        kx, ky = (b[:, p], b[:, p + 1]) if o.reverse_output_order else (b[:, p + 1], b[:, p])
        kp[:, k, 0] = kx / o.x_scale * aw + ax
        kp[:, k, 1] = ky / o.y_scale * ah + ay
    out = []
    for i in range(idx.size):
        wi, hi = float(w[i]), float(h[i])
        if not (wi >= 0 and hi >= 0):  # negative or NaN
            continue
        x0, y0 = float(xc[i] - wi / 2), float(yc[i] - hi / 2)
        out.append(Detection(x0, y0, wi, hi, kp[i], float(best[idx[i]])))
    return out


def _iou(a: Detection, b: Detection) -> float:
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    ix = min(ax1, bx1) - max(ax0, bx0)
    iy = min(ay1, by1) - max(ay0, by0)
    if ix < 0 or iy < 0:
        return 0.0
    inter = ix * iy
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


def non_max_suppression(
    detections: Sequence[Detection],
    threshold: float = 0.3,
    algorithm: Literal["weighted", "default"] = "weighted",
    max_detections: int = -1,
    min_score: float = -1.0,
) -> list[Detection]:
    """NonMaxSuppressionCalculator with INTERSECTION_OVER_UNION overlap.

    Detections are visited by decreasing score. ``default``: one is kept unless its IoU with an
    already kept one exceeds ``threshold``. ``weighted`` (mediapipe's face/pose/palm setting): the
    best remaining detection and all remaining ones overlapping it by more than ``threshold`` form
    a cluster, replaced by one detection whose box corners and keypoints are the score-weighted
    means of the cluster's and whose score is the best one's. ``max_detections`` (> 0) caps the
    output of ``default`` (mediapipe ignores it for ``weighted``); detections scoring below
    ``min_score`` (> 0) end the search.
    """
    order = sorted(detections, key=lambda d: -d.score)
    out: list[Detection] = []
    if algorithm == "default":
        limit = max_detections if max_detections > -1 else len(order)
        for det in order:
            if min_score > 0 and det.score < min_score:
                break
            if all(_iou(kept, det) <= threshold for kept in out):
                out.append(det)
            if len(out) >= limit:
                break
        return out
    if algorithm != "weighted":
        raise ValueError(f"unknown NMS algorithm {algorithm!r} (choose 'weighted' or 'default')")
    remaining = order
    while remaining:
        top = remaining[0]
        if min_score > 0 and top.score < min_score:
            break
        cluster = [d for d in remaining if _iou(d, top) > threshold]
        rest = [d for d in remaining if _iou(d, top) <= threshold]
        if cluster:
            wts = np.array([d.score for d in cluster])
            total = wts.sum()
            corners = np.array([d.box for d in cluster])
            x0, y0, x1, y1 = (wts @ corners) / total
            kps = np.einsum("n,nkc->kc", wts, np.stack([d.keypoints for d in cluster])) / total
            out.append(Detection(float(x0), float(y0), float(x1 - x0), float(y1 - y0), kps, top.score))
        else:
            out.append(top)
        if len(rest) == len(remaining):
            break
        remaining = rest
    return out


def letterbox(
    image: np.ndarray,
    width: int,
    height: int,
    float_range: tuple[float, float] = (-1.0, 1.0),
    border: BorderMode = "zero",
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]]:
    """The whole image fitted into a ``width`` x ``height`` tensor, aspect kept (detector input).

    ImageToTensorCalculator with ``keep_aspect_ratio`` and no ROI: returns ``(tensor, matrix,
    padding)`` as :func:`.roi.image_to_tensor` (the padding is black, i.e. ``float_range[0]``, with
    ``border="zero"``).
    """
    return image_to_tensor(image, None, width, height, float_range, border, keep_aspect_ratio=True)


def project_detections(detections: Sequence[Detection], matrix: np.ndarray) -> list[Detection]:
    """DetectionProjectionCalculator: map detections through a 3x3 tensor->image matrix.

    Keypoints are projected; the box becomes the axis-aligned bounds of its projected corners.
    """
    m = np.asarray(matrix, dtype=np.float64)
    out = []
    for d in detections:
        kp = d.keypoints @ m[:2, :2].T + m[:2, 2]
        x0, y0, x1, y1 = d.box
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) @ m[:2, :2].T + m[:2, 2]
        lo, hi = corners.min(axis=0), corners.max(axis=0)
        size = hi - lo
        out.append(Detection(float(lo[0]), float(lo[1]), float(size[0]), float(size[1]), kp, d.score))
    return out


def remove_letterbox(
    detections: Sequence[Detection], padding: tuple[float, float, float, float]
) -> list[Detection]:
    """DetectionLetterboxRemovalCalculator: undo ``(left, top, right, bottom)`` padding fractions."""
    left, top, right, bottom = padding
    sx, sy = 1.0 - left - right, 1.0 - top - bottom
    out = []
    for d in detections:
        kp = (d.keypoints - [left, top]) / [sx, sy]
        out.append(
            Detection((d.xmin - left) / sx, (d.ymin - top) / sy, d.width / sx, d.height / sy, kp, d.score)
        )
    return out
