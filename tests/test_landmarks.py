"""The face landmark pipeline without mediapipe (engines/avatar/landmarks): building blocks and parity.

The parity references (``tests/data/fit_reference/face_*.npz``) were recorded from mediapipe
0.10.21 by ``benchmarks/fit_reference.py --test-data`` on the shipped portrait and three variants of
it made by ``generated_images``. ``FaceLandmarker`` runs the attention face mesh, so it is compared
with their ``refined`` / ``refined_z`` landmarks: FaceMesh(refine_landmarks=True), 478 points. (The
files also hold FaceMesh(refine_landmarks=False) + mediapipe's iris pipeline, which step 1 ran.)
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.fit_reference import PORTRAIT, generated_images, load_rgb
from vlogger.engines.avatar.landmarks import (
    ASSETS_DIR,
    EYE_CONTOUR_INDICES,
    FACE_SHORT_RANGE_ANCHORS,
    PALM_ANCHORS,
    POSE_ANCHORS,
    DecodeOptions,
    Detection,
    FaceLandmarker,
    RotatedRect,
    decode_detections,
    image_to_tensor,
    landmarks_to_matrix,
    non_max_suppression,
    project_detections,
    project_landmarks,
    ssd_anchors,
    transform_bilinear,
    transform_rect,
)
from vlogger.engines.avatar.landmarks.warp import warp_perspective
from vlogger.engines.avatar.topology import face_topology

REF_DIR = Path(__file__).resolve().parent / "data" / "fit_reference"
VARIANTS = ("default_portrait", "portrait_rot20", "portrait_small", "portrait_flip")


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return load_rgb(PORTRAIT)


@pytest.fixture(scope="module")
def landmarker() -> FaceLandmarker:
    with FaceLandmarker(static=True) as fl:
        yield fl


def _det(x0: float, y0: float, x1: float, y1: float, score: float, k: int = 2) -> Detection:
    kp = np.tile([[x0, y0]], (k, 1)).astype(np.float64)
    return Detection(x0, y0, x1 - x0, y1 - y0, kp, score)


# -- anchors, decoding, NMS ---------------------------------------------------------------------


def test_anchor_counts_and_layout() -> None:
    face = ssd_anchors(FACE_SHORT_RANGE_ANCHORS)
    assert face.shape == (896, 4)
    assert ssd_anchors(POSE_ANCHORS).shape == (2254, 4)
    assert ssd_anchors(PALM_ANCHORS).shape == (2016, 4)
    # 16x16 cells x 2 anchors, then 8x8 cells x 6 (three stride-16 layers merged), all 1x1
    np.testing.assert_allclose(face[0], [0.5 / 16, 0.5 / 16, 1, 1])
    np.testing.assert_allclose(face[1], face[0])
    np.testing.assert_allclose(face[2, :2], [1.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(face[512:518, :2], np.tile([0.5 / 8, 0.5 / 8], (6, 1)))
    np.testing.assert_allclose(face[-1, :2], [7.5 / 8, 7.5 / 8])


def test_decode_boxes_and_keypoints_against_anchors() -> None:
    anchors = np.array([[0.25, 0.5, 1, 1], [0.75, 0.5, 1, 1]], dtype=np.float32)
    opts = DecodeOptions(num_coords=6, x_scale=100, y_scale=100, w_scale=100, h_scale=100, num_keypoints=1)
    raw = np.array([[10, -5, 20, 40, 1, 2], [0, 0, 10, 10, 0, 0]], dtype=np.float32)
    scores = np.array([[3.0], [-3.0]], dtype=np.float32)  # sigmoid 0.95 / 0.05
    (d,) = decode_detections(raw, scores, anchors, opts)
    assert d.score == pytest.approx(1 / (1 + math.exp(-3)), rel=1e-6)
    assert (d.xmin, d.ymin, d.width, d.height) == pytest.approx((0.35 - 0.1, 0.45 - 0.2, 0.2, 0.4))
    np.testing.assert_allclose(d.keypoints, [[0.26, 0.52]], atol=1e-6)
    # keep everything: both boxes, anchor order
    keep_all = dataclasses.replace(opts, min_score_thresh=None)
    assert len(decode_detections(raw, scores, anchors, keep_all)) == 2


def test_weighted_nms_merges_overlaps_and_keeps_the_rest() -> None:
    a = _det(0.10, 0.10, 0.30, 0.30, 0.9)
    b = _det(0.12, 0.12, 0.32, 0.32, 0.6)  # IoU with a ~ 0.68
    c = _det(0.60, 0.60, 0.80, 0.80, 0.7)  # apart
    out = non_max_suppression([b, c, a], threshold=0.3, algorithm="weighted")
    assert [round(d.score, 2) for d in out] == [0.9, 0.7]
    merged = out[0]
    w = np.array([0.9, 0.6]) / 1.5
    assert merged.xmin == pytest.approx(w @ [0.10, 0.12])
    assert merged.box[2] == pytest.approx(w @ [0.30, 0.32])
    np.testing.assert_allclose(merged.keypoints[0], [w @ [0.10, 0.12], w @ [0.10, 0.12]])
    assert out[1].box == pytest.approx(c.box) and out[1].score == c.score  # a cluster of one


def test_default_nms_suppresses_by_iou() -> None:
    a = _det(0.0, 0.0, 0.4, 0.4, 0.9)
    b = _det(0.1, 0.0, 0.5, 0.4, 0.8)  # IoU 0.6
    c = _det(0.3, 0.0, 0.7, 0.4, 0.7)  # IoU with a 1/7
    assert non_max_suppression([a, b, c], 0.5, "default") == [a, c]
    assert non_max_suppression([a, b, c], 0.7, "default") == [a, b, c]
    assert non_max_suppression([a, b, c], 0.5, "default", max_detections=1) == [a]
    with pytest.raises(ValueError, match="algorithm"):
        non_max_suppression([a], 0.5, "soft")  # type: ignore[arg-type]


def test_letterbox_matrix_projects_detections_back() -> None:
    img = np.zeros((100, 300, 3), np.uint8)
    img[40:60, 200:220] = 255  # a white square at x 200-219, y 40-59
    tensor, matrix, pad = image_to_tensor(img, None, 128, 128, (-1.0, 1.0), "zero", keep_aspect_ratio=True)
    assert pad == pytest.approx((0.0, 1 / 3, 0.0, 1 / 3))
    assert tensor[0, 0, 0] == -1.0 and tensor.max() == 1.0
    ys, xs = np.nonzero(tensor[..., 0] > 0)
    u0, u1 = xs.min() / 128, (xs.max() + 1) / 128
    v0, v1 = ys.min() / 128, (ys.max() + 1) / 128
    (d,) = project_detections([_det(u0, v0, u1, v1, 1.0)], matrix)
    assert d.xmin * 300 == pytest.approx(200, abs=2.5) and d.box[2] * 300 == pytest.approx(220, abs=2.5)
    assert d.ymin * 100 == pytest.approx(40, abs=2.5) and d.box[3] * 100 == pytest.approx(60, abs=2.5)


# -- ROI crop and projection --------------------------------------------------------------------


def test_crop_projection_round_trip_on_a_rotated_roi() -> None:
    h, w = 240, 320
    img = np.zeros((h, w, 3), np.uint8)
    px, py = 201, 97
    img[py - 1 : py + 2, px - 1 : px + 2] = 255
    rect = transform_rect(RotatedRect(0.55, 0.45, 0.35, 0.3, 0.6), (w, h), square_long=True)
    tensor, matrix, _ = image_to_tensor(img, rect, 96, 96)
    # brightest tensor pixel -> tensor-normalised point -> image: back where it started
    iy, ix = np.unravel_index(np.argmax(tensor[..., 0]), tensor.shape[:2])
    back = project_landmarks(np.array([[ix / 96, iy / 96, 0.0]]), rect)[0]
    step = rect.width * w / 96  # image pixels per tensor pixel
    assert abs(back[0] * w - px) <= step and abs(back[1] * h - py) <= step
    # the projection equals the crop's own matrix (square ROI) and inverts it exactly
    uv = np.array([[0.1, 0.9], [0.5, 0.5], [0.8, 0.3]])
    via_matrix = uv @ matrix[:2, :2].T + matrix[:2, 2]
    proj = project_landmarks(np.c_[uv, np.zeros(3)], rect)[:, :2]
    np.testing.assert_allclose(proj, via_matrix, atol=1e-9)
    again = np.linalg.solve(matrix, np.c_[proj, np.ones(3)].T).T[:, :2]
    np.testing.assert_allclose(again, uv, atol=1e-9)
    # z is scaled by the rect's normalised width
    assert project_landmarks(np.array([[0.5, 0.5, 0.2]]), rect)[0, 2] == pytest.approx(0.2 * rect.width)


def test_warp_emulation_identity_and_shift() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    np.testing.assert_array_equal(warp_perspective(img, np.eye(3), (30, 20)), img)
    shift = np.array([[1, 0, -3], [0, 1, -2], [0, 0, 1]], dtype=np.float64)
    out = warp_perspective(img, shift, (20, 10), "nearest")
    np.testing.assert_array_equal(out, img[2:12, 3:23])


# -- the attention mesh's custom ops (attention.py) ---------------------------------------------


def _opts(
    subset: list[int], out: tuple[int, int] = (16, 16), scale: tuple[float, float] = (1.0, 1.0)
) -> dict:
    """Landmarks2TransformMatrix options: rotation from landmark 0 to landmark 1, box of ``subset``."""
    return {
        "subset_idxs": subset,
        "left_rotation_idx": 0,
        "right_rotation_idx": 1,
        "target_rotation_radians": 0.0,
        "output_width": out[0],
        "output_height": out[1],
        "scale_x": scale[0],
        "scale_y": scale[1],
    }


def _box_landmarks(centre: tuple[float, float], size: tuple[float, float], angle: float) -> np.ndarray:
    """Landmarks 0, 1: the box's left and right edge midpoints; 2-5: its corners; rotated by ``angle``
    (radians, image axes: x right, y down) about ``centre``."""
    w, h = size
    local = np.array(
        [[-w / 2, 0], [w / 2, 0], [-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]]
    )
    c, s = math.cos(angle), math.sin(angle)
    return local @ np.array([[c, s], [-s, c]]) + np.asarray(centre)


def test_landmarks_to_matrix_axis_aligned_box() -> None:
    pts = _box_landmarks((18.0, 28.0), (16.0, 16.0), 0.0)  # x 10..26, y 20..36
    m = landmarks_to_matrix(pts, _opts([2, 3, 4, 5]))
    assert m.dtype == np.float32 and m.shape == (4, 4)
    np.testing.assert_allclose(m[:2, :2], np.eye(2), atol=1e-6)  # 16 px box -> 16 px crop: scale 1
    np.testing.assert_allclose(m[:2, 3], [10.0, 20.0], atol=1e-5)  # crop (0, 0) -> the box's corner
    np.testing.assert_array_equal(m[2:], np.eye(4, dtype=np.float32)[2:])
    # scale_x / scale_y and the box size: crop (0..16) spans scale * box around the centre
    m = landmarks_to_matrix(
        _box_landmarks((18.0, 28.0), (8.0, 4.0), 0.0), _opts([2, 3, 4, 5], scale=(2.0, 1.5))
    )
    np.testing.assert_allclose(m[:2, :2], np.diag([2 * 8 / 16, 1.5 * 4 / 16]), atol=1e-6)
    np.testing.assert_allclose(m[:2, :2] @ [8.0, 8.0] + m[:2, 3], [18.0, 28.0], atol=1e-5)
    # the subset decides the box: a subset of two opposite corners gives the same box
    np.testing.assert_allclose(
        landmarks_to_matrix(pts, _opts([2, 4])), landmarks_to_matrix(pts, _opts([2, 3, 4, 5])), atol=1e-6
    )


@pytest.mark.parametrize("degrees", [90.0, 30.0, -135.0])
def test_landmarks_to_matrix_follows_the_rotation_landmarks(degrees: float) -> None:
    a = math.radians(degrees)
    centre, (w, h) = (40.0, 25.0), (12.0, 6.0)
    pts = _box_landmarks(centre, (w, h), a)
    m = landmarks_to_matrix(pts, _opts([2, 3, 4, 5], out=(16, 8), scale=(1.5, 2.0)))
    # crop x runs from landmark 0 towards landmark 1 (the box's own x axis), crop y along its y axis
    c, s = math.cos(a), math.sin(a)
    expected = np.array([[c, -s], [s, c]]) @ np.diag([1.5 * w / 16, 2.0 * h / 8])
    np.testing.assert_allclose(m[:2, :2], expected, atol=1e-5)
    np.testing.assert_allclose(m[:2, :2] @ [8.0, 4.0] + m[:2, 3], centre, atol=1e-4)  # crop centre
    along = (m[:2, :2] @ [1.0, 0.0]) / np.linalg.norm(m[:2, :2] @ [1.0, 0.0])
    np.testing.assert_allclose(along, (pts[1] - pts[0]) / np.linalg.norm(pts[1] - pts[0]), atol=1e-5)


def _affine(a: np.ndarray, t: tuple[float, float]) -> np.ndarray:
    m = np.eye(4, dtype=np.float32)
    m[:2, :2] = a
    m[:2, 3] = t
    return m


def test_transform_bilinear_identity_shift_and_half_pixel() -> None:
    rng = np.random.default_rng(2)
    feat = rng.normal(size=(6, 7, 3)).astype(np.float32)
    out = transform_bilinear(feat, np.eye(4, dtype=np.float32), 6, 7)
    assert out.dtype == np.float32 and out.shape == (6, 7, 3)
    np.testing.assert_array_equal(out, feat)  # pixel centres onto pixel centres
    shifted = transform_bilinear(feat, _affine(np.eye(2), (2.0, 1.0)), 4, 3)
    np.testing.assert_allclose(shifted, feat[1:5, 2:5], atol=1e-6)
    half = transform_bilinear(feat, _affine(np.eye(2), (0.5, 0.0)), 6, 6)
    np.testing.assert_allclose(half, (feat[:, :6] + feat[:, 1:7]) / 2, atol=1e-6)
    # out of bounds (past [0, W-1] x [0, H-1]) gives 0: the last output column lands at x = 6.5
    edge = transform_bilinear(feat, _affine(np.eye(2), (0.5, 0.0)), 6, 7)
    np.testing.assert_array_equal(edge[:, 6], 0)
    np.testing.assert_allclose(edge[:, :6], half, atol=1e-6)
    assert not transform_bilinear(feat, _affine(np.eye(2), (-20.0, 3.0)), 4, 4).any()


def test_transform_bilinear_rotation_and_linear_ramp() -> None:
    feat = np.arange(5 * 5 * 2, dtype=np.float32).reshape(5, 5, 2)
    # a quarter turn: out[y, x] = feat[x, 4 - y] (p_in = M (p_out + 0.5) - 0.5)
    quarter = _affine(np.array([[0.0, -1.0], [1.0, 0.0]]), (5.0, 0.0))
    out = transform_bilinear(feat, quarter, 5, 5)
    ys, xs = np.mgrid[0:5, 0:5]
    np.testing.assert_array_equal(out, feat[xs, 4 - ys])
    # bilinear sampling of a linear ramp is exact: the output is the sampled position itself
    ramp = np.stack(np.meshgrid(np.arange(48.0), np.arange(48.0), indexing="xy"), axis=-1).astype(np.float32)
    m = landmarks_to_matrix(
        _box_landmarks((20.0, 24.0), (10.0, 7.0), 0.4), _opts([2, 3, 4, 5], scale=(1.5, 1.5))
    )
    got = transform_bilinear(ramp, m, 16, 16)
    yo, xo = np.mgrid[0:16, 0:16].astype(np.float64) + 0.5
    want = np.stack([m[0, 0] * xo + m[0, 1] * yo + m[0, 3], m[1, 0] * xo + m[1, 1] * yo + m[1, 3]], -1) - 0.5
    np.testing.assert_allclose(got, want, atol=1e-3)


# -- the face pipeline --------------------------------------------------------------------------


def _variant_image(name: str, portrait: np.ndarray) -> np.ndarray:
    if name == "default_portrait":
        return portrait
    return generated_images(portrait)[name.removeprefix("portrait_")]


def test_shipped_face_models() -> None:
    """The attention mesh replaced step 1's 468-point mesh + iris models; the assets stay small."""
    names = {p.relative_to(ASSETS_DIR).as_posix() for p in ASSETS_DIR.rglob("*.onnx")}
    assert {"face_detector.onnx", "attention/backbone.onnx", "attention/heads.onnx"} <= names
    assert not names & {"face_landmarks.onnx", "iris.onnx"}
    assert sum(p.stat().st_size for p in ASSETS_DIR.rglob("*") if p.is_file()) < 25_000_000


