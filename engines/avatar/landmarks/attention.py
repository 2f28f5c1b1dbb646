"""mediapipe's attention face mesh (FaceMesh(refine_landmarks=True)) without mediapipe.

``face_landmark_with_attention.tflite`` is the 468-point mesh network plus three attention
branches: from the predicted mesh it builds a rotated box around the lips and each eye, resamples
the 48x48 feature map inside each box into 16x16, and regresses refined lips (80 points), eye
regions (71 points each) and irises (5 points each), which replace the mesh's x, y there
(mediapipe's LandmarksRefinementCalculator; z stays the mesh's, an iris gets the mean z of its
eye's 16 eyelid points). The result is FaceMesh(refine_landmarks=True)'s 478 points.

The network's standard parts run as two ONNX models made by ``convert_attention.py``
(``assets/attention/backbone.onnx``, ``heads.onnx``); mediapipe's three custom ops between them
are re-implemented here in numpy from their documented semantics (mediapipe
``util/tflite/operations``, version 2 of each), their options read from ``assets/attention/ops.json``:

- ``Landmarks2TransformMatrix``: rotation r = target - atan2 of the vector between two landmarks;
  the subset's landmarks rotated by r, their bounding box (w, h) and centre c (rotated back);
  matrix = T(c) R(-r) S(scale_x * w / out_w, scale_y * h / out_h) T(-out_w / 2, -out_h / 2),
  taking crop pixels to feature-map pixels.
- ``TransformTensorBilinear``: each output pixel centre mapped through the matrix (pixel-centre
  convention: p_in = M (p_out + 0.5) - 0.5), sampled bilinearly; 0 when the point falls outside
  [0, W-1] x [0, H-1].
- ``TransformLandmarks``: x, y of the heads' points mapped through the matrix (times a constant
  multiplier, the graph's MUL node, which brings the result back to 192-px units).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...backends.ort import OrtConfig, OrtRunner
from .iris import EYE_CONTOUR_INDICES

__all__ = ["ATTENTION_DIR", "LIPS_INDICES", "AttentionMesh", "landmarks_to_matrix", "transform_bilinear"]

ATTENTION_DIR = Path(__file__).with_name("assets") / "attention"
INPUT_SIZE = 192
NUM_MESH = 468
NUM_POINTS = 478

LIPS_INDICES = np.array(
    [
        *(61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409),
        *(78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415),
        *(76, 77, 90, 180, 85, 16, 315, 404, 320, 307, 306, 184, 74, 73, 72, 11, 302, 303, 304, 408),
        *(62, 96, 89, 179, 86, 15, 316, 403, 319, 325, 292, 183, 42, 41, 38, 12, 268, 271, 272, 407),
    ],
    dtype=np.int64,
)
"""Mesh indices of the 80 lips points (tensors_to_face_landmarks_with_attention.pbtxt)."""

# refinement: head output -> mesh indices whose x, y it replaces (iris: new points 468-477)
_REFINE = {
    "lips": LIPS_INDICES,
    "left_eye": EYE_CONTOUR_INDICES[0],
    "right_eye": EYE_CONTOUR_INDICES[1],
    "left_iris": np.arange(468, 473),
    "right_iris": np.arange(473, 478),
}
_IRIS_Z = {"left_iris": EYE_CONTOUR_INDICES[0, :16], "right_iris": EYE_CONTOUR_INDICES[1, :16]}
_F = np.float32


def landmarks_to_matrix(landmarks: np.ndarray, opts: dict) -> np.ndarray:
    """Landmarks2TransformMatrix v2: (N, >=2) landmarks -> (4, 4) float32 crop->source matrix."""
    pts = np.asarray(landmarks, dtype=_F)
    left, right = pts[opts["left_rotation_idx"]], pts[opts["right_rotation_idx"]]
    rot = _F(opts["target_rotation_radians"]) - _F(np.arctan2(right[1] - left[1], right[0] - left[0]))
    c, s = _F(np.cos(rot)), _F(np.sin(rot))
    sub = pts[np.asarray(opts["subset_idxs"], dtype=np.int64), :2]
    rx = c * sub[:, 0] - s * sub[:, 1]
    ry = s * sub[:, 0] + c * sub[:, 1]
    x0, x1, y0, y1 = rx.min(), rx.max(), ry.min(), ry.max()
    w, h = x1 - x0, y1 - y0
    mx, my = (x0 + x1) / _F(2), (y0 + y1) / _F(2)
    ci, si = _F(np.cos(-rot)), _F(np.sin(-rot))
    cx, cy = ci * mx - si * my, si * mx + ci * my
    ow, oh = _F(opts["output_width"]), _F(opts["output_height"])
    sx = _F(opts["scale_x"]) * w / ow
    sy = _F(opts["scale_y"]) * h / oh
    # T(c) @ R(-rot) @ S(sx, sy) @ T(-ow/2, -oh/2); R(-rot) = [[cos r, sin r], [-sin r, cos r]]
    a = np.array([[c * sx, s * sy], [-s * sx, c * sy]], dtype=_F)
    t = np.array([cx, cy], dtype=_F) - a @ np.array([ow / _F(2), oh / _F(2)], dtype=_F)
    m = np.eye(4, dtype=_F)
    m[:2, :2] = a
    m[:2, 3] = t
    return m


def transform_bilinear(features: np.ndarray, matrix: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TransformTensorBilinear v2: (H, W, C) features sampled on an (out_h, out_w) grid -> float32."""
    feat = np.asarray(features, dtype=_F)
    h, w, ch = feat.shape
    m = np.asarray(matrix, dtype=_F)
    ys, xs = np.meshgrid(np.arange(out_h, dtype=_F), np.arange(out_w, dtype=_F), indexing="ij")
    # pixel-centre convention (mediapipe's "align corners correction")
    tx = m[0, 0] * xs + m[0, 1] * ys + (m[0, 3] + m[0, 0] * _F(0.5) + m[0, 1] * _F(0.5) - _F(0.5))
    ty = m[1, 0] * xs + m[1, 1] * ys + (m[1, 3] + m[1, 0] * _F(0.5) + m[1, 1] * _F(0.5) - _F(0.5))
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    fx, fy = np.floor(tx), np.floor(ty)
    ax, ay = (tx - fx)[..., None], (ty - fy)[..., None]
    padded = np.zeros((h + 1, w + 1, ch), dtype=_F)  # reads past the last row/column are 0
    padded[:h, :w] = feat
    ix = np.clip(fx, 0, w - 1).astype(np.int64)
    iy = np.clip(fy, 0, h - 1).astype(np.int64)
    q11, q21 = padded[iy, ix], padded[iy, ix + 1]
    q12, q22 = padded[iy + 1, ix], padded[iy + 1, ix + 1]
    upper = (_F(1) - ax) * q11 + ax * q21
    lower = (_F(1) - ax) * q12 + ax * q22
    out = ay * lower + (_F(1) - ay) * upper
    out[~inside] = 0
    return out


