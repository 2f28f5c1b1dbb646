"""Fake engines with modelled latency, for timeline tests of the server without real inference.

``FakeEngines`` satisfies :class:`vlogger.runtime.engine_factory.EngineFactory`:

* TTS (:class:`vlogger.engines.tts.base.TTS`): ``synth_latency_s`` per sentence, then a 220 Hz
  tone ``seconds_per_char`` long per character;
* motion: jaw open wherever audio is louder than -40 dBFS (with ``latency_s`` lookahead like the
  real engine), a blink every ``blink_period_s`` and a slow head sway when idle;
* avatar + renderer: a grey picture whose mouth bar height is the jaw opening, taking
  ``render_s`` per frame. A photo whose bytes start with ``b"noface"`` raises ``InputError``;
* no ears: ``make_vad`` / ``make_asr`` give ``None``, so a microphone is drained unheard
  (``conversation_fakes.ListeningFakeEngines`` hears).
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlogger.engines.asr.base import ASR
from vlogger.engines.asr.vad import SpeechProbability
from vlogger.engines.errors import BadText, InputError
from vlogger.engines.motion.base import checked_pcm
from vlogger.engines.types import EXPRESSION_NAMES, AudioChunk, MotionFrame

JAW = EXPRESSION_NAMES.index("jaw_open")
BLINK = EXPRESSION_NAMES.index("blink_l")
MOUTH_ROWS = slice(40, 56)
MOUTH_COL = 32


class FakeTTS:
    def __init__(self, synth_latency_s: float, seconds_per_char: float, rate: int = 22050) -> None:
        self.synth_latency_s = synth_latency_s
        self.seconds_per_char = seconds_per_char
        self.sample_rate = rate
        self.calls: list[str] = []

    def warmup(self) -> None:
        pass

    def share(self) -> FakeTTS:
        return FakeTTS(self.synth_latency_s, self.seconds_per_char, self.sample_rate)

    def synthesize(self, text: str, start_pts: float = 0.0) -> Iterator[AudioChunk]:
        if "FAIL" in text:
            raise InputError("fake voice refuses this text")
        if not any(c.isalnum() for c in text):  # the contract: refuse before returning
            raise BadText("text is empty or has nothing to speak")
        sentences = [s.strip() for s in text.replace("!", ".").split(".") if s.strip()]
        return self._stream(sentences, start_pts)

    def _stream(self, sentences: list[str], pts: float) -> Iterator[AudioChunk]:
        for s in sentences:
            self.calls.append(s)
            time.sleep(self.synth_latency_s)
            n = int(len(s) * self.seconds_per_char * self.sample_rate)
            t = np.arange(n) / self.sample_rate
            pcm = (0.5 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
            yield AudioChunk(pcm=pcm, sample_rate=self.sample_rate, pts=pts, text=s)
            pts += n / self.sample_rate


class FakeMotion:
    """MotionEngine protocol: loud audio opens the jaw; blinks and sway when idle."""

    latency_s = 0.05

    needs_phonemes = False

    def __init__(self, fps: float, blink_period_s: float = 2.0) -> None:
        self.fps = fps
        self.blink_period_s = blink_period_s
        self._spans: list[tuple[float, float, np.ndarray, int]] = []
        self._next = 0
        self._known_end = -math.inf
        self._pending = False
        self.cleared = 0

    def push_audio(self, chunk: AudioChunk) -> None:
        pcm = checked_pcm(chunk)  # the contract: malformed chunks are InputErrors
        self._spans.append((chunk.pts, chunk.end, pcm, chunk.sample_rate))
        self._known_end = max(self._known_end, chunk.end)
        self._pending = True

    def end_of_input(self) -> None:
        self._pending = False

    def clear_buffer(self) -> None:
        t = self._next / self.fps
        self._spans = [s for s in self._spans if s[0] < t]
        self._spans = [(a, min(b, t), p, r) for a, b, p, r in self._spans]
        self._known_end = min(self._known_end, t)
        self._pending = False
        self.cleared += 1

    def ready_until(self) -> float:
        return self._known_end - self.latency_s if self._pending else math.inf

    def _loud(self, t: float) -> bool:
        for a, b, pcm, rate in self._spans:
            if a <= t < b:
                i = int((t - a) * rate)
                win = pcm[i : i + int(rate / self.fps)]
                return bool(win.size and np.sqrt(np.mean(win**2)) > 0.01)
        return False

    def frames(self, until_pts: float) -> list[MotionFrame]:
        limit = min(until_pts, self.ready_until())
        out = []
        while self._next / self.fps < limit - 1e-9:
            t = self._next / self.fps
            mf = MotionFrame.neutral(self._next, t)
            speaking = self._loud(t)
            mf.expression[JAW] = 0.8 if speaking else 0.0
            if (t % self.blink_period_s) < 0.12:
                mf.expression[BLINK] = 1.0
            mf.head[6] = 0.02 * math.sin(2 * math.pi * t / 3.0)
            mf.speaking = speaking
            out.append(mf)
            self._next += 1
        return out


@dataclass
class FakePosed:
    index: int
    pts: float
    expression: np.ndarray
    head_x: float


class FakeRig:
    def pose(self, mf: MotionFrame) -> FakePosed:
        return FakePosed(mf.index, mf.pts, mf.expression.copy(), float(mf.head[6]))


@dataclass
class FakeFit:
    faces: int = 1
    """How many faces the fake photo holds."""


@dataclass
class FakeAvatar:
    image: np.ndarray
    fit: FakeFit = field(default_factory=FakeFit)
    rig: FakeRig = field(default_factory=FakeRig)


class FakeRenderer:
    name = "fake"

    def __init__(self, avatar: FakeAvatar, render_s: float) -> None:
        self.avatar = avatar
        self.render_s = render_s

    def render(self, posed: Any) -> np.ndarray:  # a FakePosed (the fakes' rig makes no PosedFrame)
        time.sleep(self.render_s)
        img = self.avatar.image.copy()
        jaw = float(posed.expression[JAW])
        rows = round(jaw * (MOUTH_ROWS.stop - MOUTH_ROWS.start))
        img[MOUTH_ROWS.start : MOUTH_ROWS.start + rows, MOUTH_COL - 8 : MOUTH_COL + 8] = 255
        if posed.expression[BLINK] > 0.5:
            img[16:20, 16:48] = 0
        shift = round(posed.head_x * 200)
        img[60:64, 30 + shift : 34 + shift] = 200
        return img

    def push(self, posed: Any) -> list[np.ndarray]:
        return [self.render(posed)]

    def flush(self) -> list[np.ndarray]:
        return []

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass


def mouth_open(rgb: np.ndarray) -> float:
    """Fraction of the fake mouth bar that is white (0 closed .. 0.8 speaking)."""
    bar = rgb[MOUTH_ROWS, MOUTH_COL - 4 : MOUTH_COL + 4].astype(np.float32).mean(axis=(1, 2))
    return float((bar > 200).mean())


class FakeEngines:
    """The EngineFactory of the fakes; every delay is a setting."""

    def __init__(
        self,
        fps: float = 25.0,
        size: int = 64,
        synth_latency_s: float = 0.05,
        seconds_per_char: float = 0.05,
        render_s: float = 0.002,
        load_s: float = 0.0,
    ) -> None:
        self.fps = fps
        self.size = size
        self.synth_latency_s = synth_latency_s
        self.seconds_per_char = seconds_per_char
        self.render_s = render_s
        self.load_s = load_s
        self.tts: list[FakeTTS] = []

    def make_tts(self) -> FakeTTS:
        tts = FakeTTS(self.synth_latency_s, self.seconds_per_char)
        self.tts.append(tts)
        return tts

    def prepare(self) -> None:
        pass

    def close(self, timeout: float = 5.0) -> None:
        pass

    def make_motion(self, index: int) -> FakeMotion:
        return FakeMotion(self.fps)

    def load_avatar(self, source: bytes | str | None) -> FakeAvatar:
        time.sleep(self.load_s)
        if isinstance(source, bytes) and source.startswith(b"noface"):
            raise InputError("no face found in the photo")
        grey = 100 if source is None else 150
        return FakeAvatar(image=np.full((self.size, self.size, 3), grey, dtype=np.uint8))

    def make_renderer(self, avatar: FakeAvatar) -> FakeRenderer:
        return FakeRenderer(avatar, self.render_s)

    def make_vad(self) -> SpeechProbability | None:
        return None

    def make_asr(self) -> ASR | None:
        return None


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test function under ``asyncio.run`` (no pytest plugin needed)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper
