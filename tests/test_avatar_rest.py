"""The photo's own mouth expression and the closed rest (engines/avatar/rest.py, rig.py, fitcache.py).

Real inference throughout: mediapipe's fitter, the rig and the warp renderer. Note: the shipped
default portrait smiles with her lips apart (mouth opening 0.11), so it is an open photo here; closed
photos are the rig's own closed rest and (when the shared data is present) real clip frames.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vlogger.engines.avatar import (
    DEFAULT_PORTRAIT,
    Avatar,
    AvatarConfig,
    Fitter,
    Rig,
    RigConfig,
    load_avatar,
)
from vlogger.engines.avatar.basis import BasisConfig
from vlogger.engines.avatar.fit import FitConfig
from vlogger.engines.avatar.fitcache import fit_cache_key, fit_cache_path, load_cached_fit, save_fit
from vlogger.engines.avatar.image import load_image
from vlogger.engines.avatar.rest import (
    LOWER_INNER_LIP,
    MOUTH_CHANNELS,
    UPPER_INNER_LIP,
    estimate_mouth_expression,
    lip_seal,
)
from vlogger.engines.avatar.rig import photo_expression
from vlogger.engines.avatar.topology import face_topology
from vlogger.engines.avatar.types import AvatarFit
from vlogger.engines.metrics import face_width, mouth_opening
from vlogger.engines.render.warp import WarpRenderer
from vlogger.engines.types import EXPRESSION_NAMES, MotionFrame

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "real"
LANDMARKS = ROOT / "training" / "data" / "real"
JAW = EXPRESSION_NAMES.index("jaw_open")
MOUTH = len(MOUTH_CHANNELS)


def frame(**coefs: float) -> MotionFrame:
    f = MotionFrame.neutral()
    for name, v in coefs.items():
        f.expression[EXPRESSION_NAMES.index(name)] = v
    return f


def pixel_fit(rig: Rig, like: AvatarFit) -> AvatarFit:
    """A fit whose landmarks are the rig's rest (pixels + relative depth), else as ``like``."""
    p = rig.rest_points
    cam = like.camera
    face = np.stack(
        [cam.focal * p[:, 0] / p[:, 2] + cam.cx, cam.focal * p[:, 1] / p[:, 2] + cam.cy, p[:, 2] - cam.focal],
        axis=1,
    ).astype(np.float32)
    return dataclasses.replace(like, face=face, expression=np.zeros(len(EXPRESSION_NAMES), np.float32))


@pytest.fixture(scope="module")
def fitter() -> Iterator[Fitter]:
    with Fitter() as f:
        yield f


@pytest.fixture(scope="module")
def portrait(fitter: Fitter) -> Avatar:
    return load_avatar(DEFAULT_PORTRAIT, cache=False, fitter=fitter)


def test_the_default_portrait_is_read_as_smiling_with_lips_apart(portrait: Avatar) -> None:
    fit = portrait.fit
    assert fit.expression.shape == (15,) and fit.expression.dtype == np.float32
    assert np.all(fit.expression[MOUTH:] == 0) and np.all(fit.expression >= 0)
    assert mouth_opening(fit.face) > 0.08  # her lips are apart: she smiles showing her teeth
    assert fit.expression[JAW] > 0.1
    assert min(fit.expression[EXPRESSION_NAMES.index(n)] for n in ("smile_l", "smile_r")) > 0.3
    # the rest closes the lips (exactly: the seal) and relaxes the smile, nothing else moves
    rest = portrait.neutral().face
    assert mouth_opening(rest) < 0.005
    for a, b in zip(UPPER_INNER_LIP, LOWER_INNER_LIP, strict=True):
        assert np.linalg.norm(rest[a] - rest[b]) < 0.01 * face_width(rest)
    photo = fit.face[:, :2]
    width = lambda f: float(np.linalg.norm(f[291] - f[61]))  # noqa: E731
    assert width(rest) < width(photo) - 0.03 * face_width(photo)
    topo = face_topology()
    still = np.concatenate(
        [
            topo.left_eye,
            topo.right_eye,
            topo.left_brow,
            topo.right_brow,
            np.arange(468, 478),
            [10, 151, 9, 8, 168, 6],
        ]
    )
    assert np.abs(rest[still] - photo[still]).max() < 1e-3  # eyes, brows, forehead stay
    # the switch keeps the old behaviour: the photo's own face is the rest
    old = Rig(fit, RigConfig(closed_rest=False))
    assert np.abs(old.pose(MotionFrame.neutral()).face - photo).max() < 1e-3
    assert np.all(old.rest_expression == 0) and np.array_equal(old.photo_expression, fit.expression)


