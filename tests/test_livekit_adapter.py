"""The LiveKit adapter (integrations/livekit.py) with the real SDK types, no Room and no server:
speech in as ``rtc.AudioFrame``s, timed video and audio frames and segment ends out, interruptions,
and an ``AVSynchronizer`` pacing the generator as LiveKit's ``AvatarRunner`` does."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

pytest.importorskip("livekit.agents", reason="the livekit extra is not installed (pip install .[livekit])")

from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd

from vlogger.engines.audio import resample
from vlogger.engines.stream import StreamFrame
from vlogger.integrations.livekit import (
    VloggerVideoGenerator,
    audio_frame_to_mono,
    build_avatar_stream,
)
from vlogger.runtime.config import VloggerConfig

FPS = 25.0


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    """About 1.5 s of the packaged piper voice (mono float32)."""
    from vlogger.engines.tts import PiperTTS

    tts = PiperTTS(VloggerConfig().tts)
    pcm = np.concatenate([c.pcm for c in tts.synthesize("Hello there, how are you today?", 0.0)])
    return pcm[: int(1.6 * tts.sample_rate)].astype(np.float32), tts.sample_rate


def small_config() -> VloggerConfig:
    cfg = VloggerConfig()
    cfg.output.height = 256
    return cfg


def make_generator(**kw: Any) -> tuple[VloggerVideoGenerator, list[StreamFrame[Any]]]:
    seen: list[StreamFrame[Any]] = []
    stream = build_avatar_stream(small_config(), **kw)
    return VloggerVideoGenerator(stream, on_frame=seen.append), seen


def livekit_frames(pcm: np.ndarray, rate: int, channels: int, ms: int = 20) -> list[rtc.AudioFrame]:
    """``pcm`` as LiveKit frames of ``ms`` milliseconds, int16, interleaved over ``channels``."""
    i16 = np.clip(np.round(pcm * 32767.0), -32768, 32767).astype(np.int16)
    step = rate * ms // 1000
    out = []
    for a in range(0, i16.size, step):
        piece = i16[a : a + step]
        data = np.repeat(piece[:, None], channels, axis=1).ravel()
        out.append(rtc.AudioFrame(data.tobytes(), rate, channels, piece.size))
    return out


async def take(gen: VloggerVideoGenerator, n_video: int, stop_at_end: bool = False) -> list[Any]:
    """Items until ``n_video`` video frames (or the first segment end) came out."""
    items: list[Any] = []
    videos = 0
    async for item in gen:
        items.append(item)
        if isinstance(item, rtc.VideoFrame):
            videos += 1
        if videos >= n_video or (stop_at_end and isinstance(item, AudioSegmentEnd)):
            break
    return items


def audio_seconds(items: list[Any]) -> float:
    return sum(i.duration for i in items if isinstance(i, rtc.AudioFrame))


def test_i420_is_bt601_limited_range_with_block_mean_chroma() -> None:
    from vlogger.engines.avatar import load_avatar
    from vlogger.integrations.livekit import _rgb_to_i420

    rgb = load_avatar(height=256).image[:255, :253]  # odd sizes are padded to even
    i420, w, h = _rgb_to_i420(rgb)
    assert (w, h) == (254, 256) and i420.size == w * h * 3 // 2
    x = np.pad(rgb, ((0, 1), (0, 1), (0, 0)), mode="edge").astype(np.float64)
    y = 16 + 0.257 * x[..., 0] + 0.504 * x[..., 1] + 0.098 * x[..., 2]
    q = x.reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
    u = 128 - 0.148 * q[..., 0] - 0.291 * q[..., 1] + 0.439 * q[..., 2]
    v = 128 + 0.439 * q[..., 0] - 0.368 * q[..., 1] - 0.071 * q[..., 2]
    want = np.concatenate([np.round(p).ravel() for p in (y, u, v)])
    assert np.abs(i420.astype(np.float64) - want).max() <= 1.0


def test_audio_frame_to_mono_averages_channels() -> None:
    data = np.array([1000, 3000, -2000, 0], np.int16)
    mono = audio_frame_to_mono(rtc.AudioFrame(data.tobytes(), 24000, 2, 2))
    np.testing.assert_allclose(mono, np.array([2000, -1000]) / 32768.0)
    assert audio_frame_to_mono(rtc.AudioFrame(b"", 48000, 1, 0)).size == 0


@pytest.mark.parametrize(("rate", "channels"), [(8000, 1), (24000, 2), (48000, 1)])
def test_speech_comes_out_as_timed_frames_with_its_audio(
    speech: tuple[np.ndarray, int], rate: int, channels: int
) -> None:
    pcm, src = speech
    pcm = resample(pcm, src, rate)
    pushed_s = pcm.size / rate

    async def run() -> tuple[list[Any], list[StreamFrame[Any]], VloggerVideoGenerator]:
        gen, seen = make_generator()
        for f in livekit_frames(pcm, rate, channels):
            await gen.push_audio(f)
        await gen.push_audio(rtc.AudioFrame(b"", rate, channels, 0))  # empty frames are fine
        await gen.push_audio(AudioSegmentEnd())
        items = await take(gen, 100, stop_at_end=True)
        items += await take(gen, 5)  # idle after the segment: video only
        await gen.aclose()
        return items, seen, gen

    items, seen, gen = asyncio.run(run())
    videos = [i for i in items if isinstance(i, rtc.VideoFrame)]
    assert len(videos) == len(seen)
    assert all(v.width == gen.width and v.height == gen.height == 256 for v in videos)
    assert all(v.type == rtc.VideoBufferType.I420 for v in videos)
    pts = [f.pts for f in seen]
    assert pts == pytest.approx([i / FPS for i in range(len(pts))])  # 25 fps, increasing
    ends = [k for k, i in enumerate(items) if isinstance(i, AudioSegmentEnd)]
    assert len(ends) == 1
    before, after = items[: ends[0]], items[ends[0] :]
    assert abs(audio_seconds(before) - pushed_s) <= 1.0 / FPS
    assert audio_seconds(after) == 0.0
    assert all(
        a.sample_rate == 48000 and a.num_channels == 1 for a in before if isinstance(a, rtc.AudioFrame)
    )
    played = np.concatenate([audio_frame_to_mono(a) for a in before if isinstance(a, rtc.AudioFrame)])
    assert np.abs(played).max() > 0.05  # the speech itself, not silence
    assert any(f.motion.speaking for f in seen[: int(pushed_s * FPS)])


def test_clear_buffer_mid_speech_stops_sound_and_mouth(speech: tuple[np.ndarray, int]) -> None:
    pcm, src = speech
    pcm = resample(pcm, src, 24000)

    async def run() -> tuple[list[Any], list[StreamFrame[Any]], float, list[Any]]:
        gen, seen = make_generator()
        for f in livekit_frames(pcm, 24000, 1):
            await gen.push_audio(f)
        await gen.push_audio(AudioSegmentEnd())
        items = await take(gen, 12)  # 0.48 s into the speech
        assert audio_seconds(items) > 0.4
        cut = len(seen) / FPS
        gen.clear_buffer()
        after = await take(gen, 25)
        cleared = list(seen)
        # the next segment plays as usual
        for f in livekit_frames(pcm[:12000], 24000, 1):
            await gen.push_audio(f)
        await gen.push_audio(AudioSegmentEnd())
        again = await take(gen, 50, stop_at_end=True)
        await gen.aclose()
        return after, cleared, cut, again

    after, seen, cut, again = asyncio.run(run())
    assert not any(isinstance(i, AudioSegmentEnd) for i in after)  # the runner reports it itself
    late = [a for a in after if isinstance(a, rtc.AudioFrame)]
    assert audio_seconds(late) <= 0.08
    assert all(np.abs(audio_frame_to_mono(a)).max() == 0.0 for a in late[2:])
    assert not any(f.motion.speaking for f in seen if f.pts >= cut + 0.08)
    assert isinstance(again[-1], AudioSegmentEnd)
    assert abs(audio_seconds(again) - 0.5) <= 1.0 / FPS


def test_rates_it_cannot_take_are_dropped_with_a_named_error(
    speech: tuple[np.ndarray, int], caplog: pytest.LogCaptureFixture
) -> None:
    pcm, src = speech

    async def run() -> list[Any]:
        gen, _ = make_generator()
        for rate in (4000, 96000):
            await gen.push_audio(rtc.AudioFrame(np.zeros(800, np.int16).tobytes(), rate, 1, 800))
        for f in livekit_frames(pcm, src, 1):
            await gen.push_audio(f)
        await gen.push_audio(AudioSegmentEnd())
        items = await take(gen, 100, stop_at_end=True)
        await gen.aclose()
        return items

    with caplog.at_level("ERROR", logger="vlogger.integrations.livekit"):
        items = asyncio.run(run())
    dropped = [r.getMessage() for r in caplog.records]
    assert len(dropped) == 2 and all("bad_audio" in m and "8000 to 48000 Hz" in m for m in dropped)
    assert isinstance(items[-1], AudioSegmentEnd)
    assert abs(audio_seconds(items) - pcm.size / src) <= 1.0 / FPS  # the good speech plays in full


def test_idle_clears_and_an_empty_segment() -> None:
    async def run() -> list[Any]:
        gen, _ = make_generator()
        gen.clear_buffer()
        gen.clear_buffer()
        await gen.push_audio(AudioSegmentEnd())  # a segment end with no audio
        items = await take(gen, 10)
        gen.clear_buffer()
        items += await take(gen, 5)
        await gen.aclose()
        return items

    items = asyncio.run(run())
    assert sum(isinstance(i, rtc.VideoFrame) for i in items) == 15
    assert sum(isinstance(i, AudioSegmentEnd) for i in items) == 1
    assert audio_seconds(items) == 0.0


def test_push_audio_waits_instead_of_growing(speech: tuple[np.ndarray, int]) -> None:
    pcm, src = speech

    async def run() -> None:
        gen = VloggerVideoGenerator(build_avatar_stream(small_config(), max_buffered_s=1.0))
        frames = livekit_frames(np.tile(pcm, 2), src, 1)

        async def push_all() -> None:
            for f in frames:
                await gen.push_audio(f)

        task = asyncio.create_task(push_all())
        await asyncio.sleep(0.5)
        assert not task.done()  # nobody reads: the push waits at about 0.9 s ahead
        assert gen._ahead_s() <= 0.9 + 1e-6
        gen.clear_buffer()  # an interruption releases it (the waiting frame is dropped)
        await asyncio.sleep(0.1)
        assert not task.done() and gen._ahead_s() <= 0.9 + 1e-6  # the rest waits again
        await asyncio.wait_for(asyncio.gather(task, take(gen, 150)), 60.0)  # reading lets it through
        await gen.aclose()

    asyncio.run(run())


def test_av_synchronizer_without_a_room_paces_at_25_fps(speech: tuple[np.ndarray, int]) -> None:
    pcm, src = speech

    async def run() -> int:
        gen, _ = make_generator()
        audio = rtc.AudioSource(48000, 1, queue_size_ms=100)
        video = rtc.VideoSource(gen.width, gen.height)
        sync = rtc.AVSynchronizer(
            audio_source=audio, video_source=video, video_fps=FPS, video_queue_size_ms=100
        )
        for f in livekit_frames(pcm, src, 1):
            await gen.push_audio(f)
        await gen.push_audio(AudioSegmentEnd())
        pushed = 0
        t0 = time.perf_counter()
        async for item in gen:
            if isinstance(item, AudioSegmentEnd):
                continue
            await sync.push(item)
            if isinstance(item, rtc.VideoFrame):
                pushed += 1
            if time.perf_counter() - t0 >= 2.0:
                break
        await sync.aclose()
        await audio.aclose()
        await video.aclose()
        await gen.aclose()
        return pushed

    pushed = asyncio.run(run())
    assert 44 <= pushed <= 56