@pytest.mark.parametrize("name", VARIANTS)
def test_parity_with_mediapipe_references(
    name: str, portrait: np.ndarray, landmarker: FaceLandmarker
) -> None:
    """Ours vs FaceMesh(refine_landmarks=True): 2D distance in % of the 33-263 distance."""
    ref = np.load(REF_DIR / f"face_{name}.npz")
    faces = landmarker.process(_variant_image(name, portrait))
    assert len(faces) == 1
    ours = faces[0]
    assert ours.shape == (478, 3) and ours.dtype == np.float64
    reference = ref["refined"][0].astype(np.float64)
    iod = np.linalg.norm(reference[33] - reference[263])
    err = np.linalg.norm(ours[:, :2] - reference, axis=1) / iod * 100
    topo = face_topology()
    regions = {
        "all 478": np.arange(478),
        "lips": np.r_[topo.lips_outer, topo.lips_inner],
        "eyes": np.r_[topo.left_eye, topo.right_eye],
        "irises": np.arange(468, 478),
    }
    # in practice <= 0.02 % / 0.035 %: the references' rounding to 1/64 px is most of it
    for region, idx in regions.items():
        assert np.median(err[idx]) <= 0.05, region
        assert np.percentile(err[idx], 95) <= 0.2, region
    # z as mediapipe: normalised z times the image width; the irises' z included (in practice <= 0.03 %)
    np.testing.assert_allclose(ours[:, 2], ref["refined_z"][0], atol=float(0.002 * iod))


