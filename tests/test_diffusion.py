"""The diffusion renderer's runtime (onnxruntime + numpy, no torch): samplers, windows, outpainting."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from vlogger.engines.avatar import load_avatar
from vlogger.engines.backends import make_runner
from vlogger.engines.render.diffusion import (
    TEST_MODEL,
    DiffusionConfig,
    DiffusionRenderer,
    Outpainter,
    WindowSampler,
    frame_scheduler,
    window_plan,
)
from vlogger.engines.render.warp import WarpRenderer
from vlogger.engines.types import EXPRESSION_NAMES, MotionFrame


@cache
def _avatar():
    return load_avatar()


def _motion(n: int, seed: int = 0) -> list[MotionFrame]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        mf = MotionFrame.neutral(i, i / 25)
        mf.expression[EXPRESSION_NAMES.index("jaw_open")] = 0.5 + 0.5 * np.sin(i / 2 + rng.random())
        out.append(mf)
    return out


def test_ddim_schedule_and_exact_recovery_with_the_true_noise() -> None:
    s = frame_scheduler()
    assert s.set_timesteps(4, start=800) == [800, 600, 400, 200]
    assert s.set_timesteps(1) == [1000]
    assert s.alpha_bar[0] == 1.0 and 0 < s.alpha_bar[1000] < 1e-4
    assert np.all(np.diff(s.alpha_bar) < 0)
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)
    s.set_timesteps(3, start=700)
    x = s.start_from(x0, rng.standard_normal(x0.shape).astype(np.float32))
    for t in s.timesteps:  # an oracle network: the noise that is really in x
        a = s.alpha_bar[t]
        eps = (x - np.sqrt(a) * x0) / np.sqrt(1 - a)
        x = s.step(eps, t, x)
    assert np.abs(x - x0).max() < 1e-4
    with pytest.raises(ValueError):
        s.set_timesteps(0)


def test_ddpm_is_stochastic_but_seeded() -> None:
    s = frame_scheduler(eta=1.0)
    s.set_timesteps(4)
    x = np.ones((1, 3, 4, 4), np.float32)
    eps = np.zeros_like(x)
    a = s.step(eps, 1000, x, generator=np.random.default_rng(1))
    b = s.step(eps, 1000, x, generator=np.random.default_rng(1))
    c = s.step(eps, 1000, x, generator=np.random.default_rng(2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError):
        s.step(eps, 1000, x)


def test_window_plan_covers_every_frame_with_half_overlap() -> None:
    plan = window_plan(21, 8)
    assert plan[0] == (0, 0, 8)
    assert all(k == 4 for _, k, _ in plan[1:])
    covered = [f for start, k, n in plan for f in range(start + k, start + k + n)]
    assert covered == list(range(21))
    with pytest.raises(ValueError):
        window_plan(10, 7)


class _Recorder:
    """Wraps a runner and keeps every feed."""

    def __init__(self, runner) -> None:
        self.runner = runner
        self.name = runner.name
        self.input_names, self.output_names = runner.input_names, runner.output_names
        self.metadata = runner.metadata
        self.feeds: list[dict[str, np.ndarray]] = []

    def infer(self, feed):
        self.feeds.append({k: np.array(v) for k, v in feed.items()})
        return self.runner.infer(feed)


class _RecordingSampler(WindowSampler):
    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.calls: list[tuple[np.ndarray | None, np.ndarray]] = []

    def sample(self, controls, ref, known, rng, init=None):
        out = super().sample(controls, ref, known, rng, init)
        self.calls.append((None if known is None else known.copy(), out.copy()))
        return out


def _controls(n: int, seed: int = 0) -> np.ndarray:
    a = _avatar()
    r = DiffusionRenderer(a.image, a.fit)
    warp = WarpRenderer(a.image, a.fit)
    out = []
    for mf in _motion(n, seed):
        posed = a.rig.pose(mf)
        out.append(r.controls.build(posed, warp.render(posed)))
    return np.stack(out)


def test_outpainting_overlap_frames_equal_the_known_frames() -> None:
    runner = _Recorder(make_runner(TEST_MODEL))
    ws = _RecordingSampler(runner, frame_scheduler(), steps=2, start=800)
    controls = _controls(22)
    ref = controls[0, -3:]
    op = Outpainter(ws, ref, window=8, seed=0)
    frames = [f for c in controls for f in op.push(c)] + op.flush()
    assert len(frames) == 22
    assert len(ws.calls) == 5  # 8 new, then 4 + 4 + 4 + 2 (the last window padded to 4)
    assert ws.calls[0][0] is None
    for (_, prev), (known, out) in zip(ws.calls, ws.calls[1:], strict=False):
        assert known is not None and known.shape[0] == 4
        assert np.array_equal(known, prev[-4:])  # window k+1 keeps window k's last N/2 frames ...
        assert np.array_equal(out[:4], known)  # ... unchanged
    # the network sees the known frames explicitly: mask channel + known frame channels, every step
    for feed in runner.feeds[2:]:  # the first window's two steps have no known frames
        c = feed["control"][0]
        assert feed["x"].shape == (1, 8, 3, 32, 32) and c.shape == (8, 17, 32, 32)
        assert (c[:4, 13] == 1).all() and (c[4:, 13] == 0).all()
        assert np.abs(c[4:, 14:]).max() == 0
    assert np.array_equal(runner.feeds[2]["control"][0, :4, 14:], ws.calls[1][0])
    # every window sees the reference photo
    assert all(np.array_equal(f["ref"][0], ref) for f in runner.feeds)
    # the stream's frames are the windows' new frames in order
    assert np.array_equal(np.stack(frames[:8]), ws.calls[0][1])
    assert np.array_equal(np.stack(frames[8:12]), ws.calls[1][1][4:])


def test_causal_streaming_keeps_n_minus_1_known_frames() -> None:
    ws = _RecordingSampler(make_runner(TEST_MODEL), frame_scheduler(), steps=1, start=800)
    controls = _controls(10, seed=1)
    op = Outpainter(ws, controls[0, -3:], window=8, seed=0)
    outs = [op.step_one(c) for c in controls]
    assert [0 if k is None else len(k) for k, _ in ws.calls] == [0, 1, 2, 3, 4, 5, 6, 7, 7, 7]
    assert np.array_equal(ws.calls[-1][0][-1], outs[-2])


def test_renderer_is_seeded_and_pastes_into_the_warp_frame() -> None:
    a = _avatar()
    motion = _motion(12)

    def run(seed: int) -> list[np.ndarray]:
        r = DiffusionRenderer(a.image, a.fit, DiffusionConfig(seed=seed, steps=2))
        frames = [f for mf in motion for f in r.push(a.rig.pose(mf))] + r.flush()
        assert len(frames) == len(motion)
        return frames

    one, two, other = run(0), run(0), run(1)
    assert all(np.array_equal(x, y) for x, y in zip(one, two, strict=True))
    assert not np.array_equal(one[3], other[3])
    r = DiffusionRenderer(a.image, a.fit, DiffusionConfig(steps=2))
    x0, y0, side = r.crop.ints()
    warp = WarpRenderer(a.image, a.fit).render(a.rig.pose(motion[5]))
    f = one[5]
    assert f.shape == a.image.shape and f.dtype == np.uint8
    outside = np.ones(f.shape[:2], bool)
    outside[y0 : y0 + side, x0 : x0 + side] = False
    assert np.array_equal(f[outside], warp[outside])  # the warp frame outside the crop
    inner = (slice(y0 + side // 4, y0 + 3 * side // 4), slice(x0 + side // 4, x0 + 3 * side // 4))
    diff = np.abs(f[inner].astype(int) - warp[inner].astype(int)).mean()
    assert 0.5 < diff < 40, diff  # generated there, but the same picture
    # the protocol path (causal) renders the same person, and reset restarts the noise
    r.reset()
    s1 = [r.render(a.rig.pose(mf)) for mf in motion[:3]]
    r.reset()
    s2 = [r.render(a.rig.pose(mf)) for mf in motion[:3]]
    assert all(np.array_equal(x, y) for x, y in zip(s1, s2, strict=True))


def test_bad_model_paths_are_refused() -> None:
    from vlogger.engines.errors import InputError

    a = _avatar()
    with pytest.raises(InputError, match="does not exist"):
        DiffusionRenderer(a.image, a.fit, DiffusionConfig(model="/nonexistent/renderer.onnx"))
    with pytest.raises(InputError, match="start"):
        DiffusionRenderer(a.image, a.fit, DiffusionConfig(start=1.5))
