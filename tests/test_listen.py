"""Speech in with the real engines: streaming Silero VAD, utterance cutting, whisper tiny.en,
any microphone rate or layout, long silence and noise, and the avatar's own voice in the mic."""

from __future__ import annotations

import re
import time
from functools import cache
from typing import Any

import numpy as np
import pytest

from vlogger.engines.asr.vad import VAD_CHUNK, SileroVAD, SpeechSegmenter, SpeechStart, silero_model_path
from vlogger.engines.audio import resample
from vlogger.runtime.listen import ListenConfig, Listener, PlayedAudio

USER = "Please stop talking and listen to me now."
AVATAR = "The quick brown fox jumps over the lazy dog."


@cache
def _speech(text: str) -> np.ndarray:
    from vlogger.engines.tts import PiperTTS

    chunks = list(PiperTTS().synthesize(text, 0.0))
    return resample(np.concatenate([c.pcm for c in chunks]), chunks[0].sample_rate, 16000)


@cache
def _asr() -> Any:
    from vlogger.engines.asr import ASRConfig, WhisperASR

    asr = WhisperASR(ASRConfig(cpu_threads=1))
    asr.warmup()
    return asr


def wer(ref: str, hyp: str) -> float:
    r = re.findall(r"[a-z']+", ref.lower())
    h = re.findall(r"[a-z']+", hyp.lower())
    d = np.arange(len(h) + 1)
    for i in range(1, len(r) + 1):
        prev, d[0] = d.copy(), i
        for j in range(1, len(h) + 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r[i - 1] != h[j - 1]))
    return float(d[len(h)]) / max(1, len(r))


def _speech_bounds(x: np.ndarray) -> tuple[float, float]:
    loud = np.flatnonzero(np.abs(x) > 0.02)
    return loud[0] / 16000, loud[-1] / 16000


def _run(
    mic16: np.ndarray,
    rate: int = 16000,
    stereo: bool = False,
    played: PlayedAudio | None = None,
    expect_transcript: bool = True,
) -> tuple[list[dict[str, Any]], Listener]:
    """Feed ``mic16`` (16 kHz) as 20 ms frames at ``rate``; stream time follows the samples."""
    events: list[dict[str, Any]] = []
    now = [0.0]
    listener = Listener(SileroVAD(), _asr(), ListenConfig(), lambda: now[0], events.append, played=played)
    listener.start()
    x = resample(mic16, 16000, rate) if rate != 16000 else mic16
    n = rate // 50
    for k in range(0, x.size - n + 1, n):
        block = x[k : k + n]
        now[0] = (k + n) / rate
        listener.feed(np.stack([block, block * 0.8], axis=1) if stereo else block, rate)
        # a real microphone is paced; keep the backlog far below the listener's drop limit
        while listener._in_samples > 16000:
            time.sleep(0.005)
    assert listener.dropped_s == 0.0
    deadline = time.monotonic() + (30 if expect_transcript else 1.5)
    while not any(e["type"] == "transcript" for e in events) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    listener.close()
    return events, listener