class AttentionMesh:
    """The attention face mesh on a 192x192 crop: 478 landmarks + face-presence logit."""

    def __init__(self, threads: int = 1, assets_dir: str | Path | None = None):
        folder = Path(assets_dir) if assets_dir is not None else ATTENTION_DIR
        config = OrtConfig(threads=threads)
        self._backbone = OrtRunner(folder / "backbone.onnx", "onnxruntime", config)
        self._heads = OrtRunner(folder / "heads.onnx", "onnxruntime", config)
        ops = json.loads((folder / "ops.json").read_text())
        self._mesh_scale = _F(ops["mesh_scale"])
        self._multiplier = np.asarray(ops["matrix_multiplier"], dtype=_F)
        self._regions: dict[str, dict] = ops["regions"]
        self._head_region: dict[str, str] = ops["heads"]
        for name in ("lips", "left_eye", "right_eye"):  # the boxes are built on the refined points
            if list(self._regions[name]["subset_idxs"]) != _REFINE[name].tolist():
                raise ValueError(f"ops.json: unexpected {name} subset")

    def infer(self, crop: np.ndarray) -> tuple[np.ndarray, float]:
        """``crop``: (1, 192, 192, 3) float32 RGB in [0, 1] (the face ROI, as for the 468 model).

        Returns ((478, 3) float64 landmarks in px of the crop, z on the x scale; presence logit).
        """
        x = np.ascontiguousarray(crop, dtype=_F).reshape(1, INPUT_SIZE, INPUT_SIZE, 3)
        out = self._backbone.infer({"input_1": x})
        mesh = out["mesh"].reshape(NUM_MESH, 3)
        feat = out["features"][0]
        scaled = mesh * self._mesh_scale
        matrices, feeds = {}, {}
        for name, opts in self._regions.items():
            m = landmarks_to_matrix(scaled, opts)
            matrices[name] = m * self._multiplier
            feeds[f"{name}_crop"] = transform_bilinear(feat, m, opts["output_height"], opts["output_width"])[
                None
            ]
        heads = self._heads.infer(feeds)
        full = np.empty((NUM_POINTS, 3), dtype=np.float64)
        full[:NUM_MESH] = mesh
        for name, raw in heads.items():
            m = matrices[self._head_region[name]]
            pts = raw.reshape(-1, 2).astype(_F)
            xy = pts @ m[:2, :2].T + m[:2, 3]
            idx = _REFINE[name]
            full[idx, :2] = xy
            if name in _IRIS_Z:
                full[idx, 2] = mesh[_IRIS_Z[name], 2].astype(np.float64).mean()
        return full, float(out["face_flag"].reshape(-1)[0])

    def close(self) -> None:
        self._backbone = self._heads = None  # type: ignore[assignment]
