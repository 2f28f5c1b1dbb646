"""Pick a renderer by name: ``"warp"`` (CPU, real time) or ``"diffusion"`` (temporal diffusion)."""

from __future__ import annotations

from typing import Any

import numpy as np

from vlogger.engines.errors import InputError

__all__ = ["RENDERERS", "make_renderer"]

#: Names :func:`make_renderer` knows.
RENDERERS = ("warp", "diffusion")


def make_renderer(name: str, image: np.ndarray, fit: Any, warp: Any = None, diffusion: Any = None) -> Any:
    """A renderer of ``image`` (fitted as ``fit``): ``warp`` takes a ``WarpConfig``,
    ``diffusion`` a ``DiffusionConfig`` (plus the ``WarpConfig`` of its partial view)."""
    if name == "warp":
        from vlogger.engines.render.warp import WarpRenderer

        return WarpRenderer(image, fit, warp)
    if name == "diffusion":
        from vlogger.engines.render.diffusion import DiffusionRenderer

        return DiffusionRenderer(image, fit, diffusion, warp)
    raise InputError(f"unknown renderer {name!r}; choose one of {', '.join(RENDERERS)}")