def test_478_point_layout(portrait: np.ndarray, landmarker: FaceLandmarker) -> None:
    (face,) = landmarker.process(portrait)
    topo = face_topology()
    eyes = (
        (468, topo.right_iris, topo.right_eye, (33, 133)),
        (473, topo.left_iris, topo.left_eye, (362, 263)),
    )
    for k, (centre, ring, eye, corners) in enumerate(eyes):
        # the iris centre inside the eye's lid contour, its ring around it
        contour = face[eye, :2].astype(np.float32)
        assert cv2.pointPolygonTest(contour, tuple(float(v) for v in face[centre, :2]), False) > 0
        width = np.linalg.norm(face[corners[0], :2] - face[corners[1], :2])
        assert np.linalg.norm(face[ring, :2].mean(axis=0) - face[centre, :2]) < 0.2 * width
        # FaceMesh(refine_landmarks=True)'s rim order: image-right, top, image-left, bottom
        c, right, top, left, bottom = face[centre : centre + 5, :2]
        assert right[0] > c[0] > left[0] and top[1] < c[1] < bottom[1]
        # the centre near the midpoint of its own eye's corners (not the other eye's)
        mid = face[list(corners), :2].mean(axis=0)
        other = face[[362, 263] if k == 0 else [33, 133], :2].mean(axis=0)
        assert np.linalg.norm(face[centre, :2] - mid) < 0.3 * width < np.linalg.norm(face[centre, :2] - other)
        # iris z: the mean z of the eye's 16 eyelid points (LandmarksRefinementCalculator)
        lids = EYE_CONTOUR_INDICES[k, :16]
        assert set(lids.tolist()) == set(eye.tolist())
        np.testing.assert_allclose(face[centre : centre + 5, 2], face[lids, 2].mean(), atol=1e-9)
    assert face[468, 0] < face[473, 0]  # the person's right eye is on the image's left