def test_coefficients_count_from_the_closed_rest(portrait: Avatar) -> None:
    rig = portrait.rig
    openings = [mouth_opening(rig.pose(frame(jaw_open=v)).face) for v in (0.0, 0.3, 0.6, 1.0)]
    assert openings[0] < 0.005 and np.all(np.diff(openings) > 0.03)
    old = Rig(portrait.fit, RigConfig(closed_rest=False))
    old_open = [mouth_opening(old.pose(frame(jaw_open=v)).face) for v in (0.0, 0.3)]
    assert old_open[0] > 0.08 and old_open[1] > openings[1] + 0.05  # the photo's gap came on top
    # the fields are built from the closed rest: pressing a closed mouth keeps it closed and
    # thins the lips (built from the photo it would push the lips past each other)
    press = rig.pose(frame(lip_press=1.0)).face
    rest = rig.pose(MotionFrame.neutral()).face
    assert mouth_opening(press) < 0.005
    assert np.linalg.norm(press[0] - press[17]) < np.linalg.norm(rest[0] - rest[17])
    # the body's mouth keypoints (pose 9, 10) follow the relaxed mouth corners
    assert np.abs(rig.pose(MotionFrame.neutral()).body[9:11] - portrait.fit.body[9:11]).max() > 0.5


def test_a_closed_neutral_mouth_is_left_alone(portrait: Avatar) -> None:
    # the rig's own closed rest, taken as a photo, reads as closed and neutral: all zeros, and its
    # rig poses exactly as without the switch
    closed = pixel_fit(portrait.rig, portrait.fit)
    est = photo_expression(closed)
    # (the estimate put the photo's smile at the edge of the usual range, so a trace may remain)
    assert est[JAW] == 0 and np.abs(est).max() < 0.1, est
    rig, old = Rig(dataclasses.replace(closed, expression=est)), Rig(closed, RigConfig(closed_rest=False))
    d = face_width(closed.face)
    for f in (MotionFrame.neutral(), frame(jaw_open=0.5, smile_l=0.3)):
        assert np.abs(rig.pose(f).face - old.pose(f).face).max() < 0.01 * d
    assert np.abs(rig.pose(MotionFrame.neutral()).face - closed.face[:, :2]).max() < 0.01 * d
    assert mouth_opening(rig.pose(MotionFrame.neutral()).face) < 0.005
    # the seal does nothing to closed lips
    assert np.abs(lip_seal(rig.canonical)).max() < 0.01


def _clip_frame(clip: str, which: str) -> np.ndarray:
    import av

    with np.load(LANDMARKS / f"{clip}.landmarks25.npz") as z:
        real = np.asarray(z["real_mouth_opening"], np.float64)
    index = int(np.nanargmin(real) if which == "closed" else np.nanargmax(real))
    with av.open(str(DATA / f"{clip}.mp4")) as container:
        for i, f in enumerate(container.decode(video=0)):
            if i == index:
                return np.ascontiguousarray(f.to_ndarray(format="rgb24"))
    raise IndexError(index)


REAL_CLIPS = ("grid_gm01_01", "edtalk_obama_01", "pcavs_vf01_02", "styletalk_feifeili_01")


