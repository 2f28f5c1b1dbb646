"""Fakes for conversation tests (no tests here): an energy VAD and a scripted recogniser with
modelled latency, and FakeEngines that hand them out (``make_vad``/``make_asr``)."""

from __future__ import annotations

import time

import numpy as np
from fakes import FakeEngines

from vlogger.engines.asr import Segment, Word
from vlogger.engines.errors import InputError


class EnergyVAD:
    """Speech probability 0.9 when a 512-sample chunk is louder than -40 dBFS, else 0."""

    def __init__(self, level: float = 0.01) -> None:
        self.level = level

    def __call__(self, chunk: np.ndarray) -> float:
        return 0.9 if float(np.sqrt(np.mean(np.square(chunk)))) > self.level else 0.0

    def reset(self) -> None:
        pass


class ScriptedASR:
    """Returns the next scripted line (one word per second of audio at most) after ``latency_s``."""

    def __init__(self, lines: list[str] | None = None, latency_s: float = 0.2) -> None:
        self.lines = list(lines or ["hello avatar"])
        self.latency_s = latency_s
        self.calls: list[float] = []

    def segments(self, pcm16k: np.ndarray) -> list[Segment]:
        words = self.transcribe(pcm16k)
        text = " ".join(w.text for w in words)
        return [Segment(words[0].start, words[-1].end, text, tuple(words))] if words else []

    def transcribe(self, pcm16k: np.ndarray) -> list[Word]:
        if np.asarray(pcm16k).ndim != 1:  # the ASR contract: mono only, silence says nothing
            raise InputError(f"audio must be mono 16 kHz with shape (n,), got {np.shape(pcm16k)}")
        time.sleep(self.latency_s)
        self.calls.append(pcm16k.size / 16000)
        if pcm16k.size == 0 or float(np.sqrt(np.mean(np.square(pcm16k, dtype=np.float64)))) < 1e-3:
            return []
        text = self.lines.pop(0) if len(self.lines) > 1 else self.lines[0]
        words = text.split()
        dur = pcm16k.size / 16000
        step = dur / max(1, len(words))
        return [Word(w, i * step, (i + 1) * step) for i, w in enumerate(words)]


class ListeningFakeEngines(FakeEngines):
    """FakeEngines plus an energy VAD and a scripted recogniser."""

    def __init__(self, lines: list[str] | None = None, asr_latency_s: float = 0.2, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.asr = ScriptedASR(lines, asr_latency_s)

    def make_vad(self) -> EnergyVAD:
        return EnergyVAD()

    def make_asr(self) -> ScriptedASR:
        return self.asr


def user_noise(n: int, rng: np.random.Generator, level: float = 0.2) -> np.ndarray:
    """A stand-in for a user's voice: noise (it does not correlate with the avatar's tone)."""
    return (rng.standard_normal(n) * level).astype(np.float32)