def test_no_face_in_blank_or_noise(landmarker: FaceLandmarker) -> None:
    assert landmarker.process(np.zeros((240, 320, 3), np.uint8)) == []
    noise = np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert landmarker.process(noise) == []


def test_tracking_follows_a_shifted_portrait(portrait: np.ndarray) -> None:
    h, w = portrait.shape[:2]
    canvas = np.full((h + 60, w + 60, 3), 128, np.uint8)
    shifts = [(0, 0), (6, 3), (12, 6), (18, 9), (24, 12)]
    with FaceLandmarker(static=False) as fl:
        calls = 0
        detect = fl.detect

        def counting(img: np.ndarray) -> list[Detection]:
            nonlocal calls
            calls += 1
            return detect(img)

        fl.detect = counting  # type: ignore[method-assign]
        tracks = []
        for dx, dy in shifts:
            frame = canvas.copy()
            frame[dy : dy + h, dx : dx + w] = portrait
            (face,) = fl.process(frame)
            tracks.append(face)
        assert calls == 1  # detected once, tracked afterwards
        for (dx, dy), face in zip(shifts, tracks, strict=True):
            assert face.shape == (478, 3)
            for idx in (np.arange(468), np.arange(468, 478)):  # the mesh, the irises
                moved = (face[idx, :2] - tracks[0][idx, :2]).mean(axis=0)
                assert moved == pytest.approx((dx, dy), abs=1.0)
        fl.reset()
        fl.process(canvas)
        assert calls == 2


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((64, 64, 3), np.float32), "uint8"),
        (np.zeros((64, 64), np.uint8), "shape"),
        (np.zeros((64, 64, 4), np.uint8), "shape"),
        (np.zeros((0, 64, 3), np.uint8), "empty"),
        ([[0, 0, 0]], "numpy array"),
    ],
)
def test_bad_input_raises_value_error(image: object, match: str, landmarker: FaceLandmarker) -> None:
    with pytest.raises(ValueError, match=match):
        landmarker.process(image)  # type: ignore[arg-type]


def test_close_is_idempotent_and_final() -> None:
    fl = FaceLandmarker()
    fl.close()
    fl.close()
    with pytest.raises(RuntimeError, match="closed"):
        fl.process(np.zeros((32, 32, 3), np.uint8))
