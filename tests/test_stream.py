"""AvatarStream (engines/stream.py): timed audio in, timed frames out, with the real warp renderer
and the real default motion engine where it matters, and fake engines for the timing rules."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fakes import FakeAvatar, FakeMotion, FakeRenderer, mouth_open

from vlogger.engines.audio import resample
from vlogger.engines.stream import AvatarStream, BufferFull, StreamConfig
from vlogger.engines.types import AudioChunk

FPS = 25.0


def tone(seconds: float, rate: int, pts: float, freq: float = 220.0, amp: float = 0.5) -> AudioChunk:
    t = np.arange(round(seconds * rate)) / rate
    return AudioChunk(pcm=(amp * np.sin(2 * np.pi * freq * t)).astype(np.float32), sample_rate=rate, pts=pts)


def fake_stream(**config: object) -> AvatarStream[np.ndarray]:
    avatar = FakeAvatar(image=np.full((64, 64, 3), 100, np.uint8))
    return AvatarStream(
        avatar,  # type: ignore[arg-type]
        FakeMotion(FPS),
        FakeRenderer(avatar, 0.0),
        StreamConfig(fps=FPS, **config),  # type: ignore[arg-type]
    )


def test_frames_are_timed_and_carry_the_audio_they_play_during() -> None:
    s = fake_stream(audio_rate=48000)
    pieces = [tone(0.04, 22050, 0.2 + 0.04 * i) for i in range(25)]  # 1 s in 40 ms pieces
    for p in pieces:
        s.push_audio(p)
    s.end_of_segment()
    frames = s.frames(2.0)
    assert [f.index for f in frames] == list(range(50))
    assert all(f.pts == pytest.approx(f.index / FPS) for f in frames)
    assert all(f.audio.size == 1920 for f in frames)  # 48 kHz / 25 fps
    played = np.concatenate([f.audio for f in frames])
    whole = resample(np.concatenate([p.pcm for p in pieces]), 22050, 48000)
    start = round(0.2 * 48000)
    # the speech sits where it was pushed, resampled as one stream (no clicks at the pieces)
    np.testing.assert_allclose(played[start : start + whole.size], whole, atol=1e-4)
    assert np.abs(played[:start]).max() == 0.0 and np.abs(played[start + whole.size :]).max() < 1e-3
    # the mouth opens during the tone and is closed before it
    opened = [mouth_open(f.picture) for f in frames]
    assert max(opened[:4]) == 0.0 and np.mean(opened[8:28]) > 0.5


def test_idle_frames_never_stop() -> None:
    s = fake_stream(audio_rate=None)
    frames = s.frames(4.0)
    assert len(frames) == 100 and all(f.audio.size == 0 for f in frames)
    assert len({f.picture.tobytes() for f in frames}) > 1  # blinks and sway: not a still


def test_full_buffer_refuses_and_keeps_nothing() -> None:
    s = fake_stream(max_buffered_s=2.0)
    s.push_audio(tone(1.5, 16000, 0.0))
    assert s.buffered_s() == pytest.approx(1.5)
    with pytest.raises(BufferFull, match="at most 2 s"):
        s.push_audio(tone(1.0, 16000, 1.5))
    assert s.buffered_s() == pytest.approx(1.5)  # the refused chunk left no trace
    s.frames(1.0)  # playback moves on: room again
    s.push_audio(tone(1.0, 16000, 1.5))
    assert s.buffered_s() == pytest.approx(1.5)


def test_clear_buffer_drops_queued_speech_at_once() -> None:
    s = fake_stream(audio_rate=16000)
    s.push_audio(tone(3.0, 16000, 0.0))
    s.end_of_segment()
    before = s.frames(1.0)
    assert np.mean([mouth_open(f.picture) for f in before[5:]]) > 0.5
    position = s.clear_buffer()
    assert position == pytest.approx(1.0)
    after = s.frames(2.0)
    assert after[0].index == 25  # no frame is repeated or lost
    # no stale speech: silence from the cut on, and the mouth closes within the engine's lookahead
    assert all(np.abs(f.audio).max() == 0.0 for f in after)
    assert all(mouth_open(f.picture) == 0.0 for f in after[2:])
    assert s.clear_buffer() == pytest.approx(2.0)  # twice, and when idle: fine


class _Windowed(FakeRenderer):
    """Holds frames back and returns them two at a time (like the diffusion renderer's windows)."""

    def __init__(self, avatar: FakeAvatar) -> None:
        super().__init__(avatar, 0.0)
        self.held: list[np.ndarray] = []

    def push(self, posed):  # type: ignore[no-untyped-def]
        self.held.append(self.render(posed))
        out, self.held = (self.held, []) if len(self.held) == 2 else ([], self.held)
        return out

    def flush(self):  # type: ignore[no-untyped-def]
        out, self.held = self.held, []
        return out


def test_windowed_renderer_pictures_pair_with_their_frames() -> None:
    avatar = FakeAvatar(image=np.full((64, 64, 3), 100, np.uint8))
    s = AvatarStream(avatar, FakeMotion(FPS), _Windowed(avatar), StreamConfig(fps=FPS, causal=False))  # type: ignore[arg-type]
    got = s.frames(0.2)  # 5 frames: 4 come out, 1 held
    assert [f.index for f in got] == [0, 1, 2, 3]
    rest = s.flush()
    assert [f.index for f in rest] == [4]


def test_wrong_fps_and_malformed_audio_are_refused() -> None:
    avatar = FakeAvatar(image=np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="fps"):
        AvatarStream(avatar, FakeMotion(30.0), FakeRenderer(avatar, 0.0), StreamConfig(fps=25.0))  # type: ignore[arg-type]
    s = fake_stream()
    with pytest.raises(ValueError, match="mono"):
        s.push_audio(AudioChunk(pcm=np.zeros((10, 2), np.float32), sample_rate=16000, pts=0.0))


@pytest.fixture(scope="module")
def real() -> Iterator[AvatarStream[np.ndarray]]:
    from vlogger.engines.avatar import load_avatar
    from vlogger.engines.render.warp import WarpRenderer
    from vlogger.runtime.config import VloggerConfig

    avatar = load_avatar(height=256)
    stream = AvatarStream(
        avatar, VloggerConfig().make_motion(), WarpRenderer(avatar.image, avatar.fit), StreamConfig(fps=FPS)
    )
    yield stream
    stream.close()


def test_real_engines_through_the_stream(real: AvatarStream[np.ndarray]) -> None:
    from vlogger.engines.metrics import mouth_opening
    from vlogger.engines.tts import PiperTTS

    assert real.motion.needs_phonemes is False  # the default learned mouth listens to the sound
    idle = real.frames(1.0)
    assert len(idle) == 25 and idle[0].picture.shape == (256, 256, 3)
    speech = list(PiperTTS().synthesize("Hello there! How are you doing today?", start_pts=1.0))
    for chunk in speech:
        real.push_audio(chunk)
    real.end_of_segment()
    end = speech[-1].end
    frames = real.frames(end + 1.0)
    assert frames[0].index == 25 and [f.index for f in frames] == list(range(25, 25 + len(frames)))
    opening = np.array([mouth_opening(real.avatar.rig.pose(f.motion).face) for f in frames])
    speaking = np.array([1.2 <= f.pts <= end - 0.2 for f in frames])
    after = np.array([f.pts >= end + 0.5 for f in frames])
    assert np.percentile(opening[speaking], 90) > opening[after].max() + 0.03  # opens, then rests
    heard = np.concatenate([f.audio for f in frames if 1.0 <= f.pts < end])
    assert np.abs(heard).max() > 0.05  # the voice travels with the frames


def test_sample_store_matches_a_plain_array_and_stays_small() -> None:
    from vlogger.engines.stream import _Samples

    rng = np.random.default_rng(0)
    ref = np.zeros(3_000_000, np.float32)
    store, base = _Samples(), 0
    for _ in range(3000):  # writes (also before the read position), reads, drops at both ends
        op = rng.integers(0, 3)
        if op == 0:
            start, n = int(rng.integers(base - 50, base + 20000)), int(rng.integers(0, 3000))
            x = rng.standard_normal(n).astype(np.float32)
            store.write(start, x)
            lo = max(start, base)
            if start + n > lo:
                ref[lo : start + n] = x[lo - start :]
        elif op == 1:
            k = int(rng.integers(base, base + 3000))
            store.drop_before(k)
            base = k
        else:
            k = int(rng.integers(base, base + 20000))
            store.drop_from(k)
            ref[k:] = 0.0
        a = int(rng.integers(base - 100, base + 20000))
        b = a + int(rng.integers(0, 5000))
        expect = np.zeros(b - a, np.float32)
        expect[max(a, base) - a :] = ref[max(a, base) : b]
        np.testing.assert_array_equal(store.read(a, b), expect)  # copies of written values
    assert store._buf.size < 200_000  # it held ~1.5 M samples over time, never all at once