def test_streaming_vad_matches_faster_whispers_whole_file_pass() -> None:
    from faster_whisper.vad import SileroVADModel

    x = np.concatenate([np.zeros(8000, np.float32), _speech(USER), np.zeros(8000, np.float32)])
    x = x[: x.size // VAD_CHUNK * VAD_CHUNK]
    whole = SileroVADModel(str(silero_model_path()))(x).reshape(-1)
    vad = SileroVAD()
    streamed = np.array([vad(x[k : k + VAD_CHUNK]) for k in range(0, x.size, VAD_CHUNK)])
    assert np.abs(streamed - whole).max() < 1e-5
    assert whole.max() > 0.9 and whole[:10].max() < 0.2


def test_onset_needs_250ms_and_blips_do_not_count() -> None:
    speech = _speech(USER)
    t0, t1 = _speech_bounds(speech)
    pad = np.zeros(16000, np.float32)
    seg = SpeechSegmenter(SileroVAD())
    events = seg.push(np.concatenate([pad, speech, pad, pad])) + seg.flush()
    starts = [e for e in events if isinstance(e, SpeechStart)]
    ends = [e for e in events if not isinstance(e, SpeechStart)]
    assert len(starts) == 1 and len(ends) == 1
    assert abs(starts[0].start - (1.0 + t0)) < 0.1
    assert 0.25 <= starts[0].confirmed - (1.0 + t0) < 0.45  # min speech + VAD lag, under 600 ms
    assert abs(ends[0].end - (1.0 + t1)) < 0.15
    # a 120 ms blip of speech is not an onset
    blip = speech[int(t0 * 16000) + 3000 : int(t0 * 16000) + 3000 + 1920]
    seg = SpeechSegmenter(SileroVAD())
    assert seg.push(np.concatenate([pad, blip, pad])) + seg.flush() == []


@pytest.mark.parametrize(("rate", "stereo"), [(8000, False), (44100, True), (48000, True)])
def test_transcript_at_any_mic_rate(rate: int, stereo: bool) -> None:
    speech = _speech(USER)
    t0, t1 = _speech_bounds(speech)
    pad = np.zeros(16000, np.float32)
    events, _ = _run(np.concatenate([pad, speech, pad, pad]), rate, stereo)
    kinds = [(e["type"], e.get("state")) for e in events]
    assert kinds == [("user", "speaking"), ("user", "silent"), ("transcript", None)], events
    tr = events[-1]
    assert tr["final"] is True and wer(USER, tr["text"]) < 0.2, tr
    assert abs(tr["t_start"] - (1.0 + t0)) < 0.2 and abs(tr["t_end"] - (1.0 + t1)) < 0.25


def test_silence_and_noise_make_no_events_and_hold_no_memory() -> None:
    rng = np.random.default_rng(0)
    events: list[dict[str, Any]] = []
    now = [0.0]
    listener = Listener(SileroVAD(), _asr(), ListenConfig(), lambda: now[0], events.append)
    listener.start()
    for second in range(120):  # two minutes of silence, then white and hum noise
        if second < 100:
            x = np.zeros(16000, np.float32)
        elif second < 110:
            x = (rng.standard_normal(16000) * 0.05).astype(np.float32)
        else:
            x = (0.3 * np.sin(2 * np.pi * 50 * np.arange(16000) / 16000)).astype(np.float32)
        now[0] = second + 1.0
        listener.feed(x, 16000)
        while not listener._in.empty():
            time.sleep(0.005)
    time.sleep(0.2)
    listener.close()
    assert events == []
    assert listener.dropped_s == 0.0
    assert len(listener.segmenter._history) <= listener.segmenter._history.maxlen  # type: ignore[operator]


def test_the_avatars_own_voice_is_ignored_but_the_user_over_it_is_heard() -> None:
    avatar, user = _speech(AVATAR), _speech(USER)
    rng = np.random.default_rng(0)
    played = PlayedAudio()
    played.add(1.0, avatar)
    mic = np.zeros(16000 * 6, np.float32)
    d = int(1.12 * 16000)  # heard back 120 ms later at half level, with a little noise
    mic[d : d + avatar.size] += 0.5 * avatar
    mic += (rng.standard_normal(mic.size) * 0.003).astype(np.float32)
    events, listener = _run(mic, 48000, played=played, expect_transcript=False)
    assert events == [], events
    assert listener.echo is not None and listener.echo.suppressed_chunks > 20
    u = int(2.0 * 16000)
    mic[u : u + user.size] += 0.7 * user
    events, _ = _run(mic, 48000, played=played)
    on = [e for e in events if e["type"] == "user" and e["state"] == "speaking"]
    assert len(on) == 1 and abs(on[0]["t"] - (2.0 + _speech_bounds(user)[0])) < 0.15
    tr = [e for e in events if e["type"] == "transcript"]
    assert tr and wer(USER, tr[0]["text"]) < 0.2, tr
