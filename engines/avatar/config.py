"""Settings of the avatar engine: photo size, fitting and rig."""

from __future__ import annotations

from dataclasses import dataclass, field

from vlogger.engines.avatar.fit import FitConfig
from vlogger.engines.avatar.rig import RigConfig

__all__ = ["AvatarConfig"]


@dataclass(frozen=True)
class AvatarConfig:
    """How a photo becomes an avatar."""

    height: int = 512
    """Working (output video) height in pixels; the width keeps the photo's aspect ratio, even."""
    max_pixels: float = 40e6
    """Photos over this many pixels are downscaled (JPEGs while decoding; other formats are decoded
    at full size, and refused over ~40 MP: see ``load_image``'s ``max_decode_bytes``)."""
    max_aspect: float = 3.0
    """Photos wider than ``max_aspect`` times their height (or the reverse) are refused."""
    fit: FitConfig = field(default_factory=FitConfig)
    """Face, body and hand fitting."""
    rig: RigConfig = field(default_factory=RigConfig)
    """Expression rig and posing."""
