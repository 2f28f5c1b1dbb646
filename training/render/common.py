"""Shared training pieces: window batches from shards, the noising, sampling through the runtime code."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.render.dataset import decode_controls
from training.render.model import TemporalUNet, model_config
from vlogger.engines.backends.torch_runner import TorchRunner
from vlogger.engines.diffusion import cosine_alpha_bar
from vlogger.engines.render.diffusion.window import WindowSampler, frame_scheduler
from vlogger.export.renderer import RENDER_DENOISER

__all__ = ["Batch", "Windows", "load_checkpoint", "sample_window", "save_checkpoint", "torch_alpha_bar"]


@dataclass
class Batch:
    x0: torch.Tensor  # (B, N, 3, S, S) targets in [-1, 1]
    controls: torch.Tensor  # (B, N, 13, S, S)
    ref: torch.Tensor  # (B, 3, S, S)
    known: int  # known leading frames (same for the batch)

    def to(self, device: str | torch.device) -> Batch:
        return Batch(self.x0.to(device), self.controls.to(device), self.ref.to(device), self.known)


def _img(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32).transpose(*range(a.ndim - 3), -1, -3, -2) / 127.5 - 1.0


class Windows:
    """Random windows of N consecutive frames from shards (one split)."""

    def __init__(self, shards: list[dict[str, np.ndarray]], window: int, seed: int = 0) -> None:
        self.shards = [s for s in shards if len(s["frames"]) >= window]
        if not self.shards:
            raise ValueError(f"no shard has {window} frames")
        self.window = window
        self.rng = np.random.default_rng(seed)
        self.x = [_img(s["frames"]) for s in self.shards]
        self.c = [decode_controls(s["controls"]) for s in self.shards]
        self.r = [_img(s["ref"]) for s in self.shards]

    def get(self, i: int, start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sl = slice(start, start + self.window)
        return self.x[i][sl], self.c[i][sl], self.r[i][start]

    def batch(self, size: int, known: int | None = None) -> Batch:
        n = self.window
        if known is None:
            known = int(self.rng.choice([0, n // 2, n - 1]))
        xs, cs, rs = [], [], []
        for _ in range(size):
            i = int(self.rng.integers(len(self.shards)))
            s = int(self.rng.integers(len(self.x[i]) - n + 1))
            x, c, r = self.get(i, s)
            xs.append(x)
            cs.append(c)
            rs.append(r)
        return Batch(
            torch.from_numpy(np.stack(xs)),
            torch.from_numpy(np.stack(cs)),
            torch.from_numpy(np.stack(rs)),
            known,
        )


def torch_alpha_bar(train_steps: int = 1000) -> torch.Tensor:
    return torch.from_numpy(cosine_alpha_bar(train_steps)).float()


def full_control(b: Batch) -> torch.Tensor:
    """Controls + known mask + known frames (the network's control input)."""
    bs, n, _, s, _ = b.x0.shape
    mask = b.x0.new_zeros(bs, n, 1, s, s)
    kf = b.x0.new_zeros(bs, n, 3, s, s)
    if b.known:
        mask[:, : b.known] = 1
        kf[:, : b.known] = b.x0[:, : b.known]
    return torch.cat([b.controls, mask, kf], dim=2)


def sample_window(
    model: TemporalUNet,
    controls: np.ndarray,
    ref: np.ndarray,
    known: np.ndarray | None,
    steps: int,
    start: int,
    seed: int = 0,
    eta: float = 0.0,
) -> np.ndarray:
    """One window sampled with the runtime's numpy scheduler and window code (torch network)."""
    runner = TorchRunner(model, RENDER_DENOISER.input_names, RENDER_DENOISER.output_names)
    ws = WindowSampler(runner, frame_scheduler(1000, eta=eta), steps, start)
    return ws.sample(controls, ref, known, np.random.default_rng(seed))


def save_checkpoint(
    path: Path, model: TemporalUNet, opt: Any, step: int, losses: list[float], extra: dict
) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "opt": opt.state_dict() if opt else None,
            "step": step,
            "losses": losses,
            "config": model.cfg.to_dict(),
            **extra,
        },
        tmp,
    )
    tmp.replace(path)


def load_checkpoint(path: Path) -> tuple[TemporalUNet, dict]:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    model = TemporalUNet(model_config(ck["config"]))
    model.load_state_dict(ck["model"])
    return model, ck


def write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2))
