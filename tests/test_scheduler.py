"""The shared DDIM scheduler (``vlogger.engines.diffusion``): schedule, spacing, prediction types, and
the same numbers as the two samplers it replaced.

``data/scheduler_reference.npz`` was written by the motion network's x0 sampler
(``engines/motion/sampler.py``) and the renderer's epsilon sampler
(``engines/render/diffusion/sampler.py``) before they were merged into the scheduler (commit
fc61c07), with exactly the loops, seeds and inputs below: their schedules and timesteps, a small
fake denoiser of each kind, the 32 px test renderer through ``WindowSampler`` / ``Outpainter``, and
the packaged motion network through its rollout (deterministic and ``eta > 0``).
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from vlogger.engines.backends import make_runner
from vlogger.engines.diffusion import PREDICTION_TYPES, DDIMScheduler, cosine_alpha_bar
from vlogger.engines.errors import InputError
from vlogger.engines.motion.network import (
    NetworkConfig,
    _default_model_path,
    _Net,
    load_motion_model,
    offline_rollout,
)
from vlogger.engines.render.diffusion import TEST_MODEL, Outpainter, WindowSampler, frame_scheduler

REFERENCE = Path(__file__).with_name("data") / "scheduler_reference.npz"
TOL = 1e-5
needs_motion_model = pytest.mark.skipif(not _default_model_path().exists(), reason="no motion network")


@cache
def _ref() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as z:
        return {k: z[k] for k in z.files}


def _same(key: str, got: np.ndarray) -> None:
    want = _ref()[key]
    assert np.shape(got) == want.shape, key
    assert float(np.abs(np.asarray(got, np.float64) - want).max()) < TOL, key


def _motion_scheduler(train_steps: int, eta: float = 0.0) -> DDIMScheduler:
    """As the motion network builds it: x0 prediction, the float32 cosine table."""
    ab = cosine_alpha_bar(train_steps, dtype=np.float32)
    return DDIMScheduler(train_steps, eta, prediction_type="sample", alpha_bar=ab)


# ---- the numbers of the replaced samplers -----------------------------------------------------
def test_schedules_and_timesteps_equal_the_replaced_samplers() -> None:
    for t in (1000, 500):
        assert cosine_alpha_bar(t, dtype=np.float32).dtype == np.float32
        assert np.array_equal(cosine_alpha_bar(t, dtype=np.float32), _ref()[f"ab_motion_{t}"])
        assert np.array_equal(cosine_alpha_bar(t), _ref()[f"ab_render_{t}"])
    s = DDIMScheduler(1000)
    motion = [t for n in range(1, 51) for t in s.set_timesteps(n)]
    assert motion == _ref()["ts_motion"].tolist()
    starts = (13, 333, 701, 800, 999, 1000)
    render = [t for n in (1, 2, 3, 4, 7, 13) for start in starts for t in s.set_timesteps(n, start)]
    assert render == _ref()["ts_render"].tolist()


def _motion_fake(x: np.ndarray, t: int) -> np.ndarray:
    d = x.shape[-1]
    return np.tanh(0.8 * x + 0.3 * np.sin(np.arange(d, dtype=np.float32)) - 2e-4 * t).astype(np.float32)


def _render_fake(x: np.ndarray, t: int) -> np.ndarray:
    return (np.tanh(0.5 * x - 0.2) + 1e-3 * t).astype(np.float32)


@pytest.mark.parametrize("train_steps", [1000, 500])
def test_x0_prediction_equals_the_motion_sampler(train_steps: int) -> None:
    for steps in (1, 2, 3, 4, 7):
        for eta in (0.0, 0.7):
            s = _motion_scheduler(train_steps, eta)
            s.set_timesteps(steps)
            rng = np.random.default_rng(steps * 10 + int(eta * 10) + train_steps)
            x = rng.standard_normal((3, 174)).astype(np.float32)
            for t in s.timesteps:
                noise = rng.standard_normal(x.shape).astype(np.float32) if eta else None
                x = s.step(_motion_fake(x, t), t, x, variance_noise=noise)
            _same(f"motion_fake_{train_steps}_{steps}_{eta}", x)


@pytest.mark.parametrize("train_steps", [1000, 500])
def test_epsilon_prediction_equals_the_renderer_sampler(train_steps: int) -> None:
    for steps, start in ((1, None), (3, 701 * train_steps // 1000), (4, 400), (2, 13)):
        for eta in (0.0, 1.0):
            for clip in (1.0, 0.0):
                s = DDIMScheduler(train_steps, eta=eta, clip_sample=clip or None)
                s.set_timesteps(steps, start)
                rng = np.random.default_rng(steps + 7 * (start or 0) + train_steps)
                init = rng.uniform(-1, 1, (2, 3, 6, 6)).astype(np.float32)
                x = s.start_from(init, rng.standard_normal(init.shape, dtype=np.float32))
                for t in s.timesteps:
                    x = s.step(_render_fake(x, t), t, x, generator=rng)
                _same(f"render_fake_{train_steps}_{steps}_{start}_{eta}_{clip}", x)


def test_test_renderer_windows_equal_the_replaced_sampler() -> None:
    runner = make_runner(TEST_MODEL)
    rng = np.random.default_rng(3)
    controls = rng.uniform(-1, 1, (6, 13, 32, 32)).astype(np.float32)
    ref = rng.uniform(-1, 1, (3, 32, 32)).astype(np.float32)
    op = Outpainter(WindowSampler(runner, frame_scheduler(), 2, 800), ref, window=4, seed=0)
    _same("render_model_windows", np.stack([f for c in controls for f in op.push(c)] + op.flush()))
    op = Outpainter(WindowSampler(runner, frame_scheduler(eta=1.0), 3, 1000), ref, window=4, seed=1)
    _same("render_model_causal_ddpm", np.stack([op.step_one(c) for c in controls[:3]]))


@needs_motion_model
def test_motion_network_rollouts_equal_the_replaced_sampler() -> None:
    runner, meta = load_motion_model()
    audio_dim, motion_dim = int(meta["model_config"]["audio_dim"]), int(meta["model_config"]["motion_dim"])
    rng = np.random.default_rng(4)
    feats = rng.standard_normal((5, audio_dim)).astype(np.float32)
    noises = rng.standard_normal((5, motion_dim)).astype(np.float32)
    _same("motion_model_rollout", offline_rollout(feats, noises, NetworkConfig()))
    _same("motion_model_rollout_4", offline_rollout(feats, noises, NetworkConfig(steps=4, guidance=1.0)))
    net = _Net(runner, meta, NetworkConfig(steps=3, eta=0.6))
    empty = np.zeros((net.layers, net.batch, net.heads, net.window - 1, net.head_dim), np.float32)
    valid = np.zeros((net.batch, net.window - 1), np.float32)
    xs = []
    for i in range(3):
        step_noise = [rng.standard_normal(motion_dim).astype(np.float32) for _ in range(3)]
        xs.append(net.denoise(noises[i], feats[i], None, empty, empty, valid, step_noise)[0])
    _same("motion_model_eta", np.stack(xs))


# ---- the schedule ------------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [1, 10, 1000, 4000])
def test_cosine_schedule_endpoints_and_monotone(steps: int) -> None:
    ab = cosine_alpha_bar(steps)
    assert ab.shape == (steps + 1,) and ab.dtype == np.float64
    assert ab[0] == 1.0 and 0.0 < ab[-1] < (1.001e-3 if steps == 1 else 1e-4)  # 1 step: beta clipped
    assert np.all(np.diff(ab) < 0)
    betas = 1 - ab[1:] / ab[:-1]
    assert betas.max() <= 0.999 + 1e-12
    # unclipped, it is the closed form f(t) / f(0), f = cos^2(((t / T) + s) / (1 + s) * pi / 2)
    f = np.cos((np.arange(steps + 1) / steps + 0.008) / 1.008 * math.pi / 2) ** 2
    ok = np.concatenate([[True], np.cumsum(betas >= 0.999) == 0])
    np.testing.assert_allclose(ab[ok], (f / f[0])[ok], rtol=1e-12)
    assert np.array_equal(cosine_alpha_bar(steps, dtype=np.float32), ab.astype(np.float32))
    with pytest.raises(InputError):
        cosine_alpha_bar(0)


def test_set_timesteps_is_evenly_spaced_from_the_start() -> None:
    s = DDIMScheduler(1000)
    assert s.set_timesteps(4) == [1000, 750, 500, 250] == s.timesteps
    assert s.set_timesteps(4, start=800) == [800, 600, 400, 200]
    assert s.set_timesteps(1) == [1000]
    assert s.set_timesteps(3, start=700) == [700, 467, 233]  # rounded
    for n, start in ((7, 1000), (13, 999), (50, 1000), (1000, 1000), (5, 5)):
        ts = s.set_timesteps(n, start)
        assert len(ts) == n and ts[0] == start and all(isinstance(t, int) for t in ts)
        gaps = -np.diff([*ts, 0])
        assert np.all(gaps > 0) and gaps.max() - gaps.min() <= 1  # even, up to the rounding
        chain = [ts[0]]
        while chain[-1]:
            chain.append(s.previous_timestep(chain[-1]))
        assert chain == [*ts, 0]
    for bad in ((0, None), (5, 4), (2, 1001)):
        with pytest.raises(InputError):
            s.set_timesteps(*bad)
    s.set_timesteps(4)
    with pytest.raises(InputError, match="not in the schedule"):
        s.previous_timestep(3)


# ---- the prediction types on an analytic case -------------------------------------------------
def _oracle(kind: str, x0: np.ndarray, eps: np.ndarray, a: float) -> np.ndarray:
    """What a perfect denoiser of ``kind`` returns for x_t = sqrt(a) x0 + sqrt(1 - a) eps."""
    if kind == "epsilon":
        return eps
    if kind == "sample":
        return x0
    return math.sqrt(a) * eps - math.sqrt(1 - a) * x0


@pytest.mark.parametrize("kind", PREDICTION_TYPES)
@pytest.mark.parametrize("start", [1000, 800, 250, 1])
def test_each_prediction_type_recovers_x0_in_one_step(kind: str, start: int) -> None:
    s = DDIMScheduler(1000, prediction_type=kind)  # type: ignore[arg-type]
    s.set_timesteps(1, start)
    rng = np.random.default_rng(start)
    x0, eps = rng.uniform(-1, 1, (2, 5)), rng.standard_normal((2, 5))
    a = float(s.alpha_bar[start])
    x = math.sqrt(a) * x0 + math.sqrt(1 - a) * eps
    out = s.step(_oracle(kind, x0, eps, a), start, x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, x0, atol=1e-6)


@pytest.mark.parametrize("kind", PREDICTION_TYPES)
def test_deterministic_ddim_stays_on_the_noise_path(kind: str) -> None:
    s = DDIMScheduler(1000, prediction_type=kind)  # type: ignore[arg-type]
    s.set_timesteps(5, start=900)
    rng = np.random.default_rng(1)
    x0, eps = rng.uniform(-1, 1, 64), rng.standard_normal(64)
    x = s.start_from(x0, eps)
    for t in s.timesteps:
        x = s.step(_oracle(kind, x0, eps, float(s.alpha_bar[t])), t, x)
        tp = s.previous_timestep(t)
        a = float(s.alpha_bar[tp])
        np.testing.assert_allclose(x, math.sqrt(a) * x0 + math.sqrt(1 - a) * eps, atol=1e-5)
    np.testing.assert_allclose(x, x0, atol=1e-5)


def test_stochastic_step_noise_from_a_generator_or_given() -> None:
    s = DDIMScheduler(1000, eta=1.0, prediction_type="sample")
    s.set_timesteps(4)
    x = np.ones((2, 3), np.float32)
    x0 = np.full((2, 3), 0.5, np.float32)
    a = s.step(x0, 1000, x, generator=np.random.default_rng(1))
    b = s.step(x0, 1000, x, variance_noise=np.random.default_rng(1).standard_normal((2, 3), dtype=np.float32))
    c = s.step(x0, 1000, x, generator=np.random.default_rng(2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # sigma of DDPM (eta = 1): the posterior's; the rest stays on the path through x0
    ab, ap = s.alpha_bar[1000], s.alpha_bar[750]
    sigma = math.sqrt((1 - ap) / (1 - ab) * (1 - ab / ap))
    z = np.random.default_rng(1).standard_normal((2, 3), dtype=np.float32)
    eps = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
    want = math.sqrt(ap) * x0 + math.sqrt(1 - ap - sigma**2) * eps + sigma * z
    np.testing.assert_allclose(a, want, atol=1e-6)
    with pytest.raises(InputError, match="generator"):
        s.step(x0, 1000, x)
    # the last step returns x0 and draws nothing
    g = np.random.default_rng(3)
    assert np.array_equal(s.step(x0, 250, x, generator=g), x0)
    assert g.random() == np.random.default_rng(3).random()


def test_clipping_and_the_inputs_are_left_alone() -> None:
    for kind in PREDICTION_TYPES:
        s = DDIMScheduler(1000, prediction_type=kind, clip_sample=1.0)  # type: ignore[arg-type]
        s.set_timesteps(1, 500)
        out = np.full((4,), 3.0, np.float32)
        x = np.full((4,), -2.0, np.float32)
        keep_out, keep_x = out.copy(), x.copy()
        x0 = s.step(out, 500, x)
        assert np.abs(x0).max() <= 1.0
        assert np.array_equal(out, keep_out) and np.array_equal(x, keep_x)


def test_bad_settings_are_input_errors() -> None:
    with pytest.raises(InputError):
        DDIMScheduler(0)
    with pytest.raises(InputError):
        DDIMScheduler(eta=1.5)
    with pytest.raises(InputError, match="prediction_type"):
        DDIMScheduler(prediction_type="x0")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        DDIMScheduler(clip_sample=0.0)
    with pytest.raises(InputError, match="alpha_bar"):
        DDIMScheduler(10, alpha_bar=np.ones(10))
    with pytest.raises(InputError, match="set_timesteps"):
        DDIMScheduler().start_from(None, np.zeros(3))
