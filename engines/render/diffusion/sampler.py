"""Samplers for a noise-predicting (epsilon) diffusion model, numpy only, separate from the network.

    sampler = DDIMSampler()                 # 1000 training steps, cosine schedule
    sampler.set_timesteps(4, start=800)     # [800, 600, 400, 200]
    x = sampler.start_from(init, noise)     # noised init (or pure noise when start == 1000)
    for t in sampler.timesteps:
        eps = network(x, t)
        x = sampler.step(eps, t, x, rng)    # x at the next step; the clean x0 after the last

``DDPMSampler`` is DDIM with ``eta = 1`` (ancestral sampling); the teacher is run with either,
distilled students with deterministic DDIM at the step counts they were distilled for.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DDIMSampler", "DDPMSampler", "cosine_alpha_bar"]


def cosine_alpha_bar(steps: int = 1000, s: float = 0.008) -> np.ndarray:
    """alpha_bar[t] for t = 0..steps (alpha_bar[0] = 1) of the cosine schedule, betas clipped at 0.999."""
    t = np.arange(steps + 1, dtype=np.float64) / steps
    f = np.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    ab = f / f[0]
    betas = np.minimum(1 - ab[1:] / ab[:-1], 0.999)
    return np.concatenate([[1.0], np.cumprod(1 - betas)])


class DDIMSampler:
    """DDIM over an epsilon prediction; ``eta = 0`` is deterministic, ``eta = 1`` is DDPM-like."""

    def __init__(self, train_steps: int = 1000, eta: float = 0.0, clip: float = 1.0) -> None:
        if train_steps < 1:
            raise ValueError(f"train_steps must be >= 1, not {train_steps}")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], not {eta}")
        self.train_steps = train_steps
        self.eta = eta
        self.clip = clip
        self.alpha_bar = cosine_alpha_bar(train_steps)
        self.timesteps: list[int] = []

    def set_timesteps(self, steps: int, start: int | None = None) -> list[int]:
        """Evenly spaced steps from ``start`` (default ``train_steps``) down, ``steps`` of them."""
        start = self.train_steps if start is None else int(start)
        if not 1 <= steps <= start <= self.train_steps:
            raise ValueError(f"need 1 <= steps ({steps}) <= start ({start}) <= {self.train_steps}")
        self.timesteps = [round(start * (steps - i) / steps) for i in range(steps)]
        return self.timesteps

    def next_step(self, t: int) -> int:
        """The step after ``t`` in the current schedule (0 after the last)."""
        i = self.timesteps.index(t)
        return self.timesteps[i + 1] if i + 1 < len(self.timesteps) else 0

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
        """The first sample: ``init`` noised to the first timestep, or pure noise without ``init``."""
        if not self.timesteps:
            raise RuntimeError("call set_timesteps first")
        if init is None or self.timesteps[0] >= self.train_steps:
            return noise.astype(np.float32)
        return self.add_noise(init, noise, self.timesteps[0])

    def predict_x0(self, eps: np.ndarray, t: int, x: np.ndarray) -> np.ndarray:
        """The clean sample implied by ``eps`` at step ``t`` (clipped to +-clip)."""
        a = self.alpha_bar[int(t)]
        x0 = x - math.sqrt(1.0 - a) * eps
        x0 /= math.sqrt(a)
        return np.clip(x0, -self.clip, self.clip, out=x0) if self.clip else x0

    def step(
        self, eps: np.ndarray, t: int, x: np.ndarray, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """x at the next step of the schedule from the prediction at ``t``."""
        t_next = self.next_step(t)
        a, a_next = self.alpha_bar[int(t)], self.alpha_bar[t_next]
        x0 = self.predict_x0(eps, t, x)
        if t_next == 0:
            return x0.astype(np.float32, copy=False)
        sigma = self.eta * math.sqrt((1 - a_next) / (1 - a) * (1 - a / a_next))
        eps_hat = x - math.sqrt(a) * x0
        eps_hat /= math.sqrt(1.0 - a)
        eps_hat *= math.sqrt(max(1 - a_next - sigma**2, 0.0))
        out = x0
        out *= math.sqrt(a_next)
        out += eps_hat
        if sigma > 0:
            if rng is None:
                raise ValueError("a stochastic step (eta > 0) needs rng")
            out += sigma * rng.standard_normal(np.shape(x), dtype=np.float32)
        return out.astype(np.float32, copy=False)


class DDPMSampler(DDIMSampler):
    """Ancestral sampling (DDIM with ``eta = 1``): the teacher's reference sampler."""

    def __init__(self, train_steps: int = 1000, clip: float = 1.0) -> None:
        super().__init__(train_steps, eta=1.0, clip=clip)
