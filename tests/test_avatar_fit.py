"""Fitting photos, the fit cache and load_avatar (engines/avatar/fit.py, fitcache.py, __init__.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from vlogger.engines.avatar import DEFAULT_PORTRAIT, Avatar, AvatarConfig, Fitter, load_avatar
from vlogger.engines.avatar.debug import debug_view
from vlogger.engines.avatar.fit import FitConfig
from vlogger.engines.avatar.image import load_image
from vlogger.engines.errors import InputError
from vlogger.engines.metrics import eye_openness, mouth_opening
from vlogger.engines.types import MotionFrame

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def fitter() -> Iterator[Fitter]:
    with Fitter() as f:
        yield f


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return load_image(DEFAULT_PORTRAIT)


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VLOGGER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_default_portrait_fit(fitter: Fitter, portrait: np.ndarray) -> None:
    fit = fitter.fit(portrait, "h")  # its time is a benchmark figure (benchmarks/render_cpu.py)
    face = fit.face
    assert face.shape == (478, 3) and np.isfinite(face).all()
    # the face sits in the upper middle of the picture, about 60 px between the outer eye corners
    nose = face[1, :2]
    assert 200 < nose[0] < 250 and 105 < nose[1] < 155
    assert 45 < np.linalg.norm(face[263, :2] - face[33, :2]) < 80
    assert face[263, 0] > face[33, 0]  # person's left eye corner is on the image's right
    assert face[152, 1] > face[14, 1] > face[13, 1] > face[1, 1] > face[10, 1]  # forehead -> chin
    # irises inside their eyes
    assert face[33, 0] < face[468, 0] < face[133, 0] and face[362, 0] < face[473, 0] < face[263, 0]
    # head roughly frontal and upright: rotation near identity, a proper rotation
    r = fit.head_rotation.astype(np.float64)
    assert np.allclose(r @ r.T, np.eye(3), atol=1e-5) and np.linalg.det(r) > 0.99
    assert np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))) < 25
    assert fit.head_center[2] > fit.camera.focal  # the pivot lies behind the face
    assert fit.camera.cx == 256 and fit.camera.cy == 256 and 500 < fit.camera.focal < 1000
    # 33 pose points: shoulders found, below the chin and either side of it
    assert fit.body.shape == (75, 2) and np.isfinite(fit.body).all()
    assert fit.body_visible[[0, 11, 12]].all()
    left_sh, right_sh = fit.body[11], fit.body[12]
    assert left_sh[1] > face[152, 1] and right_sh[1] > face[152, 1]
    assert left_sh[0] > nose[0] > right_sh[0]  # person's left shoulder on the image right
    # no hands in this photo: invisible, resting at the wrists
    assert not fit.body_visible[33:].any()
    assert np.allclose(fit.body[33:54], fit.body[15]) and np.allclose(fit.body[54:75], fit.body[16])
    assert fit.image_hash == "h"


def test_no_face_raises(fitter: Fitter) -> None:
    gradient = np.tile(np.linspace(0, 255, 400).astype(np.uint8)[None, :, None], (300, 1, 3))
    with pytest.raises(InputError, match="no face found in the photo"):
        fitter.fit(gradient)
    with pytest.raises(InputError, match="no face found in the photo"):
        fitter.fit(np.full((1, 1, 3), 128, np.uint8))


def test_small_photo_is_upscaled_for_detection(fitter: Fitter, portrait: np.ndarray) -> None:
    small = cv2.resize(portrait, (128, 128), interpolation=cv2.INTER_AREA)
    fit = fitter.fit(small)
    big = fitter.fit(portrait)
    # same landmarks, in the small photo's pixels (within 2 px of the big photo's at 1/4 scale)
    assert np.abs(fit.face[:468, :2] * 4 - big.face[:468, :2]).mean() < 2.0


def test_largest_of_several_faces_is_taken(fitter: Fitter, portrait: np.ndarray) -> None:
    canvas = np.full((512, 768, 3), 200, np.uint8)
    canvas[:, 256:] = portrait  # large face on the right
    canvas[128:384, :256] = cv2.resize(portrait, (256, 256), interpolation=cv2.INTER_AREA)
    fit = fitter.fit(canvas)
    assert fit.face[1, 0] > 400  # the big face's nose, not the small one's (~110)
    # two faces the short-range detector both sees (the one above is too small for it, as for
    # mediapipe): the count reaches the user (render warnings, the server's avatar reply)
    face = portrait[90:390, 130:430]
    pair = np.full((300, 600, 3), 200, np.uint8)
    pair[:, 300:] = face
    pair[10:290, 10:290] = cv2.resize(face, (280, 280), interpolation=cv2.INTER_AREA)
    two = fitter.fit(pair)
    assert two.faces == 2 and two.face[1, 0] > 300  # the right, larger one
    assert fitter.fit(portrait).faces == 1


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (cv2.ROTATE_90_COUNTERCLOCKWISE, "90 degrees clockwise"),
        (cv2.ROTATE_90_CLOCKWISE, "90 degrees counter-clockwise"),
    ],
)
def test_sideways_photo_says_to_turn_it(fitter: Fitter, portrait: np.ndarray, code: int, advice: str) -> None:
    # the landmarks follow a face lying on its side, but the rig and renderer animate upright
    # heads: the photo is refused with the turn that makes it upright. (Upside down, the detector
    # finds no face or, like mediapipe's FaceMesh, a false one.)
    with pytest.raises(InputError, match=advice):
        fitter.fit(np.ascontiguousarray(cv2.rotate(portrait, code)))


def test_huge_and_border_cut_faces_fit(fitter: Fitter, portrait: np.ndarray) -> None:
    ref = fitter.fit(portrait)
    # a close-up: the face fills the frame (the portrait's face region scaled up 2x)
    x0, y0 = 130, 90
    crop = np.ascontiguousarray(cv2.resize(portrait[y0 : y0 + 300, x0 : x0 + 300], (600, 600)))
    close = fitter.fit(crop)
    expect = (ref.face[:468, :2] - [x0, y0]) * 2.0
    iod = float(np.linalg.norm(expect[263] - expect[33]))
    assert np.median(np.linalg.norm(close.face[:468, :2] - expect, axis=1)) < 0.05 * iod
    # the photo's right border cuts through the face: still found, landmarks run off the picture
    cut = np.ascontiguousarray(portrait[:, :300])
    part = fitter.fit(cut)
    assert np.median(np.linalg.norm(part.face[:468, :2] - ref.face[:468, :2], axis=1)) < 0.08 * iod / 2


def test_rgba_and_grayscale_photos_fit(tmp_path: Path, fitter: Fitter, portrait: np.ndarray) -> None:
    rgba = np.dstack([portrait, np.full(portrait.shape[:2], 255, np.uint8)])
    _ok, buf = cv2.imencode(".png", rgba[:, :, [2, 1, 0, 3]])
    assert fitter.fit(load_image(buf.tobytes())).face.shape == (478, 3)
    gray = cv2.cvtColor(portrait, cv2.COLOR_RGB2GRAY)
    _ok, buf = cv2.imencode(".png", gray)
    fit = fitter.fit(load_image(buf.tobytes()))
    assert 200 < fit.face[1, 0] < 250


def test_load_avatar_caches_the_fit(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t0 = time.perf_counter()
    first = load_avatar()
    cold = time.perf_counter() - t0
    assert isinstance(first, Avatar) and not first.from_cache
    assert first.image.shape == (512, 512, 3)
    files = list((cache_dir / "fits").glob("*.npz"))
    assert len(files) == 1

    # a cache hit must not run the fitter at all
    def boom(*a: object, **k: object) -> None:
        raise AssertionError("the fitter ran on a cache hit")

    monkeypatch.setattr(Fitter, "__init__", boom)
    t0 = time.perf_counter()
    second = load_avatar(DEFAULT_PORTRAIT)
    warm = time.perf_counter() - t0
    assert second.from_cache
    assert warm < cold and warm < 0.5
    for name in ("face", "body", "body_visible", "head_rotation", "head_center"):
        assert np.array_equal(getattr(first.fit, name), getattr(second.fit, name)), name
    assert second.fit.camera == first.fit.camera and second.fit.image_hash == first.fit.image_hash
    # another working size or fit setting is another cache entry (and would need the fitter)
    with pytest.raises(AssertionError, match="the fitter ran"):
        load_avatar(height=256)
    with pytest.raises(AssertionError, match="the fitter ran"):
        load_avatar(config=AvatarConfig(fit=FitConfig(fov_deg=30.0)))
    # a corrupt cache file is a miss, not an error
    files[0].write_bytes(b"garbage")
    with pytest.raises(AssertionError, match="the fitter ran"):
        load_avatar()


def test_load_avatar_sizes_and_errors(cache_dir: Path, tmp_path: Path, portrait: np.ndarray) -> None:
    before = set((cache_dir / "fits").glob("*.npz")) if (cache_dir / "fits").exists() else set()
    wide = np.full((400, 700, 3), 180, np.uint8)
    wide[:, 94:606] = cv2.resize(portrait, (512, 400))
    av = load_avatar(wide, height=256, cache=False)
    assert av.image.shape == (256, 448, 3) and av.width % 2 == 0
    assert av.fit.camera.cx == 224 and av.fit.camera.cy == 128
    # the rig sits on the fitted landmarks; at rest the (smiling, open) mouth is closed
    assert np.abs(av.rig.photo_face - av.fit.face[:, :2]).max() < 1e-3
    assert np.abs(av.neutral().face - av.rig.rest_face).max() < 1e-3
    assert mouth_opening(av.fit.face) > 0.08 and mouth_opening(av.neutral().face) < 0.01
    fake = tmp_path / "holiday.png"
    fake.write_text("not really a picture")
    with pytest.raises(InputError, match=r"holiday\.png"):
        load_avatar(fake)
    with pytest.raises(InputError, match=r"not found.*missing\.jpg"):
        load_avatar(tmp_path / "missing.jpg")
    grad = tmp_path / "gradient.png"
    cv2.imwrite(str(grad), np.tile(np.arange(256, dtype=np.uint8), (256, 1)))
    with pytest.raises(InputError, match=r"no face found.*gradient\.png"):
        load_avatar(grad)
    with pytest.raises(InputError, match="aspect ratio"):
        load_avatar(np.zeros((10, 100, 3), np.uint8))
    after = set((cache_dir / "fits").glob("*.npz")) if (cache_dir / "fits").exists() else set()
    assert after == before  # cache=False wrote nothing


def test_debug_view_draws_over_the_photo(cache_dir: Path) -> None:
    av = load_avatar()
    view = debug_view(av, scale=1.0)
    assert view.shape == av.image.shape and view.dtype == np.uint8
    face = av.fit.face[:, :2]
    x0, y0 = face.min(axis=0).astype(int)
    x1, y1 = face.max(axis=0).astype(int)
    changed = np.abs(view.astype(int) - av.image.astype(int)).sum(axis=2) > 60
    assert changed[y0:y1, x0:x1].mean() > 0.3  # the mesh covers the face
    big = debug_view(av, av.rig.pose(MotionFrame.neutral()), scale=2.0)
    assert big.shape == (1024, 1024, 3)


@pytest.mark.parametrize(
    "clip", ["interview_m1", "bank_f3", "eu_f4", "silent_fullbody_f5", "silent_halfbody_m6"]
)
def test_real_clip_frames_fit(fitter: Fitter, clip: str) -> None:
    path = DATA / "video" / f"{clip}.mp4"
    if not path.exists():
        pytest.skip(f"shared data not present ({path})")
    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read()
    cap.release()
    assert ok
    fit = fitter.fit(np.ascontiguousarray(frame[:, :, ::-1]))
    assert 0.0 <= mouth_opening(fit.face) < 0.6
    left, right = eye_openness(fit.face)
    assert 0.05 < left < 0.6 and 0.05 < right < 0.6  # eyes open in the first frames
    assert fit.body_visible[[11, 12]].any()


def test_head_roll_is_measured(fitter: Fitter, portrait: np.ndarray) -> None:
    def roll(img: np.ndarray) -> float:
        r = fitter.fit(img).head_rotation
        return float(np.degrees(np.arctan2(r[1, 0], r[0, 0])))

    turned = cv2.warpAffine(portrait, cv2.getRotationMatrix2D((256, 256), 30, 1.0), (512, 512))
    # rotating the photo 30 degrees counter-clockwise on screen tilts the eye axis up to the right
    assert roll(turned) - roll(portrait) == pytest.approx(-30.0, abs=5.0)


def test_body_template_when_no_body_is_found(
    fitter: Fitter, portrait: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fitter, "_pose_points", lambda img: None)
    fit = fitter.fit(portrait)
    assert np.isfinite(fit.body).all()
    assert fit.body_visible[:11].all() and not fit.body_visible[11:].any()
    chin = fit.face[152, :2]
    assert fit.body[11, 1] > chin[1] and fit.body[12, 1] > chin[1]
    assert fit.body[11, 0] > chin[0] > fit.body[12, 0]
    assert np.allclose(fit.body[0], fit.face[1, :2])  # pose nose = mesh nose tip
