"""The motion engine interface: audio (with optional phoneme timings) in, one MotionFrame per frame out."""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from vlogger.engines.errors import InputError
from vlogger.engines.types import AudioChunk, MotionFrame

__all__ = ["MotionEngine", "checked_pcm"]


def checked_pcm(chunk: AudioChunk) -> np.ndarray:
    """The chunk's samples as finite float32 mono; InputError for a malformed chunk."""
    pcm = np.asarray(chunk.pcm)
    if pcm.ndim != 1:
        raise InputError(f"audio chunk must be mono with shape (n,), got shape {pcm.shape}")
    if not (chunk.sample_rate > 0):
        raise InputError(f"audio chunk sample_rate must be positive, got {chunk.sample_rate!r}")
    if not math.isfinite(chunk.pts):
        raise InputError(f"audio chunk pts must be a finite number of seconds, got {chunk.pts!r}")
    pcm = pcm.astype(np.float32, copy=False)
    if pcm.size and not np.all(np.isfinite(pcm)):
        pcm = np.nan_to_num(pcm, nan=0.0, posinf=1.0, neginf=-1.0)
    return pcm


class MotionEngine(Protocol):
    """Turns a stream of audio chunks into per-frame motion, in the manner of livekit's
    ``VideoGenerator`` (``push_audio`` / ``clear_buffer``).

    Frames are numbered on the stream clock (frame ``i`` at ``i / fps``). Where no audio covers a
    frame the engine idles (blinks, gaze, small head motion), so a caller can always ask for more
    frames and never sees a frozen avatar.
    """

    fps: float

    @property
    def needs_phonemes(self) -> bool:
        """Whether the mouth reads phoneme timings, so that audio arriving without them (a file,
        an agent's PCM) is worth aligning first. Engines that listen to the sound say False."""
        ...

    def push_audio(self, chunk: AudioChunk) -> None:
        """Queue audio (``chunk.pts`` on the stream clock; chunks may leave gaps of silence)."""

    def end_of_input(self) -> None:
        """No more audio for now: frames up to the end of the pushed audio may be finalised
        without waiting for lookahead."""

    def clear_buffer(self) -> None:
        """Interruption: drop audio not yet turned into frames; the avatar returns to idle."""

    def ready_until(self) -> float:
        """Seconds on the stream clock up to which frames can be produced right now without
        waiting for more audio (``inf`` when the engine would idle beyond its input)."""

    def frames(self, until_pts: float) -> list[MotionFrame]:
        """Produce the next frames, in order, whose pts is < ``until_pts``."""
