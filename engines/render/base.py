"""The renderer interface: posed frames in, pictures out."""

from __future__ import annotations

from typing import Protocol, TypeVar

import numpy as np

from vlogger.engines.avatar.types import PosedFrame

__all__ = ["Picture", "Renderer"]

Picture = TypeVar("Picture")
"""What a renderer draws: an RGB uint8 (H, W, 3) array for the engines' renderers; the server's
render-process proxy hands out encoder-ready ``av.VideoFrame`` s instead (``Renderer[VideoFrame]``)."""


class Renderer(Protocol[Picture]):
    """A renderer is built for one avatar (``Avatar``) and turns posed frames into pictures.

    Every renderer offers both shapes: :meth:`render` (one frame in, its picture out) and
    :meth:`push` / :meth:`flush` (frames in, pictures out in order, possibly later: a windowed
    renderer returns a window's frames at once). A frame-at-a-time renderer's ``push`` returns
    ``[render(posed)]`` and its ``flush`` returns ``[]``.
    """

    name: str

    def render(self, posed: PosedFrame) -> Picture:
        """The frame's picture, the avatar image's size."""
        ...

    def push(self, posed: PosedFrame) -> list[Picture]:
        """Queue a frame; returns the pictures now complete, oldest first (one per pushed frame in
        total, in push order)."""
        ...

    def flush(self) -> list[Picture]:
        """The pictures of every frame pushed and not yet returned."""
        ...

    def reset(self) -> None:
        """Forget temporal state and frames in flight (a new stream, an interruption)."""
        ...

    def close(self) -> None:
        """Release what the renderer holds (idempotent)."""
        ...


RGBRenderer = Renderer[np.ndarray]
"""The engines' renderers: RGB uint8 arrays out."""
