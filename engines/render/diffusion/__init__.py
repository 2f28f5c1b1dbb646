"""The ``diffusion`` renderer: a few-step temporal diffusion model over the warp frame (see renderer.py)."""

from __future__ import annotations

from .config import DiffusionConfig
from .renderer import TEST_MODEL, DiffusionRenderer
from .sampler import DDIMSampler, DDPMSampler, cosine_alpha_bar
from .window import Outpainter, WindowSampler, window_plan

__all__ = [
    "TEST_MODEL",
    "DDIMSampler",
    "DDPMSampler",
    "DiffusionConfig",
    "DiffusionRenderer",
    "Outpainter",
    "WindowSampler",
    "cosine_alpha_bar",
    "window_plan",
]