@pytest.mark.parametrize("clip", REAL_CLIPS)
def test_real_clips_closed_frames_read_as_zero_and_open_frames_close(fitter: Fitter, clip: str) -> None:
    if not (DATA / f"{clip}.mp4").is_file() or not (LANDMARKS / f"{clip}.landmarks25.npz").is_file():
        pytest.skip(f"shared clip data not present ({clip})")
    closed = fitter.fit(_clip_frame(clip, "closed"))
    assert np.abs(closed.expression).max() < 0.15, closed.expression
    open_photo = _clip_frame(clip, "open")
    av = load_avatar(open_photo, height=open_photo.shape[0] // 2 * 2, cache=False, fitter=fitter)
    assert mouth_opening(av.fit.face) > 0.1
    assert av.fit.expression[JAW] > 0.3
    assert mouth_opening(av.neutral().face) < 0.01


def test_an_opened_render_is_read_back_and_closed_again(portrait: Avatar, fitter: Fitter) -> None:
    """The default avatar opened with jaw_open=0.6, rendered, fitted as a new photo: its estimate
    finds the jaw, its rest is as closed as the original's, and its rendered rest looks closed."""
    renderer = WarpRenderer(portrait.image, portrait.fit)
    photo = renderer.render(portrait.rig.pose(frame(jaw_open=0.6)))
    opened = load_avatar(photo, cache=False, fitter=fitter)
    assert mouth_opening(opened.fit.face) > 0.12
    assert opened.fit.expression[JAW] > 0.3
    closed_before = mouth_opening(portrait.neutral().face)
    assert abs(mouth_opening(opened.neutral().face) - closed_before) < 0.02
    rendered_rest = WarpRenderer(opened.image, opened.fit).render(opened.neutral())
    assert mouth_opening(fitter.fit(rendered_rest).face) < 0.04
    # without the switch the rendered rest is the open photo itself
    old = Rig(opened.fit, RigConfig(closed_rest=False))
    assert mouth_opening(old.pose(MotionFrame.neutral()).face) > 0.12


def test_non_default_fields_read_the_photo_again(portrait: Avatar) -> None:
    cfg = RigConfig(basis=BasisConfig(jaw_gap=0.3))
    rig = Rig(portrait.fit, cfg)
    # a weaker jaw field needs a larger coefficient for the same gap
    assert rig.photo_expression[JAW] > portrait.fit.expression[JAW]
    assert np.allclose(rig.photo_expression, photo_expression(portrait.fit, cfg.basis))
    assert mouth_opening(rig.pose(MotionFrame.neutral()).face) < 0.005
    # a fit made without an estimate (older code, clip landmarks) keeps the photo as the rest
    bare = dataclasses.replace(portrait.fit, expression=np.zeros(15, np.float32))
    assert np.abs(Rig(bare).pose(MotionFrame.neutral()).face - bare.face[:, :2]).max() < 1e-3


def test_estimate_is_robust_to_bad_input(portrait: Avatar) -> None:
    rig = Rig(portrait.fit, RigConfig(closed_rest=False))
    assert not estimate_mouth_expression(np.full((478, 3), np.nan), rig.basis).any()
    assert not estimate_mouth_expression(np.zeros((10, 3)), rig.basis).any()
    assert not lip_seal(np.full((478, 3), np.nan)).any()
    # the estimate lies in the rig's range, only in the mouth channels
    est = estimate_mouth_expression(rig.canonical, rig.basis)
    assert np.all(est >= 0) and np.all(est <= 1) and not est[MOUTH:].any()


def test_fit_cache_carries_the_estimate_and_old_fits_are_not_served(
    portrait: Avatar, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = fit_cache_key("abc", FitConfig(), 512, 512)
    save_fit(key, portrait.fit, tmp_path)
    back = load_cached_fit(key, tmp_path)
    assert back is not None and np.array_equal(back.expression, portrait.fit.expression)
    # a file in the previous format (no estimate) is a miss, and the key itself changed
    with np.load(fit_cache_path(key, tmp_path)) as d:
        old = {k: d[k] for k in d.files if k != "expression"}
    old["format"] = np.int64(1)
    np.savez(fit_cache_path(key, tmp_path), **old)
    assert load_cached_fit(key, tmp_path) is None
    import hashlib

    v1 = hashlib.sha256(f"fit-v1|abc|512x512|{FitConfig().cache_token()}".encode()).hexdigest()
    assert key != v1
    # load_avatar: a cached fit carries the estimate, and the rig config is not part of the key
    monkeypatch.setenv("VLOGGER_CACHE_DIR", str(tmp_path / "cache"))
    first = load_avatar(load_image(DEFAULT_PORTRAIT))
    second = load_avatar(load_image(DEFAULT_PORTRAIT), config=AvatarConfig(rig=RigConfig(closed_rest=False)))
    assert second.from_cache and np.array_equal(second.fit.expression, first.fit.expression)
    assert mouth_opening(second.neutral().face) > 0.08 > 0.005 > mouth_opening(first.neutral().face)


def test_box_lsq_matches_scipy_bvls() -> None:
    from scipy.optimize import lsq_linear

    from vlogger.engines.avatar.rest import box_lsq

    rng = np.random.default_rng(3)
    for trial in range(200):
        m, n = int(rng.integers(3, 30)), int(rng.integers(1, 12))
        n = min(n, m)
        a = rng.normal(size=(m, n)) * rng.uniform(0.1, 10, size=n)
        b = rng.normal(size=m) * 3
        lo = -rng.uniform(0, 1, size=n) * (trial % 3 != 0)
        hi = rng.uniform(0.05, 1.5, size=n)
        ours = box_lsq(a, b, lo, hi)
        ref = lsq_linear(a, b, bounds=(lo, hi), method="bvls").x
        assert np.all(ours >= lo) and np.all(ours <= hi)
        c_ours, c_ref = float(np.sum((a @ ours - b) ** 2)), float(np.sum((a @ ref - b) ** 2))
        assert c_ours <= c_ref + 1e-9 * max(1.0, c_ref), trial
        np.testing.assert_allclose(ours, ref, atol=1e-6)
    with pytest.raises(np.linalg.LinAlgError):
        box_lsq(np.ones((4, 2)), np.ones(4), np.zeros(2), np.ones(2))
