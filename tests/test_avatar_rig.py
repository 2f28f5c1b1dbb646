"""The expression rig and posing (engines/avatar/rig.py, basis.py, metrics.py) on the default portrait."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vlogger.engines.avatar import DEFAULT_PORTRAIT, Fitter, Rig
from vlogger.engines.avatar.image import load_image
from vlogger.engines.avatar.rig import RigConfig, rotation_from_6d, rotation_to_6d
from vlogger.engines.avatar.topology import face_topology
from vlogger.engines.avatar.types import AvatarFit
from vlogger.engines.metrics import eye_openness, face_width, mouth_opening
from vlogger.engines.types import EXPRESSION_NAMES, MotionFrame

IRIS = set(range(468, 478))


@pytest.fixture(scope="module")
def fit() -> Iterator[AvatarFit]:
    with Fitter() as f:
        yield f.fit(load_image(DEFAULT_PORTRAIT))


@pytest.fixture(scope="module")
def rig(fit: AvatarFit) -> Rig:
    """The default rig: the portrait (smiling, lips apart) rests with closed lips."""
    return Rig(fit)


@pytest.fixture(scope="module")
def photo_rig(fit: AvatarFit) -> Rig:
    """The rig whose rest is the photo's own face (its mouth open): fields on the photo's geometry."""
    return Rig(fit, RigConfig(closed_rest=False))


def frame(**coefs: float) -> MotionFrame:
    f = MotionFrame.neutral()
    for name, v in coefs.items():
        f.expression[EXPRESSION_NAMES.index(name)] = v
    return f


def moved(rig: Rig, f: MotionFrame) -> np.ndarray:
    rest = rig.pose(MotionFrame.neutral()).face
    return np.flatnonzero(np.any(rig.pose(f).face != rest, axis=1))


def test_neutral_frame_gives_the_fitted_landmarks(rig: Rig, photo_rig: Rig, fit: AvatarFit) -> None:
    # with the photo as the rest, a neutral frame gives back the fitted landmarks
    posed = photo_rig.pose(MotionFrame.neutral(index=7, pts=0.28))
    assert posed.index == 7 and posed.pts == 0.28
    assert posed.face.shape == (478, 2) and posed.face.dtype == np.float32
    assert np.abs(posed.face - fit.face[:, :2]).max() < 1e-3
    assert np.abs(posed.body - fit.body).max() < 1e-3
    assert np.allclose(posed.head_rotation, np.eye(3))
    assert mouth_opening(posed.face) > 0.08  # the portrait's lips are apart
    # the default rig rests with closed lips: only the mouth and jaw differ from the photo
    assert not np.any(photo_rig.rest_expression)
    assert np.any(rig.rest_expression) and np.array_equal(rig.photo_expression, fit.expression)
    assert np.abs(rig.photo_face - fit.face[:, :2]).max() < 1e-3
    rest = rig.pose(MotionFrame.neutral(index=7, pts=0.28))
    assert rest.index == 7 and rest.face.dtype == np.float32
    assert np.abs(rest.face - rig.rest_face).max() < 1e-3
    assert mouth_opening(rest.face) < 0.01
    # the body stays on the photo, but for the mouth keypoints (9, 10), which follow the lips
    body = np.r_[0:9, 11 : len(fit.body)]
    assert np.abs(rest.body[body] - fit.body[body]).max() < 1e-3
    assert np.allclose(rest.head_rotation, np.eye(3))
    changed = np.flatnonzero(np.abs(rest.face - fit.face[:, :2]).max(axis=1) > 1e-3)
    d = face_width(fit.face)
    assert changed.size > 0
    assert np.all(fit.face[changed, 1] > fit.face[[33, 263], 1].mean() + 0.2 * d)  # mouth and cheeks
    assert not set(changed.tolist()) & (IRIS | {1, 33, 263, 10})


def _region(rig: Rig) -> dict[str, set[int]]:
    """Landmarks each coefficient may move (a generous region) and must move (its core)."""
    topo = face_topology()
    y = rig.rest_face[:, 1]
    eye_y = rig.rest_face[[33, 263], 1].mean()
    nose_y = rig.rest_face[1, 1]
    d = face_width(rig.rest_face)
    nose = set(topo.nose.tolist()) | {4, 5, 195, 197, 6, 168}
    # mouth and jaw coefficients: the lower face (below the eyes), never the nose
    below_nose = {i for i in range(468) if y[i] > eye_y + 0.3 * d} - nose
    above_nose = {i for i in range(468) if y[i] < nose_y}
    left = {i for i in range(468) if rig.rest_face[i, 0] > rig.rest_face[168, 0] - 1}
    right = {i for i in range(468) if rig.rest_face[i, 0] < rig.rest_face[168, 0] + 1}
    near_eye = {i for i in range(468) if abs(y[i] - eye_y) < 0.3 * d}
    region = {n: below_nose for n in EXPRESSION_NAMES[:9]}
    cheeks = {i for i in range(468) if y[i] > eye_y + 0.2 * d} - nose  # smiles raise the cheeks
    region.update(smile_l=cheeks, smile_r=cheeks)
    region.update(
        blink_l=near_eye & left,
        blink_r=near_eye & right,
        brow_up=above_nose,
        brow_down=above_nose,
        gaze_x=IRIS,
        gaze_y=IRIS,
    )
    return {k: set(v) for k, v in region.items()} | {"_topo": set(topo.lips_inner.tolist())}


CORE = {
    "jaw_open": {14, 17, 152},
    "lip_funnel": {0, 13, 14, 17, 61, 291},
    "lip_pucker": {61, 291},
    "lip_press": {13, 14},
    "lip_stretch": {61, 291},
    "smile_l": {291},
    "smile_r": {61},
    "upper_lip_up": {0, 13},
    "lower_lip_down": {14, 17},
    "blink_l": {386, 374, 385, 380},
    "blink_r": {159, 145, 158, 153},
    "brow_up": {105, 334},
    "brow_down": {105, 334},
    "gaze_x": IRIS,
    "gaze_y": IRIS,
}
NEVER = {  # landmarks a coefficient must leave exactly where they are
    "jaw_open": {13, 0, 1, 33, 263, 10} | IRIS,
    "lower_lip_down": {13, 0, 152, 61, 291} | IRIS,
    "upper_lip_up": {14, 17, 152, 1} | IRIS,
    "smile_l": {61, 33, 263, 152} | IRIS,
    "smile_r": {291, 33, 263, 152} | IRIS,
    "blink_l": {159, 145, 33, 133} | IRIS,  # the other eye, its own corners, the irises
    "blink_r": {386, 374, 263, 362} | IRIS,
    "brow_up": {159, 386, 145, 374, 1} | IRIS,
    "brow_down": {159, 386, 145, 374, 1} | IRIS,
    "gaze_x": set(range(468)),
    "gaze_y": set(range(468)),
}


#: On a closed rest the inner lips already touch: lip press only thins the lips (0, 17 move in).
CLOSED_CORE = {"lip_press": {0, 17}}


@pytest.mark.parametrize("closed", [False, True], ids=["photo_rest", "closed_rest"])
@pytest.mark.parametrize("name", EXPRESSION_NAMES)
def test_each_coefficient_moves_only_its_own_landmarks(
    rig: Rig, photo_rig: Rig, name: str, closed: bool
) -> None:
    rig = rig if closed else photo_rig
    region = _region(rig)
    core = CLOSED_CORE.get(name, CORE[name]) if closed else CORE[name]
    values = [1.0, -1.0] if name.startswith("gaze") else [1.0, 0.5]
    for v in values:
        ids = set(moved(rig, frame(**{name: v})).tolist())
        assert core <= ids, f"{name}={v} leaves {core - ids} still"
        assert ids <= region[name], f"{name}={v} moves {sorted(ids - region[name])[:10]} outside its region"
        assert not ids & NEVER.get(name, set()), f"{name}={v} moves {sorted(ids & NEVER[name])}"
        # exactly still: the others are bit-identical to the rest pose, and the support matches
        assert ids == set(np.flatnonzero(rig.support(name)).tolist())


def test_jaw_open_opens_the_mouth_by_about_0_4_mouth_widths(rig: Rig) -> None:
    rest = rig.pose(MotionFrame.neutral()).face
    d = face_width(rest)
    mouth_w = float(np.linalg.norm(rest[291] - rest[61]))
    openings = [mouth_opening(rig.pose(frame(jaw_open=v)).face) for v in (0.0, 0.25, 0.5, 1.0)]
    assert np.all(np.diff(openings) > 0)
    gain = (openings[-1] - openings[0]) * d / mouth_w
    assert 0.35 <= gain <= 0.5
    open_face = rig.pose(frame(jaw_open=1.0)).face
    # chin drops with the lip; the jaw line (lower face oval) drops with a falloff toward the ears
    assert open_face[152, 1] - rest[152, 1] > 0.75 * (open_face[14, 1] - rest[14, 1])
    drops = [open_face[i, 1] - rest[i, 1] for i in (152, 149, 136, 58, 93)]
    assert drops[0] > drops[2] > drops[4] >= 0


def test_lip_shapes(rig: Rig, photo_rig: Rig) -> None:
    # the shapes on the photo's own (open) mouth
    rig, closed_rig = photo_rig, rig
    rest = rig.pose(MotionFrame.neutral()).face
    width = lambda f: float(np.linalg.norm(f[291] - f[61]))  # noqa: E731
    pucker = rig.pose(frame(lip_pucker=1.0)).face
    funnel = rig.pose(frame(lip_funnel=1.0)).face
    stretch = rig.pose(frame(lip_stretch=1.0)).face
    assert width(pucker) < 0.8 * width(rest)
    assert width(funnel) < width(rest) and mouth_opening(funnel) > mouth_opening(rest)
    assert width(stretch) > 1.1 * width(rest)
    # funnel and pucker protrude the lips toward the camera (-z)
    for name in ("lip_funnel", "lip_pucker"):
        disp = rig.displacement(frame(**{name: 1.0}).expression)
        assert disp[[0, 13, 14, 17], 2].max() < 0
    # lip press closes the inner lips and thins them
    press = rig.pose(frame(lip_press=1.0)).face
    assert mouth_opening(press) < 0.01 < mouth_opening(rest)
    assert np.linalg.norm(press[0] - press[17]) < np.linalg.norm(rest[0] - rest[17])
    # upper lip up raises 13 (y decreases); lower lip down lowers 14 without the chin
    up = rig.pose(frame(upper_lip_up=1.0)).face
    down = rig.pose(frame(lower_lip_down=1.0)).face
    assert up[13, 1] < rest[13, 1] - 1 and up[14, 1] == rest[14, 1]
    assert down[14, 1] > rest[14, 1] + 1 and down[152, 1] == rest[152, 1]
    # on the default (closed) rest, lip press keeps the lips closed and thins them
    rest = closed_rig.pose(MotionFrame.neutral()).face
    press = closed_rig.pose(frame(lip_press=1.0)).face
    assert mouth_opening(rest) < 0.01 and mouth_opening(press) < 0.01
    assert np.linalg.norm(press[0] - press[17]) < np.linalg.norm(rest[0] - rest[17]) - 1
    # and opening shapes open it from closed
    for name in ("lip_funnel", "upper_lip_up", "lower_lip_down"):
        assert mouth_opening(closed_rig.pose(frame(**{name: 1.0})).face) > 0.05


def test_smile_lifts_and_widens_one_corner(rig: Rig) -> None:
    rest = rig.pose(MotionFrame.neutral()).face
    left = rig.pose(frame(smile_l=1.0)).face  # person's left = image right = landmark 291
    assert left[291, 1] < rest[291, 1] - 2 and left[291, 0] > rest[291, 0] + 1
    assert np.array_equal(left[61], rest[61])
    right = rig.pose(frame(smile_r=1.0)).face
    assert right[61, 1] < rest[61, 1] - 2 and right[61, 0] < rest[61, 0] - 1
    assert np.array_equal(right[291], rest[291])


def test_blink_closes_one_eye(rig: Rig) -> None:
    rest = eye_openness(rig.pose(MotionFrame.neutral()).face)
    assert min(rest) > 0.2
    closed_l = eye_openness(rig.pose(frame(blink_l=1.0)).face)
    half_l = eye_openness(rig.pose(frame(blink_l=0.5)).face)
    assert closed_l[0] < 0.02 and closed_l[1] == rest[1]
    assert closed_l[0] < half_l[0] < rest[0]
    closed_r = eye_openness(rig.pose(frame(blink_r=1.0)).face)
    assert closed_r[1] < 0.02 and closed_r[0] == rest[0]
    # the upper lid comes down onto the lower lid (most of the way), not the lower lid up
    f = rig.pose(frame(blink_l=1.0)).face
    base = rig.pose(MotionFrame.neutral()).face
    assert f[386, 1] - base[386, 1] > 3 * (base[374, 1] - f[374, 1]) > 0


def test_brows(rig: Rig) -> None:
    rest = rig.pose(MotionFrame.neutral()).face
    up = rig.pose(frame(brow_up=1.0)).face
    down = rig.pose(frame(brow_down=1.0)).face
    brows = np.concatenate([face_topology().left_brow, face_topology().right_brow])
    assert np.all(up[brows, 1] < rest[brows, 1] - 2)
    assert np.all(down[brows, 1] > rest[brows, 1] + 1)


def test_gaze_moves_the_iris_within_the_eye(rig: Rig) -> None:
    rest = rig.pose(MotionFrame.neutral()).face
    topo = face_topology()
    for gx in (1.0, -1.0, 3.0):
        f = rig.pose(frame(gaze_x=gx)).face
        for center, ring, eye in (
            (473, topo.left_iris, topo.left_eye),
            (468, topo.right_iris, topo.right_eye),
        ):
            shift = f[center, 0] - rest[center, 0]
            assert np.sign(shift) == np.sign(gx) and abs(shift) > 1.0
            radius = np.linalg.norm(f[ring] - f[center], axis=1).mean()
            lo, hi = f[eye, 0].min(), f[eye, 0].max()
            assert lo - 0.5 <= f[center, 0] - radius and f[center, 0] + radius <= hi + 0.5
            # at the extreme the iris edge reaches the eye corner (within half a pixel)
            edge = f[center, 0] + radius if gx > 0 else f[center, 0] - radius
            assert min(abs(edge - hi), abs(edge - lo)) < 0.5
    half = rig.pose(frame(gaze_x=0.5)).face
    full = rig.pose(frame(gaze_x=1.0)).face
    assert np.allclose(half[473] - rest[473], 0.5 * (full[473] - rest[473]), atol=1e-3)
    down = rig.pose(frame(gaze_y=1.0)).face
    assert down[468, 1] > rest[468, 1] + 0.5 and down[473, 1] > rest[473, 1] + 0.5


def test_head_yaw_moves_the_nose_toward_where_the_face_turns(rig: Rig) -> None:
    rest = rig.pose(MotionFrame.neutral()).face
    turn = Rotation.from_rotvec([0.0, -0.3, 0.0]).as_matrix()  # face turns to the image right
    assert (turn @ np.array([0.0, 0.0, -1.0]))[0] > 0  # its forward (toward camera) vector points +x
    f = MotionFrame.neutral()
    f.head[:6] = rotation_to_6d(turn)
    posed = rig.pose(f)
    dx = posed.face[:, 0] - rest[:, 0]
    assert dx[1] > 5  # nose tip moves right by several pixels
    assert dx[1] > dx[234] and dx[1] > dx[454]  # more than the sides of the face (parallax)
    assert np.allclose(posed.head_rotation, turn, atol=1e-5)
    # pose keypoint 0 (nose) follows the face
    assert posed.body[0, 0] - rig.rest_body[0, 0] > 5


def test_head_translation_and_non_orthonormal_6d(rig: Rig) -> None:
    rest = rig.pose(MotionFrame.neutral()).face
    d = face_width(rest)
    f = MotionFrame.neutral()
    f.head[6] = 0.5  # half a face width to the right
    posed = rig.pose(f)
    shift = (posed.face[:, 0] - rest[:, 0]) / (0.5 * rig.face_size)
    assert abs(np.median(shift) - 1.0) < 0.03 and np.all(np.abs(shift - 1.0) < 0.1)  # perspective
    assert posed.body[11, 0] > rig.rest_body[11, 0] and posed.body[24, 0] == pytest.approx(
        rig.rest_body[24, 0]
    )
    f.head[6], f.head[8] = 0.0, 1.0  # further from the camera: smaller face
    assert face_width(rig.pose(f).face) < d
    # a scaled, skewed 6D gives the same rotation as its Gram-Schmidt orthonormalisation
    r6 = rotation_to_6d(Rotation.from_rotvec([0.1, 0.2, -0.1]).as_matrix()).astype(np.float64)
    skewed = np.concatenate([3.0 * r6[:3], 2.0 * r6[3:] + 0.7 * r6[:3]])
    assert np.allclose(rotation_from_6d(skewed), rotation_from_6d(r6), atol=1e-9)
    assert np.allclose(rotation_from_6d(np.zeros(6)), np.eye(3))


def test_body_residuals_in_image_heights(rig: Rig) -> None:
    f = MotionFrame.neutral()
    f.body[15] = (0.01, -0.02)
    posed = rig.pose(f)
    assert np.allclose(posed.body[15] - rig.rest_body[15], (5.12, -10.24), atol=1e-3)
    assert np.array_equal(posed.face, rig.pose(MotionFrame.neutral()).face)


def test_coefficients_are_clipped_and_pose_is_fast(rig: Rig) -> None:
    over = rig.pose(frame(jaw_open=3.0)).face
    assert np.array_equal(over, rig.pose(frame(jaw_open=1.0)).face)
    import time

    f = frame(jaw_open=0.4, smile_l=0.3, blink_r=0.2, gaze_x=-0.3)
    t0 = time.perf_counter()
    for _ in range(200):
        rig.pose(f)
    assert (time.perf_counter() - t0) / 200 < 0.005


def test_metrics_on_raw_landmarks(fit: AvatarFit) -> None:
    norm = fit.face / np.array([512.0, 512.0, 512.0])  # normalised mediapipe coordinates
    assert mouth_opening(norm) == pytest.approx(mouth_opening(fit.face[:, :2]), rel=1e-5)
    assert eye_openness(fit.face[:468]) == pytest.approx(eye_openness(fit.face), rel=1e-6)
    with pytest.raises(ValueError):
        mouth_opening(np.zeros((10, 2)))
