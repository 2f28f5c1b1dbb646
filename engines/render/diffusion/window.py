"""Windows of N frames and temporal outpainting (paper §3.2): the known-frame mechanism.

Each window holds N frames; its first ``k`` frames may be *known* (already generated). Known frames
reach the network twice, explicitly: as control channels (a known-mask channel plus the known
frames, in [-1, 1]) and by replacement during sampling (after every step the known frames of the
sample are reset to the known frames noised to the current step, and set exactly at the end). So the
overlap frames of window k+1 equal the known frames from window k.

:class:`Outpainter` chains windows: the first has N new frames, every later one keeps the previous
window's last N/2 frames as known and generates N/2 new ones (50% overlap); ``step_one`` is the
causal streaming variant (N-1 known frames, 1 new) for renderers that must answer frame by frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from vlogger.engines.backends.base import Runner
from vlogger.engines.diffusion import DDIMScheduler, PredictionType

__all__ = ["Outpainter", "WindowSampler", "control_tensor", "frame_scheduler", "window_plan"]


def frame_scheduler(
    train_steps: int = 1000, eta: float = 0.0, prediction_type: PredictionType = "epsilon"
) -> DDIMScheduler:
    """The scheduler of the renderer's frames: the shared DDIM with the x0 estimate clipped to the
    frames' range [-1, 1] (``eta`` 0: deterministic, 1: DDPM-like)."""
    return DDIMScheduler(train_steps, eta, prediction_type, clip_sample=1.0)


def window_plan(total: int, window: int) -> list[tuple[int, int, int]]:
    """(start, known, new) of each window that covers ``total`` frames with 50% overlap.

    The first window generates up to N frames; each later one keeps N/2 known frames.
    """
    if window < 2 or window % 2:
        raise ValueError(f"the window must be an even number of frames >= 2, got {window}")
    plan, done, hop = [], 0, window // 2
    while done < total:
        if done == 0:
            plan.append((0, 0, min(window, total)))
            done = min(window, total)
        else:
            new = min(hop, total - done)
            plan.append((done - hop, hop, new))
            done += new
    return plan


def control_tensor(controls: np.ndarray | Sequence[np.ndarray], known: np.ndarray | None) -> np.ndarray:
    """The network's ``control`` input (1, n, C + 4, S, S) float32: the n frames' controls, a
    known-mask channel (1 for the first k frames) and the k ``known`` frames (0 after them)."""
    n = len(controls)
    c, s = np.shape(controls[0])[:2]
    k = 0 if known is None else int(known.shape[0])
    out = np.empty((1, n, c + 4, s, s), np.float32)
    body = out[0]
    for i, frame in enumerate(controls):
        body[i, :c] = frame
    body[:k, c] = 1.0
    body[k:, c:] = 0.0
    if k:
        body[:k, c + 1 :] = known
    return out


