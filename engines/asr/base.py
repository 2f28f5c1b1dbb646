"""The speech-recognition interface: :class:`ASR`, and the values it returns (:class:`Word`,
:class:`Segment`) on audio at :data:`ASR_SAMPLE_RATE`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["ASR", "ASR_SAMPLE_RATE", "Segment", "Word"]

#: Recognisers listen at 16 kHz (mono float32).
ASR_SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class Word:
    """One recognised word."""

    text: str
    """The word as the recogniser wrote it, stripped of surrounding spaces (may carry punctuation)."""
    start: float
    """Start in seconds from the start of the audio."""
    end: float
    """End in seconds from the start of the audio."""
    probability: float = 1.0
    """The recogniser's word probability (0..1)."""


@dataclass(frozen=True)
class Segment:
    """One recognised phrase (usually bounded by pauses)."""

    start: float
    """Start in seconds from the start of the audio."""
    end: float
    """End in seconds."""
    text: str
    """The segment's text, stripped."""
    words: tuple[Word, ...] = field(default_factory=tuple)
    """Its words with times (may be empty when the recogniser gives no word times)."""


@runtime_checkable
class ASR(Protocol):
    """Speech to text on mono float32 at :data:`ASR_SAMPLE_RATE` (``engines.audio.resample`` gets
    there from any rate). Implementations may be shared between threads: they serialise their own
    calls. Silence (or audio too short to hold a word) gives ``[]``; audio that is not 1-D raises
    :class:`~vlogger.engines.errors.InputError`. Implemented by
    :class:`~vlogger.engines.asr.whisper.WhisperASR`."""

    def segments(self, pcm16k: np.ndarray) -> list[Segment]:
        """The recognised phrases, in order, each with its words (the forced aligner's input)."""
        ...

    def transcribe(self, pcm16k: np.ndarray) -> list[Word]:
        """The recognised words with start/end seconds, in order (what a listening session uses)."""
        ...
