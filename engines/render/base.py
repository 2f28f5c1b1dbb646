"""The renderer interface: one posed frame in, one RGB image out."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from vlogger.engines.avatar.types import PosedFrame

__all__ = ["Renderer"]


class Renderer(Protocol):
    """A renderer is built for one avatar (``Avatar``) and turns posed frames into pictures."""

    name: str

    def render(self, posed: PosedFrame) -> np.ndarray:
        """Return the frame as uint8 RGB, shape (H, W, 3), the avatar image's size."""

    def reset(self) -> None:
        """Forget temporal state (a new utterance stream or an avatar switch)."""
