"""Timeline tests of one session's pipeline with fake engines (modelled latency), in the manner of
livekit's interruption test: the paced tracks are pulled like aiortc's senders pull them and every
event, frame and audio packet is timed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest
from fakes import FakeEngines, mouth_open, run_async

from vlogger.runtime.pipeline import AudioSegment, Pipeline, Utterance
from vlogger.runtime.protocol import ProtocolError
from vlogger.runtime.server_config import ServerConfig
from vlogger.runtime.tracks import AvatarVideoTrack, SpeechAudioTrack


class Harness:
    def __init__(self, engines: FakeEngines | None = None, **cfg: Any) -> None:
        self.engines = engines or FakeEngines()
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.pipe = Pipeline(
            self.engines,
            self.engines.load_avatar(None),
            ServerConfig(**cfg),
            lambda e: self.events.append((time.monotonic(), e)),
        )
        p = self.pipe
        self.video_track = AvatarVideoTrack(p.clock, p.frames, p.fps, on_sent=p.on_video_sent)
        self.audio_track = SpeechAudioTrack(p.clock, p.timeline, on_marks=p.on_audio_marks)
        self.video: list[tuple[float, float, float, np.ndarray]] = []  # (sent, pts s, mouth, rgb)
        self.audio: list[tuple[float, float, float]] = []  # (sent, pts s, peak)
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Harness:
        self.pipe.start()
        assert await asyncio.to_thread(self.pipe.ready.wait, 5.0)
        return self

    def start_media(self) -> None:
        async def pull_video() -> None:
            while True:
                f = await self.video_track.recv()
                rgb = f.to_ndarray(format="rgb24")
                self.video.append((time.monotonic(), float(f.pts * f.time_base), mouth_open(rgb), rgb))

        async def pull_audio() -> None:
            while True:
                f = await self.audio_track.recv()
                peak = float(np.abs(f.to_ndarray()).max()) / 32768.0
                self.audio.append((time.monotonic(), float(f.pts * f.time_base), peak))

        self._tasks += [asyncio.ensure_future(pull_video()), asyncio.ensure_future(pull_audio())]

    async def __aexit__(self, *exc: object) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.to_thread(self.pipe.close)

    def say(self, text: str, id: str) -> float:
        self.pipe.enqueue(Utterance(id=id, text=text))
        return time.monotonic()

    def event_time(self, id: str, state: str) -> float | None:
        for t, e in self.events:
            if e.get("type") == "utterance" and e.get("id") == id and e.get("state") == state:
                return t
        return None

    async def wait(self, id: str, state: str, timeout: float = 5.0) -> float:
        deadline = time.monotonic() + timeout
        while (t := self.event_time(id, state)) is None:
            assert time.monotonic() < deadline, f"{id} never reached {state}: {self.events}"
            await asyncio.sleep(0.005)
        return t


@run_async
async def test_say_is_queued_started_done_with_lips_on_the_sound() -> None:
    async with Harness() as h:
        h.start_media()
        await asyncio.sleep(0.4)
        t_say = h.say("Hello there. How are you today", "u1")  # fake TTS: 50 ms per sentence
        t_start = await h.wait("u1", "started")
        t_done = await h.wait("u1", "done", timeout=8)
        await asyncio.sleep(0.2)
    states = [e["state"] for _, e in h.events if e.get("type") == "utterance"]
    assert states == ["started", "done"]  # "queued" is the session's event
    # first sound within TTS latency + render-ahead (+ a frame of rounding + slack)
    assert t_start - t_say < 0.05 + 0.12 + 0.04 + 0.1
    speech = [(pts, peak) for _, pts, peak in h.audio if peak > 0.1]
    first_sound, last_sound = speech[0][0], speech[-1][0]
    opened = [pts for _, pts, m, _ in h.video if m > 0.3]
    # the first open mouth is the frame whose time is the first sound's (same clock, same pts)
    assert opened[0] == pytest.approx(first_sound, abs=0.021)
    assert opened[-1] == pytest.approx(last_sound, abs=0.041)
    expected = (len("Hello there") + len("How are you today")) * 0.05
    assert last_sound + 0.02 - first_sound == pytest.approx(expected, abs=0.05)
    assert t_done - t_start == pytest.approx(expected, abs=0.1)
    # video kept its rate through the whole utterance, every frame freshly rendered
    sent = [t for t, *_ in h.video if t_say <= t <= t_done]
    assert len(sent) / (t_done - t_say) == pytest.approx(25, abs=1.5)
    assert h.video_track.counters.repeats == 0
    assert h.pipe.last_first_frame_ms is not None and h.pipe.last_first_frame_ms < 350


@run_async
async def test_interrupt_silences_and_returns_to_idle_within_200ms() -> None:
    async with Harness() as h:
        h.start_media()
        await asyncio.sleep(0.3)
        h.say("This is a long sentence that keeps going for a while. And another one", "u1")
        h.say("Queued behind it", "u2")
        await h.wait("u1", "started")
        await asyncio.sleep(0.4)
        t_int = time.monotonic()
        cut = h.pipe.interrupt()
        assert {u.id for u in cut} == {"u1", "u2"}
        await asyncio.sleep(0.6)
        t_new = h.say("Back again", "u3")
        await h.wait("u3", "done", timeout=5)
        engines_motion = h.pipe._stream.motion
    assert h.event_time("u1", "done") is None and h.event_time("u2", "started") is None
    assert engines_motion.cleared == 1
    after = [(t, peak) for t, _, peak in h.audio if t_int + 0.2 <= t < t_new]
    assert after and max(p for _, p in after) == 0.0, "audio still playing 200 ms after interrupt"
    mouths = [m for t, _, m, _ in h.video if t_int + 0.2 <= t < t_new]
    assert mouths and max(mouths) == 0.0, "mouth still open 200 ms after interrupt"
    fresh = [t for t, *_ in h.video if t_int <= t < t_new]
    assert len(fresh) / (t_new - t_int) == pytest.approx(25, abs=2)  # idle video never paused


@run_async
async def test_queue_full_at_33_and_say_before_media_plays_once_connected() -> None:
    async with Harness(FakeEngines(synth_latency_s=0.0)) as h:
        for i in range(32):
            h.say(f"word {i}", f"u{i}")
        with pytest.raises(ProtocolError) as info:
            h.say("one too many", "u32")
        assert info.value.code == "queue_full" and info.value.id == "u32"
        assert h.pipe.unfinished() == 32
        await asyncio.sleep(0.3)
        assert h.event_time("u0", "started") is None  # no media yet: nothing is "sent"
        h.start_media()
        await h.wait("u0", "started", timeout=2)
        await h.wait("u1", "started", timeout=3)
        h.pipe.enqueue(Utterance(id="u33", text="room again"))  # a finished one made room
        h.pipe.interrupt()


@run_async
async def test_idle_video_keeps_25fps_with_blinks_and_motion() -> None:
    async with Harness() as h:
        h.start_media()
        await asyncio.sleep(2.6)
    t0, t1 = h.video[5][0], h.video[-1][0]
    assert (len(h.video) - 6) / (t1 - t0) == pytest.approx(25, abs=1.5)
    assert h.video_track.counters.repeats <= 2
    pts = [p for _, p, _, _ in h.video]
    assert np.allclose(np.diff(pts), 0.04, atol=1e-6)  # the 90 kHz pts advance one frame at a time
    blinks = [rgb[17, 32, 0] == 0 for *_, rgb in h.video]
    assert any(blinks) and not all(blinks)
    sway = {int(np.argmax(rgb[61, :, 0] == 200)) for *_, rgb in h.video}
    assert len(sway) >= 3
    assert all(peak == 0.0 for *_, peak in h.audio)


@run_async
async def test_audio_segment_plays_before_audio_end() -> None:
    async with Harness() as h:
        h.start_media()
        await asyncio.sleep(0.3)
        seg = AudioSegment(16000, 60.0)
        h.pipe.enqueue(Utterance(id="a1", audio=seg))
        tone = (0.5 * np.sin(2 * np.pi * 200 * np.arange(1600) / 16000) * 32767).astype("<i2").tobytes()
        for _ in range(6):  # 0.6 s in real time, 0.1 s per message
            seg.append(tone)
            await asyncio.sleep(0.1)
        started = h.event_time("a1", "started")
        assert started is not None, "segment did not start before audio.end"
        seg.close()
        await h.wait("a1", "done", timeout=3)
    loud = [pts for _, pts, peak in h.audio if peak > 0.2]
    assert loud[-1] + 0.02 - loud[0] == pytest.approx(0.6, abs=0.06)
    opened = [pts for _, pts, m, _ in h.video if m > 0.3]
    assert opened and abs(opened[0] - loud[0]) <= 0.021


@run_async
async def test_tts_failure_reports_error_and_moves_on() -> None:
    async with Harness() as h:
        h.start_media()
        h.say("please FAIL now", "bad")
        h.say("fine words", "good")
        await h.wait("good", "done", timeout=4)
    errors = [e for _, e in h.events if e["type"] == "error"]
    assert errors and errors[0]["id"] == "bad" and errors[0]["code"] == "bad_text"
    assert h.event_time("bad", "interrupted") is not None
