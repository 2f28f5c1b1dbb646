"""Fitting rig coefficients to landmarks (the real-clip targets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.motion.real_clips import RigFitter, avatar_fit_from_landmarks, to_pixel_landmarks
from vlogger.engines.avatar.rig import Rig, rotation_from_6d
from vlogger.engines.motion.procedural import euler_to_rotation6d
from vlogger.engines.types import EXPRESSION_NAMES

IX = EXPRESSION_NAMES.index


@pytest.fixture(scope="module")
def rig() -> Rig:
    from vlogger.engines.avatar import load_avatar

    av = load_avatar(None)
    return Rig(avatar_fit_from_landmarks(av.fit.face, av.width, av.height))


def _landmarks(rig: Rig, coef: np.ndarray, yaw: float, pitch: float, shift: tuple[float, float]):
    r = rotation_from_6d(euler_to_rotation6d(yaw, pitch, 0.0))
    p = rig._p + rig.displacement(coef)
    c = np.asarray(rig.fit.head_center, np.float64)
    t = np.array([shift[0], shift[1], 0.0]) * rig.face_size
    return to_pixel_landmarks((p - c) @ r.T + c + t, rig.fit.camera), r


def test_fit_recovers_known_coefficients_and_pose(rig):
    coef = np.zeros(len(EXPRESSION_NAMES))
    coef[IX("jaw_open")] = 0.6
    coef[IX("smile_l")] = coef[IX("smile_r")] = 0.3
    coef[IX("blink_l")] = coef[IX("blink_r")] = 1.0
    lm, r = _landmarks(rig, coef, 5.0, 0.0, (0.03, -0.02))
    expr, head, info = RigFitter(rig).fit(lm)
    np.testing.assert_allclose(expr, coef, atol=0.04)
    rf = rotation_from_6d(head[:6])
    angle = np.degrees(np.arccos(np.clip((np.trace(rf.T @ r) - 1) / 2, -1, 1)))
    assert angle < 0.2
    yaw = np.degrees(np.arctan2(rf[2, 0], rf[0, 0]))  # the convention of euler_to_rotation6d
    assert yaw == pytest.approx(5.0, abs=0.2)
    np.testing.assert_allclose(head[6:8], [0.03, -0.02], atol=0.003)
    assert info["rms"] < 0.005 < info["rms_pose_only"]


def test_fit_recovers_gaze_both_ways_and_neutral(rig):
    f = RigFitter(rig)
    for gx, gy in ((0.5, -0.4), (-0.7, 0.3)):
        coef = np.zeros(len(EXPRESSION_NAMES))
        coef[IX("gaze_x")], coef[IX("gaze_y")] = gx, gy
        coef[IX("lip_pucker")] = 0.5
        lm, _ = _landmarks(rig, coef, -3.0, 4.0, (0.0, 0.0))
        expr, _, _ = f.fit(lm)
        np.testing.assert_allclose(expr, coef, atol=0.05)
    lm, _ = _landmarks(rig, np.zeros(len(EXPRESSION_NAMES)), 0.0, 0.0, (0.0, 0.0))
    expr, head, _ = f.fit(lm)
    assert np.abs(expr).max() < 0.01
    np.testing.assert_allclose(head, [1, 0, 0, 0, 1, 0, 0, 0, 0], atol=1e-4)


DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.slow
def test_real_clip_fit_follows_the_real_mouth():
    clip = DATA / "video" / "eu_f4.mp4"
    if not clip.exists():
        pytest.skip(f"real clips not available at {clip.parent}")
    pytest.importorskip(
        "mediapipe", reason="the real clips' targets come from mediapipe (the [reference] extra's side env)"
    )
    from training.motion.real_clips import ClipConfig, fit_clip

    item, report, _ = fit_clip(clip, ClipConfig())
    assert item is not None and item.n_frames == report["frames"]
    assert item.audio16k.shape[0] == item.n_frames * 640
    assert report["mouth_opening_r_fit_vs_real"] > 0.8
    assert report["fit_rms_face_widths"]["rms"] < report["fit_rms_face_widths"]["rms_pose_only"]
    assert np.all(item.target_mask[24:] == 0) and np.all(item.target_mask[:24] == 1)
