"""The pipecat adapter (``vlogger.integrations.pipecat``) in a real pipecat pipeline, in memory.

Real speech (the packaged piper voice, resampled to 24 and 16 kHz) goes in as ``TTSAudioRawFrame``s;
avatar images and the audio that plays with them come out at 25 fps on the wall clock. Skipped where
pipecat is not installed (``pip install -e ".[pipecat]"``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pipecat", reason="pipecat is not installed (pip install -e '.[pipecat]')")

from pipecat.frames.frames import (
    Frame,
    InterruptionFrame,
    MetricsFrame,
    OutputImageRawFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
)
from pipecat.metrics.metrics import TTFBMetricsData
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.task import PipelineParams
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import SleepFrame, run_test

from vlogger.engines.audio import resample
from vlogger.engines.stream import AvatarStream, StreamConfig
from vlogger.integrations.pipecat import VloggerVideoService, pcm_from_frame

FPS = 25.0
DT = 1.0 / FPS
HEIGHT = 192


class Recorder(FrameProcessor):
    """Notes every downstream frame with its arrival time."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[tuple[float, Frame]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM:
            self.frames.append((time.monotonic(), frame))
        await self.push_frame(frame, direction)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """About two seconds of piper speech, mono float32 at 22,050 Hz."""
    from vlogger.engines.tts import PiperTTS

    tts = PiperTTS()
    chunks = list(tts.synthesize("Hello there! How are you today?"))
    assert tts.sample_rate == 22050
    return np.concatenate([c.pcm for c in chunks]).astype(np.float32)


@pytest.fixture(scope="module")
def engines() -> Iterator[Any]:
    """The default avatar, motion models and config, built once; each service gets a new stream."""
    from vlogger.engines.avatar import load_avatar
    from vlogger.engines.render.warp import WarpRenderer
    from vlogger.runtime.config import VloggerConfig

    config = VloggerConfig()
    avatar = load_avatar(height=HEIGHT)
    models = config.load_motion_models()

    def factory(rate: int) -> AvatarStream[np.ndarray]:
        renderer = WarpRenderer(avatar.image, avatar.fit)
        motion = config.make_motion(models=models)
        return AvatarStream(avatar, motion, renderer, StreamConfig(fps=FPS, audio_rate=rate))

    factory(24000).frames(DT)  # warm the models
    yield avatar, factory


def tts_frames(pcm: np.ndarray, rate: int, channels: int = 1, piece_s: float = 0.02) -> list[Frame]:
    """``pcm`` (22,050 Hz) resampled to ``rate`` and cut into TTS audio frames of ``piece_s``."""
    at_rate = resample(pcm, 22050, rate)
    pcm16 = (np.clip(at_rate, -1, 1) * 32767).astype("<i2")
    if channels == 2:
        pcm16 = np.repeat(pcm16, 2)
    step = round(piece_s * rate) * channels
    return [
        TTSAudioRawFrame(audio=pcm16[i : i + step].tobytes(), sample_rate=rate, num_channels=channels)
        for i in range(0, pcm16.size, step)
    ]


def run(
    service: VloggerVideoService, frames: list[Frame], params: PipelineParams | None = None
) -> list[tuple[float, Frame]]:
    recorder = Recorder()
    asyncio.run(
        run_test(
            Pipeline([service, recorder]), frames_to_send=frames, start_timeout=5.0, pipeline_params=params
        )
    )
    return recorder.frames


def images(rec: list[tuple[float, Frame]]) -> list[tuple[float, OutputImageRawFrame]]:
    return [(t, f) for t, f in rec if isinstance(f, OutputImageRawFrame)]


def audio_s(rec: list[tuple[float, Frame]]) -> float:
    return sum(f.num_frames / f.sample_rate for _, f in rec if isinstance(f, TTSAudioRawFrame))


def check_images(rec: list[tuple[float, Frame]], avatar: Any) -> list[tuple[float, OutputImageRawFrame]]:
    shown = images(rec)
    height, width = avatar.image.shape[:2]
    assert all(f.size == (width, height) and f.format == "RGB" for _, f in shown)
    assert all(len(f.image) == width * height * 3 and f.sync_with_audio for _, f in shown)
    index = [f.metadata["vlogger"]["index"] for _, f in shown]
    assert index == sorted(set(index))  # in order, never twice (idle frames may be skipped when late)
    span = shown[-1][0] - shown[0][0]
    assert abs((index[-1] - index[0]) / span - FPS) < 2.5  # paced at 25 fps on the wall clock
    return shown


