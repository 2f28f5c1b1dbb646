"""The ``warp`` renderer: real-time CPU piecewise-affine warp of the avatar photo."""

from .config import WarpConfig
from .renderer import WarpRenderer

__all__ = ["WarpConfig", "WarpRenderer"]
