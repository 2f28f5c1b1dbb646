"""The ``diffusion`` renderer: a few-step temporal diffusion model over the warp frame (see renderer.py)."""

from __future__ import annotations

from .config import DiffusionConfig
from .renderer import TEST_MODEL, DiffusionRenderer
from .window import Outpainter, WindowSampler, frame_scheduler, window_plan

__all__ = [
    "TEST_MODEL",
    "DiffusionConfig",
    "DiffusionRenderer",
    "Outpainter",
    "WindowSampler",
    "frame_scheduler",
    "window_plan",
]