@pytest.mark.parametrize("rate", [8000, 24000, 48000])
def test_speech_comes_out_as_images_and_audio_at_25_fps(rate: int, speech: np.ndarray, engines: Any) -> None:
    avatar, factory = engines
    service = VloggerVideoService(stream_factory=factory, audio_out_sample_rate=rate)
    sent = tts_frames(speech, rate)
    duration = speech.size / 22050
    rec = run(service, [SleepFrame(0.4), *sent, TTSStoppedFrame(), SleepFrame(duration + 0.8)])
    shown = check_images(rec, avatar)
    said = [f for _, f in shown if f.metadata["vlogger"]["speech"]]
    said_index = [f.metadata["vlogger"]["index"] for f in said]
    assert said_index == list(range(said_index[0], said_index[0] + len(said)))  # speech never skipped
    assert abs(len(said) - duration * FPS) <= 1.0
    assert any(
        not f.metadata["vlogger"]["speech"]
        for _, f in shown[: shown.index(next(p for p in shown if p[1].metadata["vlogger"]["speech"]))]
    )  # idle before
    assert not shown[-1][1].metadata["vlogger"]["speech"]  # and after
    assert abs(audio_s(rec) - duration) <= DT
    # each audio frame right after the image it plays with; the stop after the last of them
    kinds = [f for _, f in rec if isinstance(f, OutputImageRawFrame | TTSAudioRawFrame | TTSStoppedFrame)]
    for i, f in enumerate(kinds):
        if isinstance(f, TTSAudioRawFrame):
            assert f.sample_rate == rate and f.num_channels == 1
            assert kinds[i - 1].metadata["vlogger"]["index"] == f.metadata["vlogger"]["index"]
    stop = next(i for i, f in enumerate(kinds) if isinstance(f, TTSStoppedFrame))
    assert not any(isinstance(f, TTSAudioRawFrame) for f in kinds[stop:])
    heard = np.concatenate([np.frombuffer(f.audio, "<i2") for f in kinds if isinstance(f, TTSAudioRawFrame)])
    assert np.abs(heard).max() > 0.1 * 32767  # the voice, not silence


def test_interruption_mid_speech_stops_speech_within_80_ms(speech: np.ndarray, engines: Any) -> None:
    avatar, factory = engines
    service = VloggerVideoService(stream_factory=factory)
    long = np.concatenate([speech, speech])
    sent = tts_frames(long, 24000)
    rec = run(
        service,
        [SleepFrame(0.3), *sent, TTSStoppedFrame(), SleepFrame(1.2), InterruptionFrame(), SleepFrame(0.8)],
    )
    cut = next(t for t, f in rec if isinstance(f, InterruptionFrame))
    late = [f for t, f in rec if t > cut + 0.08]
    assert not any(isinstance(f, TTSAudioRawFrame | TTSStoppedFrame) for f in late)
    assert not any(f.metadata["vlogger"]["speech"] for f in late if isinstance(f, OutputImageRawFrame))
    assert len(images([(t, f) for t, f in rec if t > cut])) >= 0.6 * FPS  # idling goes on
    assert 0.5 < audio_s(rec) < long.size / 22050 - 1.0
    check_images(rec, avatar)


def test_interruptions_when_idle_and_twice_then_speech(speech: np.ndarray, engines: Any) -> None:
    avatar, factory = engines
    service = VloggerVideoService(stream_factory=factory)
    sent = tts_frames(speech, 24000)
    rec = run(
        service,
        [
            SleepFrame(0.3),
            InterruptionFrame(),
            SleepFrame(0.1),
            InterruptionFrame(),
            InterruptionFrame(),
            *sent,
            TTSStoppedFrame(),
            SleepFrame(speech.size / 22050 + 0.6),
        ],
    )
    assert sum(isinstance(f, InterruptionFrame) for _, f in rec) == 3
    assert abs(audio_s(rec) - speech.size / 22050) <= DT  # speech after them plays in full
    check_images(rec, avatar)


