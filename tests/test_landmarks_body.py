"""Pose and hand landmarks without mediapipe (``landmarks.body``) against mediapipe's own outputs.

The references (``tests/data/fit_reference/body_*.npz``) were recorded with mediapipe 0.10.21 by
``benchmarks/fit_reference_body.py``: the shipped portrait, its generated variants, the numbers
of one frame with a hand (the frame itself stays in the shared data) and mediapipe's hand ROI of
every palm it found. No photo the project ships shows a hand, so the hand landmarks are compared
only when the shared data is there.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from media import SHARED_DATA

from vlogger.engines.avatar.landmarks.body import (
    HandLandmarker,
    PoseLandmarker,
    associate_rects,
    hand_roi,
    pose_roi,
    refine_from_heatmap,
)
from vlogger.engines.avatar.landmarks.detection import Detection
from vlogger.engines.avatar.landmarks.roi import RotatedRect

ROOT = Path(__file__).resolve().parents[1]
REF = Path(__file__).resolve().parent / "data" / "fit_reference"
PORTRAIT = ROOT / "engines" / "avatar" / "assets" / "default_portrait.png"
HAND_CLIP = SHARED_DATA / "video" / "silent_fullbody_f5.mp4"


@pytest.fixture(scope="module")
def pose() -> PoseLandmarker:
    return PoseLandmarker(min_detection_confidence=0.5, threads=1)


@pytest.fixture(scope="module")
def hands() -> HandLandmarker:
    return HandLandmarker(max_hands=2, min_detection_confidence=0.5, threads=1)


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    bgr = cv2.imread(str(PORTRAIT), cv2.IMREAD_COLOR)
    assert bgr is not None, PORTRAIT
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _ref(name: str) -> dict[str, Any]:
    with np.load(REF / f"body_{name}.npz") as z:
        return {k: z[k] for k in z.files}


def _assert_pose_close(res: tuple[np.ndarray, np.ndarray] | None, ref: dict[str, Any]) -> None:
    assert bool(ref["pose_found"]) and res is not None
    xy, vis = res
    assert xy.shape == (33, 2) and vis.shape == (33,)
    mp_xy = ref["pose_xy"].astype(np.float64)
    shoulder = float(np.linalg.norm(mp_xy[11] - mp_xy[12]))
    err = np.linalg.norm(xy - mp_xy, axis=1) / shoulder
    assert np.median(err) < 0.002, f"median error {np.median(err):.2%} of the shoulder width"
    assert err.max() < 0.03, f"landmark {err.argmax()} off by {err.max():.2%} of the shoulder width"
    assert np.array_equal(vis >= 0.5, ref["pose_vis"] >= 0.5)
    assert np.abs(vis - ref["pose_vis"]).max() < 0.01


def test_pose_on_the_shipped_portrait_matches_mediapipe(pose: PoseLandmarker, portrait: np.ndarray) -> None:
    res = pose.process(portrait)
    _assert_pose_close(res, _ref("default_portrait"))
    assert res is not None
    xy, vis = res
    assert vis[11] > 0.9 and vis[12] > 0.9  # both shoulders visible
    h, w = portrait.shape[:2]
    assert (0 <= xy[[11, 12], 0]).all() and (xy[[11, 12], 0] < w).all() and (xy[[11, 12], 1] < h).all()
    assert xy[11, 0] > xy[12, 0]  # the person's left shoulder is on the image's right


@pytest.mark.parametrize("variant", ["rot20", "small", "flip"])
def test_pose_on_generated_variants_matches_mediapipe(
    pose: PoseLandmarker, portrait: np.ndarray, variant: str
) -> None:
    from benchmarks.fit_reference import generated_images

    img = generated_images(portrait)[variant]
    _assert_pose_close(pose.process(img), _ref(f"generated_{variant}"))


def test_nothing_on_blank_images(pose: PoseLandmarker, hands: HandLandmarker) -> None:
    for img in (np.zeros((240, 320, 3), np.uint8), np.full((300, 200, 3), 128, np.uint8)):
        assert pose.process(img) is None
        assert hands.process(img) == []


def test_no_hand_in_the_shipped_portrait(hands: HandLandmarker, portrait: np.ndarray) -> None:
    ref = _ref("default_portrait")
    assert len(ref["hand_xy"]) == 0 and len(ref["palm_score"]) == 0  # mediapipe finds none either
    assert hands.rois(portrait) == []
    assert hands.process(portrait) == []


@pytest.mark.skipif(not HAND_CLIP.exists(), reason=f"shared data not found ({HAND_CLIP})")
def test_hand_frame_matches_mediapipe(hands: HandLandmarker, pose: PoseLandmarker) -> None:
    import av

    ref = _ref("video_silent_fullbody_f5_f275")
    with av.open(str(HAND_CLIP)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i == int(ref["frame"]):
                img = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
                break
    assert img.shape == tuple(ref["image_shape"])
    found = hands.detect(img)
    assert len(found) == len(ref["hand_xy"]) == 1
    mp_xy = ref["hand_xy"][0].astype(np.float64)
    size = float(np.linalg.norm(mp_xy.max(axis=0) - mp_xy.min(axis=0)))
    err = np.linalg.norm(found[0].xy - mp_xy, axis=1) / size
    assert err.max() < 0.005, f"hand landmark off by {err.max():.2%} of the hand size"
    assert found[0].label == str(ref["hand_label"][0])
    assert found[0].handedness == pytest.approx(float(ref["hand_score"][0]), abs=1e-3)
    assert hands.process(img)[0][1] == found[0].label
    _assert_pose_close(pose.process(img), ref)


# -- the ROI math ---------------------------------------------------------------------------------


def _rect(r: RotatedRect) -> np.ndarray:
    return np.array([r.x_center, r.y_center, r.width, r.height, r.rotation])


def test_pose_roi_of_a_hand_made_detection() -> None:
    # 200x100 image: hip centre at (100, 80) px, size/rotation point 40 px straight above it
    kp = np.array([[0.5, 0.8], [0.5, 0.4], [0.0, 0.0], [0.0, 0.0]])
    roi = pose_roi(Detection(0.4, 0.3, 0.2, 0.2, kp, 0.9), (200, 100))
    # side 2 * 40 px, x 1.25 -> 100 px: 0.5 of the width, 1.0 of the height; upright
    np.testing.assert_allclose(_rect(roi), [0.5, 0.8, 0.5, 1.0, 0.0], atol=1e-12)
    # the same point 40 px to the right instead: the body lies along +x, rotated 90 degrees clockwise
    kp[1] = [0.7, 0.8]
    roi = pose_roi(Detection(0.4, 0.3, 0.2, 0.2, kp, 0.9), (200, 100))
    np.testing.assert_allclose(_rect(roi), [0.5, 0.8, 0.5, 1.0, math.pi / 2], atol=1e-12)
    # 20 px left and 20 px down: -135 degrees, side 2 * sqrt(2) * 20 px * 1.25
    kp[1] = [0.4, 1.0]
    roi = pose_roi(Detection(0.4, 0.3, 0.2, 0.2, kp, 0.9), (200, 100))
    side = 2 * math.hypot(20, 20) * 1.25
    np.testing.assert_allclose(_rect(roi), [0.5, 0.8, side / 200, side / 100, -3 * math.pi / 4], atol=1e-12)


def test_hand_roi_of_a_hand_made_palm() -> None:
    # 100x100 image, palm box 20x20 px at (40, 40); wrist below the middle finger: upright
    kp = np.zeros((7, 2))
    kp[0], kp[2] = [0.5, 0.6], [0.5, 0.4]
    roi = hand_roi(Detection(0.4, 0.4, 0.2, 0.2, kp, 0.9), (100, 100))
    # shifted half a box towards the fingers (up), squared, x 2.6
    np.testing.assert_allclose(_rect(roi), [0.5, 0.4, 0.52, 0.52, 0.0], atol=1e-12)
    # fingers pointing right in a 200x100 image: the shift goes right, the rect is square in pixels
    kp[0], kp[2] = [0.4, 0.5], [0.6, 0.5]
    roi = hand_roi(Detection(0.45, 0.4, 0.1, 0.2, kp, 0.9), (200, 100))
    np.testing.assert_allclose(_rect(roi), [0.55, 0.5, 0.26, 0.52, math.pi / 2], atol=1e-12)


def test_pose_rois_match_mediapipe_on_its_detections() -> None:
    for name in ("default_portrait", "generated_rot20", "generated_small", "generated_flip"):
        ref = _ref(name)
        h, w = (int(v) for v in ref["image_shape"][:2])
        det = Detection(
            0.0, 0.0, 0.1, 0.1, ref["pose_det_kp"].astype(np.float64), float(ref["pose_det_score"])
        )
        np.testing.assert_allclose(_rect(pose_roi(det, (w, h))), ref["pose_roi"], atol=2e-6, err_msg=name)


def test_hand_rois_match_mediapipe_on_its_palms() -> None:
    with np.load(REF / "body_palm_rois.npz") as z:
        boxes, kps, rois, sizes = (z[k].astype(np.float64) for k in ("box", "kp", "roi", "size"))
    assert len(boxes) >= 10
    for box, kp, roi, size in zip(boxes, kps, rois, sizes, strict=True):
        det = Detection(box[0], box[1], box[2], box[3], kp, 0.9)
        ours = _rect(hand_roi(det, (int(size[0]), int(size[1]))))
        np.testing.assert_allclose(ours, roi, atol=2e-6)


def test_associate_rects_keeps_the_later_of_overlapping_ones() -> None:
    a = RotatedRect(0.3, 0.3, 0.2, 0.2)
    b = RotatedRect(0.31, 0.3, 0.2, 0.2, rotation=1.0)  # rotation is ignored
    c = RotatedRect(0.7, 0.7, 0.2, 0.2)
    assert associate_rects([a, b, c]) == [b, c]
    assert associate_rects([a, c]) == [a, c]
    assert associate_rects([]) == []


def test_refine_from_heatmap() -> None:
    hm = np.full((64, 64, 3), -20.0, np.float32)
    hm[30, 20, 0] = hm[30, 22, 0] = 5.0  # landmark 0: two confident cells -> their mean
    hm[10, 10, 1] = 0.0  # landmark 1: peak sigmoid 0.5 -> moves to the (weighted) window mean
    xy = np.array([[21.3 / 64, 29.6 / 64], [10.5 / 64, 10.5 / 64], [1.5, 0.5]])
    out = refine_from_heatmap(xy, hm)
    np.testing.assert_allclose(out[0] * 64, [21.0, 30.0], atol=1e-3)
    assert abs(out[1, 0] * 64 - 10.0) < 0.1 and abs(out[1, 1] * 64 - 10.0) < 0.1
    np.testing.assert_array_equal(out[2], xy[2])  # outside the heatmap: kept
    hm[:, :, 0] = -20.0  # nothing confident: kept
    np.testing.assert_array_equal(refine_from_heatmap(xy[:1], hm[:, :, :1]), xy[:1])


def test_bad_input_is_a_value_error(pose: PoseLandmarker, hands: HandLandmarker) -> None:
    with pytest.raises(ValueError, match="dtype"):
        pose.process(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        pose.process(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        hands.process(np.zeros((64, 64, 4), np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        hands.process(np.zeros((64, 64, 3), np.int64))
    with pytest.raises(ValueError, match="max_hands"):
        HandLandmarker(max_hands=0)


def test_close_is_idempotent() -> None:
    with PoseLandmarker() as p:
        pass
    p.close()
    with pytest.raises(RuntimeError, match="closed"):
        p.process(np.zeros((32, 32, 3), np.uint8))
    h = HandLandmarker()
    h.close()
    h.close()
    with pytest.raises(RuntimeError, match="closed"):
        h.process(np.zeros((32, 32, 3), np.uint8))
