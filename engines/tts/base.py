"""The text-to-speech interface: :class:`TTS` (what a render and a server session call)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from vlogger.engines.types import AudioChunk

__all__ = ["TTS"]


@runtime_checkable
class TTS(Protocol):
    """A voice. Implemented by :class:`~vlogger.engines.tts.piper_tts.PiperTTS`.

    :meth:`synthesize` is what speaking needs; a server also calls :meth:`warmup` once (so the
    first session does not wait for the model) and :meth:`share` once per session.
    """

    @property
    def sample_rate(self) -> int:
        """Sample rate of every chunk :meth:`synthesize` yields, in Hz."""
        ...

    def synthesize(self, text: str, start_pts: float = 0.0) -> Iterator[AudioChunk]:
        """Speak ``text``: one :class:`~vlogger.engines.types.AudioChunk` per sentence (or shorter
        unit), in order, each yielded as soon as it is ready, on a continuous clock from
        ``start_pts`` (chunk ``k`` starts where chunk ``k-1`` ended), with phoneme timings when the
        voice knows them (else the motion engine listens to the audio). Text that cannot be spoken
        (empty, too long, nothing to say) raises :class:`~vlogger.engines.errors.InputError` before
        this returns."""
        ...

    def warmup(self) -> None:
        """Load the voice now (it otherwise loads on the first chunk)."""
        ...

    def share(self) -> TTS:
        """Another voice for another thread (a server session) over this one's loaded model: no
        second copy in memory, no load time. Each voice serialises its own :meth:`synthesize`."""
        ...