def test_empty_frames_and_stereo(speech: np.ndarray, engines: Any) -> None:
    avatar, factory = engines
    service = VloggerVideoService(stream_factory=factory)
    sent = tts_frames(speech, 24000, channels=2)
    empty = [TTSAudioRawFrame(audio=b"", sample_rate=24000, num_channels=1) for _ in range(3)]
    frames = [
        SleepFrame(0.3),
        empty[0],
        *sent[:10],
        empty[1],
        *sent[10:],
        empty[2],
        TTSStoppedFrame(),
        SleepFrame(speech.size / 22050 + 0.6),
    ]
    rec = run(service, frames)
    assert abs(audio_s(rec) - speech.size / 22050) <= DT
    check_images(rec, avatar)


def test_rates_it_cannot_take_are_dropped_with_a_named_error(
    speech: np.ndarray, engines: Any, caplog: pytest.LogCaptureFixture
) -> None:
    avatar, factory = engines
    service = VloggerVideoService(stream_factory=factory)
    sent = tts_frames(speech, 24000)
    bad = [
        TTSAudioRawFrame(audio=np.zeros(400, "<i2").tobytes(), sample_rate=rate, num_channels=1)
        for rate in (4000, 96000, 1)
    ]
    with caplog.at_level("ERROR", logger="vlogger.integrations.pipecat"):
        rec = run(
            service, [SleepFrame(0.3), *bad, *sent, TTSStoppedFrame(), SleepFrame(speech.size / 22050 + 0.6)]
        )
    dropped = [r.getMessage() for r in caplog.records if "Hz" in r.getMessage()]
    assert len(dropped) == 3 and all("bad_audio" in m and "8000 to 48000 Hz" in m for m in dropped)
    assert abs(audio_s(rec) - speech.size / 22050) <= DT  # the speech after them plays in full
    check_images(rec, avatar)


def test_reports_ttfb_from_first_audio_to_first_speaking_image(speech: np.ndarray, engines: Any) -> None:
    _, factory = engines
    service = VloggerVideoService(stream_factory=factory)
    sent = tts_frames(speech[:22050], 24000)
    gap = [TTSStoppedFrame(), SleepFrame(1.5)]
    params = PipelineParams(enable_metrics=True, report_only_initial_ttfb=False)
    rec = run(service, [SleepFrame(0.3), *sent, *gap, *sent, *gap], params)
    ttfb = [
        (t, d.value)
        for t, f in rec
        if isinstance(f, MetricsFrame)
        for d in f.data
        if isinstance(d, TTFBMetricsData) and d.processor == service.name and d.value != 0.0
    ]  # (pipecat reports a zero for every metrics-generating processor at start)
    assert len(ttfb) == 2  # one per piece of speech
    for t, value in ttfb:
        started = t - value  # when the first audio of that piece went in
        first = next(
            ti
            for ti, f in rec
            if ti >= started and isinstance(f, OutputImageRawFrame) and f.metadata["vlogger"]["speech"]
        )
        # reported with that image (a MetricsFrame is a system frame: it may overtake the image)
        assert 0.0 < value < 0.5 and abs(t - first) < 0.05


def test_builds_the_default_avatar_and_passes_other_frames() -> None:
    from pipecat.frames.frames import TextFrame

    service = VloggerVideoService(height=128)
    rec = run(service, [TextFrame("hello"), SleepFrame(3.0)])
    assert any(isinstance(f, TextFrame) and f.text == "hello" for _, f in rec)
    shown = images(rec)
    assert shown and service.size is not None and shown[-1][1].size == service.size
    assert service.size[1] == 128


def test_pcm_from_frame_mixes_channels_and_ignores_a_partial_sample() -> None:
    stereo = np.array([1000, 3000, -2000, -4000], "<i2").tobytes() + b"\x01"
    pcm = pcm_from_frame(TTSAudioRawFrame(audio=stereo, sample_rate=16000, num_channels=2))
    assert pcm.dtype == np.float32 and np.allclose(pcm * 32768, [2000, -3000])
    assert pcm_from_frame(TTSAudioRawFrame(audio=b"", sample_rate=16000, num_channels=1)).size == 0
    assert math.isclose(float(pcm_from_frame(TTSAudioRawFrame(b"\xff\x7f", 8000, 1))[0]), 32767 / 32768)
