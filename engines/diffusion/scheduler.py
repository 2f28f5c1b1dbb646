"""The DDIM scheduler (numpy) of every diffusion model here, separate from the denoiser.

In the style of diffusers' ``DDIMScheduler``: the caller runs the denoiser, the scheduler turns its
output into the next sample::

    scheduler = DDIMScheduler(1000, prediction_type="epsilon")
    scheduler.set_timesteps(4, start=800)          # [800, 600, 400, 200]
    x = scheduler.start_from(init, noise)           # init noised to step 800 (pure noise without it)
    for t in scheduler.timesteps:
        out = denoiser(x, t)                        # noise, x0 or v, as prediction_type says
        x = scheduler.step(out, t, x, generator=rng)  # x at the next step; x0 after the last

Users: the motion network (``engines/motion/network.py``, predicts x0: ``"sample"``), the diffusion
renderer's windows (``engines/render/diffusion/window.py``, predicts the noise: ``"epsilon"``) and
the training code under ``training/``. ``eta = 0`` is deterministic DDIM, ``eta = 1`` DDPM-like
ancestral sampling. The schedule is the cosine one (Nichol & Dhariwal) with ``train_steps``
training steps; ``alpha_bar[0] = 1`` is the clean sample.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np
from numpy.typing import DTypeLike

from vlogger.engines.errors import InputError

__all__ = ["PREDICTION_TYPES", "DDIMScheduler", "PredictionType", "cosine_alpha_bar"]

PredictionType = Literal["epsilon", "sample", "v_prediction"]
"""What the denoiser predicts: the noise, the clean sample x0, or v = sqrt(ab) eps - sqrt(1 - ab) x0."""

PREDICTION_TYPES: tuple[str, ...] = get_args(PredictionType)


def cosine_alpha_bar(steps: int = 1000, s: float = 0.008, dtype: DTypeLike = np.float64) -> np.ndarray:
    """alpha_bar[t] for t = 0..steps (alpha_bar[0] = 1) of the cosine schedule, betas clipped at 0.999.

    Computed in float64 and returned as ``dtype`` (float32 is the schedule a model trained with a
    float32 table saw, e.g. the motion network).
    """
    if steps < 1:
        raise InputError(f"the schedule needs >= 1 step, not {steps}")
    t = np.arange(steps + 1, dtype=np.float64) / steps
    f = np.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    ab = f / f[0]
    betas = np.minimum(1 - ab[1:] / ab[:-1], 0.999)
    return np.concatenate([[1.0], np.cumprod(1 - betas)]).astype(dtype)


class DDIMScheduler:
    """DDIM over an epsilon, x0 (``"sample"``) or v prediction; ``eta`` 0 deterministic, 1 DDPM-like.

    ``clip_sample`` clips the x0 estimate to +-clip_sample (``None``: no clipping). ``alpha_bar``
    overrides the cosine schedule (``train_steps + 1`` values, t = 0..train_steps); it is kept in
    float64 whatever its dtype.
    """

    def __init__(
        self,
        train_steps: int = 1000,
        eta: float = 0.0,
        prediction_type: PredictionType = "epsilon",
        clip_sample: float | None = None,
        alpha_bar: np.ndarray | None = None,
    ) -> None:
        if train_steps < 1:
            raise InputError(f"train_steps must be >= 1, not {train_steps}")
        if not 0.0 <= eta <= 1.0:
            raise InputError(f"eta must be in [0, 1], not {eta}")
        if prediction_type not in PREDICTION_TYPES:
            raise InputError(
                f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}, not {prediction_type!r}"
            )
        if clip_sample is not None and clip_sample <= 0:
            raise InputError(f"clip_sample must be > 0 or None, not {clip_sample}")
        ab = cosine_alpha_bar(train_steps) if alpha_bar is None else np.asarray(alpha_bar, np.float64)
        if ab.shape != (train_steps + 1,):
            raise InputError(f"alpha_bar needs {train_steps + 1} values (t = 0..train_steps), not {ab.shape}")
        self.train_steps = int(train_steps)
        self.eta = float(eta)
        self.prediction_type: PredictionType = prediction_type
        self.clip_sample = clip_sample
        self.alpha_bar: np.ndarray = ab
        """alpha_bar[t], t = 0..train_steps, float64."""
        self.timesteps: list[int] = []
        """The current sampling steps, largest first (:meth:`set_timesteps`)."""
        self._previous: dict[int, int] = {}

    def set_timesteps(self, steps: int, start: int | None = None) -> list[int]:
        """``steps`` steps evenly spaced from ``start`` (default ``train_steps``: "trailing" spacing)
        down, rounded half to even: ``round(start * (steps - i) / steps)``; returns them."""
        start = self.train_steps if start is None else int(start)
        if not 1 <= steps <= start <= self.train_steps:
            raise InputError(f"need 1 <= steps ({steps}) <= start ({start}) <= {self.train_steps}")
        ts = [round(start * (steps - i) / steps) for i in range(steps)]
        self.timesteps = ts
        self._previous = {t: ts[i + 1] if i + 1 < steps else 0 for i, t in enumerate(ts)}
        return ts

    def previous_timestep(self, t: int) -> int:
        """The step after ``t`` in the current schedule (0, the clean sample, after the last)."""
        try:
            return self._previous[int(t)]
        except KeyError:
            raise InputError(f"step {t} is not in the schedule {self.timesteps} (set_timesteps)") from None

    def add_noise(
        self, x0: np.ndarray, noise: np.ndarray, t: int, out: np.ndarray | None = None
    ) -> np.ndarray:
        """q(x_t | x0): ``sqrt(ab) x0 + sqrt(1 - ab) noise`` (t = 0 gives x0), written to ``out``
        (float32, x0's shape) when given."""
        a = self.alpha_bar[int(t)]
        if out is None:
            out = math.sqrt(a) * x0
        else:
            np.multiply(x0, math.sqrt(a), out=out)
        out += math.sqrt(1.0 - a) * noise
        return out.astype(np.float32, copy=False)

    def start_from(self, init: np.ndarray | None, noise: np.ndarray) -> np.ndarray:
        """The first sample: ``init`` noised to the first timestep, or pure noise without ``init``
        (or when sampling starts at ``train_steps``)."""
        if not self.timesteps:
            raise InputError("call set_timesteps first")
        if init is None or self.timesteps[0] >= self.train_steps:
            return noise.astype(np.float32)
        return self.add_noise(init, noise, self.timesteps[0])

    def predict_x0(self, model_output: np.ndarray, t: int, sample: np.ndarray) -> np.ndarray:
        """The clean sample the denoiser's output at step ``t`` implies (clipped with
        ``clip_sample``); never ``model_output`` itself when it would be modified."""
        a = self.alpha_bar[int(t)]
        if self.prediction_type == "epsilon":
            x0 = sample - math.sqrt(1.0 - a) * model_output
            x0 /= math.sqrt(a)
        elif self.prediction_type == "v_prediction":
            x0 = math.sqrt(a) * sample - math.sqrt(1.0 - a) * model_output
        else:
            x0 = model_output
            if self.clip_sample is not None:
                return np.clip(x0, -self.clip_sample, self.clip_sample)
        if self.clip_sample is not None:
            np.clip(x0, -self.clip_sample, self.clip_sample, out=x0)
        return x0

    def step(
        self,
        model_output: np.ndarray,
        t: int,
        sample: np.ndarray,
        *,
        generator: np.random.Generator | None = None,
        variance_noise: np.ndarray | None = None,
    ) -> np.ndarray:
        """The sample at the step after ``t`` (float32) from the denoiser's output at ``t``; the x0
        estimate after the last step.

        With ``eta > 0`` a stochastic step adds ``sigma * variance_noise`` (standard normal, the
        sample's shape), drawn as float32 from ``generator`` when not given.
        """
        t = int(t)
        t_prev = self.previous_timestep(t)
        a, a_prev = self.alpha_bar[t], self.alpha_bar[t_prev]
        x0 = self.predict_x0(model_output, t, sample)
        if t_prev == 0:
            return np.asarray(x0, dtype=np.float32)
        # the noise the (clipped) x0 implies, then x at t_prev on the same path (+ fresh noise)
        eps = (sample - math.sqrt(a) * x0) / math.sqrt(max(1.0 - a, 1e-12))
        sigma = 0.0
        if self.eta > 0:
            sigma = self.eta * math.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
        out = x0 * math.sqrt(a_prev) + eps * math.sqrt(max(1.0 - a_prev - sigma**2, 0.0))
        if sigma > 0:
            if variance_noise is None:
                if generator is None:
                    raise InputError("a stochastic step (eta > 0) needs a generator or variance_noise")
                variance_noise = generator.standard_normal(np.shape(sample), dtype=np.float32)
            out = out + sigma * variance_noise
        return np.asarray(out, dtype=np.float32)