class WindowSampler:
    """Samples one window with the network behind ``runner`` (the ``RENDER_DENOISER`` contract;
    ``sampler``'s ``prediction_type`` says what its ``eps`` output is: the noise for every model so far)."""

    def __init__(self, runner: Runner, sampler: DDIMScheduler, steps: int, start: int) -> None:
        self.runner = runner
        self.sampler = sampler
        self.steps = steps
        self.start = start

    def sample(
        self,
        controls: np.ndarray | Sequence[np.ndarray],
        ref: np.ndarray,
        known: np.ndarray | None,
        rng: np.random.Generator,
        init: np.ndarray | None = None,
    ) -> np.ndarray:
        """Frames (n, 3, S, S) in [-1, 1] for ``controls`` (n, C, S, S), or a sequence of n (C, S, S);
        ``known`` (k, 3, S, S) fixes the first k frames. ``init`` (n, 3, S, S) is what sampling
        starts from (noised to the first step; default: the partial view, the last 3 control channels).

        Known frames are reset to the known frames noised to the current step before every network
        call, so only the new frames are sampled (started, stepped); the network sees the whole window.
        """
        n = len(controls)
        c, s = np.shape(controls[0])[:2]
        k = 0 if known is None else int(known.shape[0])
        if k >= n:
            raise ValueError(f"a window of {n} frames cannot have {k} known frames")
        control = control_tensor(controls, known)
        start = control[0, k:, c - 3 : c] if init is None else np.asarray(init[k:], dtype=np.float32)
        sampler = self.sampler
        sampler.set_timesteps(self.steps, self.start)
        noise = rng.standard_normal((n, 3, s, s), dtype=np.float32)
        x = np.empty((n, 3, s, s), np.float32)
        x[k:] = sampler.start_from(start, noise[k:])
        ref_b = np.asarray(ref, dtype=np.float32)[None]
        for t in sampler.timesteps:
            if known is not None:
                sampler.add_noise(known, noise[:k], t, out=x[:k])
            eps = self.runner.infer(self._feed(x, t, ref_b, control))["eps"][0]
            x[k:] = sampler.step(eps[k:], t, x[k:], generator=rng)
        if known is not None:
            x[:k] = known
        return x

    @staticmethod
    def _feed(x: np.ndarray, t: int, ref: np.ndarray, control: np.ndarray) -> Mapping[str, np.ndarray]:
        return {"x": x[None], "t": np.array([t], np.float32), "ref": ref, "control": control}


class Outpainter:
    """Chains windows over a stream of per-frame controls (one per stream; ``reset`` between streams).

    ``ref`` (3, S, S) is the reference photo every window sees (identity does not drift).
    """

    def __init__(self, windows: WindowSampler, ref: np.ndarray, window: int = 8, seed: int = 0) -> None:
        if window < 2 or window % 2:
            raise ValueError(f"the window must be an even number of frames >= 2, got {window}")
        self.windows = windows
        self.ref = ref
        self.window = window
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        """Forget generated frames and queued controls; the noise restarts from the seed."""
        self._rng = np.random.default_rng(self.seed)
        self._frames: list[np.ndarray] = []  # the last generated frames (up to N - 1) ...
        self._controls: list[np.ndarray] = []  # ... and their controls
        self._pending: list[np.ndarray] = []

    @property
    def history(self) -> list[np.ndarray]:
        """The last generated frames (at most N - 1), oldest first."""
        return list(self._frames)

    def _keep(self, frames: list[np.ndarray], controls: list[np.ndarray]) -> None:
        keep = self.window - 1
        self._frames = (self._frames + frames)[-keep:]
        self._controls = (self._controls + controls)[-keep:]

    def _need(self) -> int:
        return self.window if not self._frames else self.window // 2

    def push(self, control: np.ndarray) -> list[np.ndarray]:
        """Queue one frame's controls; returns the frames a completed window generated (in order)."""
        self._pending.append(control)
        return self._run() if len(self._pending) >= self._need() else []

    def flush(self) -> list[np.ndarray]:
        """Generate the queued frames (the last window is padded by repeating its last controls)."""
        if not self._pending:
            return []
        real = len(self._pending)
        self._pending += [self._pending[-1]] * (self._need() - real)
        return self._run()[:real]

    def _run(self) -> list[np.ndarray]:
        hop = self.window // 2
        new = self._pending
        self._pending = []
        if self._frames:
            known = np.stack(self._frames[-hop:])
            controls = self._controls[-hop:] + new
        else:
            known, controls = None, new
        out = self.windows.sample(controls, self.ref, known, self._rng)
        frames = list(out[len(out) - len(new) :])
        self._keep(frames, new)
        return frames

    def step_one(self, control: np.ndarray) -> np.ndarray:
        """Causal streaming: one new frame, with up to N-1 previous frames known."""
        known = np.stack(self._frames) if self._frames else None
        out = self.windows.sample([*self._controls, control], self.ref, known, self._rng)[-1]
        self._keep([out], [control])
        return out
