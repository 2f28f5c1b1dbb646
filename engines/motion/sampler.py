"""DDIM sampling for an x0-predicting diffusion model (numpy), separate from the network.

sampler = DDIMSampler(train_steps=1000)
sampler.set_timesteps(4)                   # [1000, 750, 500, 250]
x = rng.standard_normal(shape)
for t in sampler.timesteps:
    x0 = network(x, t)                     # the network's x0 prediction at step t
    x = sampler.step(x0, t, x)             # x at the next (smaller) step; x0 itself after the last
"""

from __future__ import annotations

import math

import numpy as np

from vlogger.engines.errors import InputError

__all__ = ["DDIMSampler", "cosine_alpha_bar"]


def cosine_alpha_bar(steps: int, s: float = 0.008) -> np.ndarray:
    """alpha_bar[t] for t = 0..steps (alpha_bar[0] = 1) of the cosine schedule (betas clipped at
    0.999), float32 as the training code computes it."""
    t = np.arange(steps + 1, dtype=np.float64) / steps
    f = np.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    ab = f / f[0]
    betas = np.minimum(1 - ab[1:] / ab[:-1], 0.999)
    ab = np.concatenate([[1.0], np.cumprod(1 - betas)])
    return ab.astype(np.float32)


class DDIMSampler:
    """Deterministic (``eta = 0``) or stochastic DDIM over an x0 prediction."""

    def __init__(self, train_steps: int = 1000, eta: float = 0.0) -> None:
        if train_steps < 1:
            raise InputError(f"train_steps must be >= 1, not {train_steps}")
        if not 0.0 <= eta <= 1.0:
            raise InputError(f"eta must be in [0, 1], not {eta}")
        self.train_steps = int(train_steps)
        self.eta = float(eta)
        self.alpha_bar = cosine_alpha_bar(self.train_steps).astype(np.float64)
        self.timesteps = np.array([self.train_steps], dtype=np.int64)
        self._next: dict[int, int] = {self.train_steps: 0}

    def set_timesteps(self, n: int) -> np.ndarray:
        """``n`` steps evenly spaced from ``train_steps`` down ("trailing" spacing); returns them."""
        if not 1 <= n <= self.train_steps:
            raise InputError(f"number of sampling steps must be in 1..{self.train_steps}, not {n}")
        ts = np.round(self.train_steps - np.arange(n) * self.train_steps / n).astype(np.int64)
        self.timesteps = ts
        self._next = {int(t): int(ts[k + 1]) if k + 1 < n else 0 for k, t in enumerate(ts)}
        return ts

    def prev_timestep(self, t: int) -> int:
        return self._next[int(t)]

    def step(
        self, x0_pred: np.ndarray, t: int, x_t: np.ndarray, noise: np.ndarray | None = None
    ) -> np.ndarray:
        """x at the step after ``t`` given the x0 prediction at ``t`` (x0 itself after the last).

        ``noise`` (same shape, standard normal) is used only when ``eta > 0``.
        """
        t_prev = self.prev_timestep(t)
        ab_t = self.alpha_bar[int(t)]
        ab_p = self.alpha_bar[t_prev]
        if t_prev == 0:
            return np.asarray(x0_pred, dtype=np.float32)
        eps = (x_t - math.sqrt(ab_t) * x0_pred) / math.sqrt(max(1.0 - ab_t, 1e-12))
        sigma = 0.0
        if self.eta > 0:
            sigma = self.eta * math.sqrt((1 - ab_p) / (1 - ab_t) * (1 - ab_t / ab_p))
        out = math.sqrt(ab_p) * x0_pred + math.sqrt(max(1.0 - ab_p - sigma**2, 0.0)) * eps
        if sigma > 0:
            if noise is None:
                raise InputError("DDIMSampler.step needs noise when eta > 0")
            out = out + sigma * noise
        return np.asarray(out, dtype=np.float32)
