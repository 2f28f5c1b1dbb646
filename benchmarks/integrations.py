"""The framework adapters (issue #14, Measure): LiveKit's ``VloggerVideoGenerator`` and pipecat's
``VloggerVideoService`` against ``AvatarStream`` alone and ``vlogger serve``.

Speech: 3 sentences of the packaged piper voice (``RealEngines.make_tts``), resampled to 24 kHz and
fed as 20 ms frames, all of a sentence at once (a TTS faster than real time), each at a random
phase of the 25 fps frame clock (seeded). Every run uses the same avatar (the server's default photo
at ``--size``), motion engine (``RealEngines.make_motion``) and renderer, built in this process,
with numpy's and OpenCV's thread pools at one thread (``pin_native_threads(1)``, as ``vlogger
serve`` and ``examples/pipecat_avatar.py`` set them; a 6 s probe first measures ``AvatarStream``
with the pools left alone, what an agent process that does not pin them pays; ``--no-pin``).

Runs: ``stream`` (``AvatarStream.push_audio`` + ``frames``, each frame drawn at its due time);
``livekit`` (the generator under ``rtc.AVSynchronizer`` with ``rtc.AudioSource`` / ``rtc.VideoSource``,
100 ms queues, as LiveKit's stock ``AvatarRunner`` wires and forwards them, restated here without a
room); ``livekit_runner`` (``vlogger.integrations.livekit_runner.VloggerAvatarRunner`` itself, fed
by LiveKit's ``QueueAudioOutput`` as an in-process agent would, only its track publishing replaced:
no LiveKit server runs here); ``pipecat`` (the service in a real pipeline ``[stamp, service,
recorder, SmallWebRTCTransport.output()]``, no ICE servers, 127.0.0.1 host candidates only, to an
aiortc peer in another process: ``benchmarks.receiver.Receiver``, which also keeps decoding out of
the CPU figure). LiveKit's receiving end is ``rtc.VideoStream`` / ``rtc.AudioStream`` opened on
local tracks of the runner's sources: the furthest point reachable without a room (no encoding, no
network, no subscriber jitter buffer); the audio stream delivers at playout (checked: 500 ms
captured at once come out over 500 ms), the video stream at capture.

* **audio in -> first frame out** (per sentence; medians over sentences x repeats, in ms and in
  40 ms frames): from the first speech frame going into the adapter (``push_audio`` /
  ``QueueAudioOutput.capture_frame`` called; pipecat: the first ``TTSAudioRawFrame`` leaving the
  processor before the service) to the first video frame out that covers speech, i.e. that the
  adapter hands on followed by speech audio (``AvatarStream.frames`` returning it; LiveKit: pushed
  into the synchronizer; pipecat: the ``OutputImageRawFrame`` leaving the service). Target: within
  one frame of ``stream``. Also at the receiving end: the first picture whose mouth is open
  (mediapipe-compatible face landmarks, open = idle median + 0.04, as ``benchmarks/realtime.py``).
* **A/V alignment from content at the receiving end**: lag of the mouth-opening series (landmarks
  on the received pictures) behind the audio envelope (RMS of the received audio), best
  cross-correlation (``benchmarks.receiver.av_offset``, positive = video later), both by arrival
  time, minus the same lag of the same sentence rendered offline (``AvatarStream`` unpaced, pictures
  at their pts, the frames' own audio on the stream clock). Target: within 20 ms. Diagnostics: video
  frame out -> received (LiveKit: the same frame found by its bytes) and speech audio out -> first
  heard at onset.
* **interruption**: 3 s of speech, interrupted 1.2 s after it went in (``livekit``: the generator's
  ``clear_buffer()``, all the stock runner does; ``livekit_runner``: ``QueueAudioOutput.clear_buffer``;
  pipecat: an ``InterruptionFrame`` through the pipeline): wall time from the interruption to the
  last stale speech frame out (an audio frame, or a video frame drawn while the motion was
  speaking) and at the receiving end to the last audio packet with speech energy (RMS > 0.01) and,
  for LiveKit, the last received video frame drawn for speech; whether any came more than 80 ms after.
* **CPU per session**: process CPU time (user + system, all threads) per wall second over the
  sentences (speech and idle) at ``--size``: each run (pipecat includes VP8/Opus encoding; LiveKit no
  encoding; LiveKit once more without the local receiving streams), and ``vlogger serve`` with one
  session (``benchmarks/realtime.py``'s ``run_config``: server plus its render process, piper
  included; ``--server reuse`` takes the newest ``benchmarks/results/realtime*.json``).
* **lines of user code**: the README's first Python snippet under "## In LiveKit Agents" / "## In
  pipecat" (code lines plus each transport setting their comments require), and the lines naming
  the avatar in
  ``examples/pipecat*.py`` / ``examples/livekit*.py``.

Prints a table, writes ``benchmarks/results/integrations.json`` (machine, load averages, command,
medians and every sample) and ``integrations.png``. Needs the frameworks (``pip install -e
".[livekit,pipecat]"``; a missing one is skipped with a message)::

    python benchmarks/integrations.py [--quick] [--size 256] [--repeats 3] [--only livekit|pipecat|stream]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import datetime
import importlib.util
import io
import json
import os
import platform
import re
import statistics
import sys
import time
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from benchmarks/
    sys.path.insert(0, str(ROOT))
from benchmarks.receiver import ReceivedVideo, Receiver, av_offset, measure_faces  # noqa: E402

RESULTS = Path(__file__).with_name("results")
SENTENCES = (
    "Hello! It is really nice to meet you today.",
    "Alright, the weather is perfect for a long walk in the park.",
    "Could you tell me a little more about your project?",
)
LONG_SENTENCE = (
    "Okay, I think we should try that again tomorrow morning, and then we can talk about the plan "
    "for the rest of the week."
)
FPS = 25.0
DT = 1.0 / FPS
IN_RATE = 24000
"""Rate of the speech fed to every adapter (a typical TTS rate)."""
OUT_RATE = 48000
"""LiveKit's and AvatarStream's output audio rate (pipecat's is the pipeline's, IN_RATE)."""
PIECE_S = 0.02
OPEN_DELTA = 0.04
SPEECH_RMS = 0.01
STALE_S = 0.08
IDLE_S = 1.5
GAP_S = 1.0
"""Idle after a sentence's audio before the next one."""
KEEP_BEFORE_S = 1.0
"""Received pictures are kept from this long before a push (the idle mouth) ..."""
KEEP_AFTER_S = 0.8
"""... to this long after the speech's duration."""
INTERRUPT_AT_S = 1.2
INTERRUPT_SPEECH_S = 3.0
AFTER_INTERRUPT_S = 1.2
FIRST_FRAME_TARGET_FRAMES = 1.0
ALIGN_TARGET_MS = 20.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def loopback_only_ice() -> None:
    """aioice offers 127.0.0.1 as its only host candidate (same-machine runs; process-wide)."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2))) if x.size else 0.0


def med(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]
    return float(statistics.median(xs)) if xs else float("nan")


# -- engines and speech ------------------------------------------------------------------------------


@dataclass
class Setup:
    size: int
    seed: int
    config: Any
    engines: Any
    avatar: Any
    clips: list[np.ndarray]
    """Sentences at IN_RATE, mono float32."""
    long: np.ndarray
    """INTERRUPT_SPEECH_S of speech at IN_RATE."""
    streams: int = 0

    def new_stream(self, audio_rate: int) -> Any:
        from vlogger.engines.render.factory import make_renderer
        from vlogger.engines.stream import AvatarStream, StreamConfig

        cfg = self.config
        renderer = make_renderer(cfg.renderer, self.avatar.image, self.avatar.fit, cfg.warp, cfg.diffusion)
        motion = self.engines.make_motion(self.streams)
        self.streams += 1
        return AvatarStream(
            self.avatar, motion, renderer, StreamConfig(fps=FPS, audio_rate=audio_rate, causal=True)
        )


def make_setup(size: int, seed: int) -> Setup:
    from vlogger.engines.audio import resample
    from vlogger.runtime.config import VloggerConfig
    from vlogger.runtime.engine_factory import RealEngines

    np.random.seed(seed)
    config = VloggerConfig()
    config.seed = seed
    config.output.height = size
    config.server.render_processes = False  # the adapters render in their own thread
    engines = RealEngines(config)
    if abs(engines.fps - FPS) > 1e-9:
        raise SystemExit(f"the configured fps is {engines.fps}, this benchmark assumes {FPS}")
    tts = engines.make_tts()

    def say(text: str) -> np.ndarray:
        pcm = np.concatenate([c.pcm for c in tts.synthesize(text)]).astype(np.float32)
        return resample(pcm, tts.sample_rate, IN_RATE).astype(np.float32)

    clips = [say(s) for s in SENTENCES]
    long = say(LONG_SENTENCE)[: int(INTERRUPT_SPEECH_S * IN_RATE)]
    avatar = engines.load_avatar(None)
    setup = Setup(size, seed, config, engines, avatar, clips, long)
    warm = setup.new_stream(OUT_RATE)  # loads the motion models, warms the renderer
    warm.frames(5 * DT)
    warm.close()
    return setup


def pieces(pcm: np.ndarray) -> list[np.ndarray]:
    step = round(PIECE_S * IN_RATE)
    return [pcm[i : i + step] for i in range(0, pcm.size, step)]


def i16(pcm: np.ndarray) -> np.ndarray:
    return np.clip(np.round(pcm * 32767.0), -32768, 32767).astype(np.int16)


def envelope(
    pcm: np.ndarray, rate: int, t0: float = 0.0, step: float = 0.02
) -> tuple[np.ndarray, np.ndarray]:
    n = round(rate * step)
    k = pcm.size // n
    blocks = pcm[: k * n].reshape(k, n).astype(np.float64)
    return t0 + np.arange(k) * step, np.sqrt((blocks**2).mean(axis=1))


def digest(data: Any) -> int:
    """A content key of a frame's bytes (every 509th byte: frames differ all over)."""
    return hash(bytes(memoryview(data).cast("B")[::509]))


def match_frames(sent: list[int], received: list[int], reach: int = 50) -> list[int]:
    """For each received frame, the index of the same frame (by :func:`digest`) among the sent
    ones, in order (frames may be dropped, never reordered); -1 where none matches."""
    out, at = [], 0
    for d in received:
        j = next((k for k in range(at, min(at + reach, len(sent))) if sent[k] == d), -1)
        out.append(j)
        if j >= 0:
            at = j + 1
    return out


def faces(times: list[float], pictures: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(times, mouth opening) of the pictures with a detected face."""
    series = measure_faces([ReceivedVideo(t, 0, p) for t, p in zip(times, pictures, strict=True)])
    return series.t, series.mouth


def paced_stream_cores(setup: Setup, seconds: float = 6.0) -> float:
    """CPU cores of ``AvatarStream`` alone paced at 25 fps for ``seconds``, a sentence said from
    the first third on (a short probe, used to show what the native thread pools cost)."""
    from vlogger.engines.types import AudioChunk

    stream = setup.new_stream(OUT_RATE)
    n = int(seconds * FPS)
    t0, c0 = time.monotonic(), time.process_time()
    for i in range(n):
        if i == n // 3:
            stream.push_audio(AudioChunk(pcm=setup.clips[0], sample_rate=IN_RATE, pts=i * DT))
            stream.end_of_segment()
        time.sleep(max(0.0, t0 + i * DT - time.monotonic()))
        stream.frames((i + 1) * DT)
    cores = (time.process_time() - c0) / (time.monotonic() - t0)
    stream.close()
    return cores


# -- offline reference -------------------------------------------------------------------------------


def offline_offsets(setup: Setup) -> list[float]:
    """Per sentence: the mouth-vs-envelope lag (ms) of the sentence rendered offline (no pacing):
    pictures at their pts, the frames' own audio on the stream clock."""
    from vlogger.engines.types import AudioChunk

    out = []
    for pcm in setup.clips:
        stream = setup.new_stream(OUT_RATE)
        start = 0.4
        frames = stream.frames(start)
        stream.push_audio(AudioChunk(pcm=pcm, sample_rate=IN_RATE, pts=start))
        stream.end_of_segment()
        end = start + pcm.size / IN_RATE
        frames += stream.frames(end + 0.6)
        stream.close()
        vt, mouth = faces([f.pts for f in frames], [f.picture for f in frames])
        audio = np.concatenate([f.audio for f in frames])
        at, env = envelope(audio, OUT_RATE)
        win_v = (vt >= start - 0.2) & (vt <= end + 0.5)
        win_a = (at >= start - 0.2) & (at <= end + 0.5)
        out.append(av_offset(vt[win_v], mouth[win_v], at[win_a], env[win_a]) * 1000.0)
    return out


# -- one run: the shared schedule --------------------------------------------------------------------


@dataclass
class Utterance:
    clip: int
    """Index into Setup.clips; -1: the interruption speech."""
    duration: float
    pushed: float = float("nan")
    """Wall time (monotonic) the first speech frame went into the adapter."""
    interrupted: float = float("nan")


@dataclass
class Run:
    """What one adapter run recorded (wall times are ``time.monotonic()``)."""

    name: str
    utterances: list[Utterance] = field(default_factory=list)
    out: list[tuple[float, str, bool, bool]] = field(default_factory=list)
    """(time, "video" | "audio", covers speech, drawn for speech) for every frame the adapter handed
    on: a video frame covers speech when the adapter hands speech audio on with it; it was drawn for
    speech when the motion was speaking (what a stale frame after an interruption shows)."""
    rx_video: list[tuple[float, Any]] = field(default_factory=list)
    """Receiving end: (arrival, picture or None)."""
    rx_audio: list[tuple[float, float]] = field(default_factory=list)
    """Receiving end: (arrival, RMS)."""
    rx_faces: tuple[np.ndarray, np.ndarray] | None = None
    cpu_s: float = 0.0
    wall_s: float = 0.0
    keep: bool = False
    notes: list[str] = field(default_factory=list)
    rx_match: list[int] | None = None
    """Per received video frame: the index of the same frame among the video frames handed on
    (-1: none), where the receiving end gets the adapter's frames unchanged (LiveKit, by content)."""


class Adapter:
    """One adapter under the shared schedule."""

    run: Run

    async def start(self) -> None: ...

    async def push(self, pcm: np.ndarray) -> float:
        """Push a piece of speech and end its segment; returns when its first frame went in."""
        raise NotImplementedError

    async def interrupt(self) -> float:
        raise NotImplementedError

    def keep(self, on: bool) -> None:
        self.run.keep = on

    async def stop(self) -> None: ...


async def drive(adapter: Adapter, setup: Setup, repeats: int, interrupts: int, rng: Any) -> Run:
    run = adapter.run
    await adapter.start()
    await asyncio.sleep(IDLE_S - KEEP_BEFORE_S)
    t0, c0 = time.monotonic(), time.process_time()
    order = [i for _ in range(repeats) for i in range(len(setup.clips))]
    for n, i in enumerate(order):
        pcm = setup.clips[i]
        u = Utterance(i, pcm.size / IN_RATE)
        run.utterances.append(u)
        adapter.keep(True)
        await asyncio.sleep(KEEP_BEFORE_S + float(rng.uniform(0.0, DT)))
        u.pushed = await adapter.push(pcm)
        await asyncio.sleep(u.duration + KEEP_AFTER_S)
        adapter.keep(False)
        await asyncio.sleep(GAP_S - KEEP_AFTER_S)
        log(f"  {run.name}: sentence {n + 1}/{len(order)}")
    run.cpu_s, run.wall_s = time.process_time() - c0, time.monotonic() - t0
    for j in range(interrupts):
        u = Utterance(-1, setup.long.size / IN_RATE)
        run.utterances.append(u)
        adapter.keep(True)
        await asyncio.sleep(KEEP_BEFORE_S + float(rng.uniform(0.0, DT)))
        u.pushed = await adapter.push(setup.long)
        await asyncio.sleep(max(0.0, u.pushed + INTERRUPT_AT_S - time.monotonic()))
        u.interrupted = await adapter.interrupt()
        await asyncio.sleep(AFTER_INTERRUPT_S)
        adapter.keep(False)
        await asyncio.sleep(0.3)
        log(f"  {run.name}: interruption {j + 1}/{interrupts}")
    await adapter.stop()
    return run


# -- AvatarStream alone ------------------------------------------------------------------------------


class StreamAlone(Adapter):
    """``AvatarStream`` with ``push_audio`` + ``frames``, each frame drawn at its due time on the
    event loop (what an adapter's worker does, without the adapter)."""

    def __init__(self, setup: Setup) -> None:
        self.run = Run("stream")
        self.stream = setup.new_stream(OUT_RATE)
        self.next_index = 0
        self.audio_end = 0.0
        self.t0 = 0.0
        self.task: asyncio.Task[None] | None = None
        self.pictures: list[tuple[float, np.ndarray]] = []

    async def start(self) -> None:
        self.t0 = time.monotonic()
        self.task = asyncio.create_task(self._frames())

    async def _frames(self) -> None:
        while True:
            due = self.t0 + self.next_index * DT
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            until = (self.next_index + 1) * DT
            if self.stream.ready_until() < until - 1e-9:
                self.stream.end_of_segment()
            frames = self.stream.frames(until)
            t = time.monotonic()
            for f in frames:
                speech = f.pts < self.audio_end - 1e-9
                self.run.out.append((t, "video", speech, speech or bool(f.motion.speaking)))
                if speech:
                    self.run.out.append((t, "audio", True, rms(f.audio) > 0.0))
                self.run.rx_audio.append((t, rms(f.audio)))
                if self.run.keep:
                    self.pictures.append((t, f.picture))
                self.next_index = f.index + 1

    async def push(self, pcm: np.ndarray) -> float:
        from vlogger.engines.types import AudioChunk

        t = time.monotonic()
        pts = max(self.audio_end, self.next_index * DT)
        for p in pieces(pcm):
            self.stream.push_audio(AudioChunk(pcm=p, sample_rate=IN_RATE, pts=pts))
            pts += p.size / IN_RATE
        self.stream.end_of_segment()
        self.audio_end = pts
        return t

    async def interrupt(self) -> float:
        t = time.monotonic()
        self.audio_end = self.stream.clear_buffer()
        return t

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.stream.close()
        self.run.rx_video = [(t, p) for t, p in self.pictures]
        self.run.notes.append("receiving end = the frames as drawn (no transport)")


# -- LiveKit -----------------------------------------------------------------------------------------


class LiveKitAdapter(Adapter):
    """``VloggerVideoGenerator`` under ``rtc.AVSynchronizer`` with ``rtc.AudioSource`` /
    ``rtc.VideoSource`` (100 ms queues, as ``AvatarRunner`` makes them), received by
    ``rtc.VideoStream`` / ``rtc.AudioStream`` on local tracks of those sources.

    ``runner=False``: the stock ``AvatarRunner``'s forwarding loop, restated here (no room), speech
    pushed with ``push_audio``, interruptions by ``clear_buffer()`` as the stock runner calls it.
    ``runner=True``: ``vlogger.integrations.livekit_runner.VloggerAvatarRunner`` itself, fed by
    LiveKit's ``QueueAudioOutput`` (the in-process variant: the agent's ``capture_frame`` / ``flush``
    / ``clear_buffer``), with only its track publishing (which needs a room) replaced by opening the
    local tracks. ``receive=False``: no local streams (a run for the CPU figure alone)."""

    def __init__(self, setup: Setup, receive: bool = True, runner: bool = False) -> None:
        from livekit import rtc

        from vlogger.integrations.livekit import VloggerVideoGenerator

        self.rtc = rtc
        self.receive = receive
        self.use_runner = runner
        self.run = Run("livekit_runner" if runner else "livekit")
        self.gen = VloggerVideoGenerator(setup.new_stream(OUT_RATE), on_frame=self._on_frame)
        self.last_frame: Any = None
        self.tasks: list[asyncio.Task[None]] = []
        self.closables: list[Any] = []
        self.rx_frames: list[tuple[float, Any, int]] = []
        self.out_digests: list[int] = []
        self.runner: Any = None
        self.agent_out: Any = None

    def _on_frame(self, frame: Any) -> None:
        self.last_frame = frame

    def _record(self, item: Any) -> None:
        """Note a frame going into the synchronizer."""
        from vlogger.integrations.livekit import audio_frame_to_mono

        t, out = time.monotonic(), self.run.out
        if isinstance(item, self.rtc.VideoFrame):
            speaking = bool(self.last_frame is not None and self.last_frame.motion.speaking)
            out.append((t, "video", False, speaking))
            self.out_digests.append(digest(item.data))
        elif isinstance(item, self.rtc.AudioFrame):
            # an audio frame comes only while speech covers the video frame before it
            if out and out[-1][1] == "video":
                out[-1] = (out[-1][0], "video", True, True)
            out.append((t, "audio", True, rms(audio_frame_to_mono(item)) > 0.0))

    def _open_receivers(self, audio: Any, video: Any) -> None:
        rtc = self.rtc
        if not self.receive:
            return
        audio_track = rtc.LocalAudioTrack.create_audio_track("avatar_audio", audio)
        video_track = rtc.LocalVideoTrack.create_video_track("avatar_video", video)
        self.video_rx = rtc.VideoStream(video_track)
        self.audio_rx = rtc.AudioStream(audio_track, sample_rate=OUT_RATE, num_channels=1)
        self.closables += [self.video_rx, self.audio_rx]
        self.tasks += [
            asyncio.create_task(self._receive_video()),
            asyncio.create_task(self._receive_audio()),
        ]

    async def start(self) -> None:
        rtc = self.rtc
        opts = self.gen.avatar_options()
        if self.use_runner:
            from livekit.agents.voice.avatar import QueueAudioOutput

            from vlogger.integrations.livekit_runner import VloggerAvatarRunner

            adapter = self

            class UnpublishedRunner(VloggerAvatarRunner):
                """The runner without its one server-bound step: publishing into a room."""

                async def _publish_track(self) -> None:
                    self._video_publication = True  # type: ignore[assignment]
                    adapter._open_receivers(self._audio_source, self._video_source)

            self.agent_out = QueueAudioOutput()
            self.runner = UnpublishedRunner(
                rtc.Room(), audio_recv=self.agent_out, video_gen=self.gen, options=opts
            )
            sync = self.runner.av_sync
            sync_push = sync.push

            async def push(frame: Any, timestamp: float | None = None) -> None:
                self._record(frame)
                await sync_push(frame, timestamp)

            sync.push = push
            await self.runner.start()
            return
        self.audio = rtc.AudioSource(opts.audio_sample_rate, opts.audio_channels, queue_size_ms=100)
        self.video = rtc.VideoSource(opts.video_width, opts.video_height)
        self.sync = rtc.AVSynchronizer(
            audio_source=self.audio,
            video_source=self.video,
            video_fps=opts.video_fps,
            video_queue_size_ms=100,
        )
        self.closables = [self.audio, self.video]
        self.tasks = [asyncio.create_task(self._forward())]
        self._open_receivers(self.audio, self.video)

    async def _forward(self) -> None:
        """``AvatarRunner._forward_video`` without the room and the playback notices."""
        from livekit.agents.voice.avatar import AudioSegmentEnd

        async for item in self.gen:
            if isinstance(item, AudioSegmentEnd):
                continue
            self._record(item)
            await self.sync.push(item)

    async def _receive_video(self) -> None:
        async for ev in self.video_rx:
            t = time.monotonic()
            self.rx_frames.append((t, ev.frame if self.run.keep else None, digest(ev.frame.data)))

    async def _receive_audio(self) -> None:
        from vlogger.integrations.livekit import audio_frame_to_mono

        async for ev in self.audio_rx:
            self.run.rx_audio.append((time.monotonic(), rms(audio_frame_to_mono(ev.frame))))

    async def push(self, pcm: np.ndarray) -> float:
        from livekit.agents.voice.avatar import AudioSegmentEnd

        rtc = self.rtc
        frames = [rtc.AudioFrame(i16(p).tobytes(), IN_RATE, 1, p.size) for p in pieces(pcm)]
        t = time.monotonic()
        if self.agent_out is not None:
            for f in frames:
                await self.agent_out.capture_frame(f)
            self.agent_out.flush()
            return t
        for f in frames:
            await self.gen.push_audio(f)
        await self.gen.push_audio(AudioSegmentEnd())
        return t

    async def interrupt(self) -> float:
        t = time.monotonic()
        if self.agent_out is not None:
            self.agent_out.clear_buffer()  # the runner's clear_buffer event
        else:
            self.gen.clear_buffer()  # what the stock runner's _on_clear_buffer does (sync queues left)
        return t

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.aclose()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.runner is None:
            await self.sync.aclose()
        for closable in self.closables:
            with contextlib.suppress(Exception):
                await closable.aclose()
        await self.gen.aclose()
        self.run.rx_match = match_frames(self.out_digests, [d for _, _, d in self.rx_frames])
        rgba = self.rtc.VideoBufferType.RGBA
        for t, frame, _ in self.rx_frames:
            picture = None
            if frame is not None:
                conv = frame.convert(rgba)
                picture = np.frombuffer(conv.data, np.uint8).reshape(conv.height, conv.width, 4)[..., :3]
            self.run.rx_video.append((t, picture))
        self.run.notes.append(
            ("VloggerAvatarRunner + QueueAudioOutput; " if self.runner is not None else "stock runner loop; ")
            + "receiving end = rtc.VideoStream/AudioStream on local tracks of the AVSynchronizer's "
            "sources (no room: no encoding, no network)"
        )


# -- pipecat -----------------------------------------------------------------------------------------


class PipecatAdapter(Adapter):
    """``VloggerVideoService`` in a pipeline ``[stamp, service, recorder, SmallWebRTCTransport.output()]``
    sending to an aiortc peer in another process (127.0.0.1 only)."""

    def __init__(self, setup: Setup, result_path: Path) -> None:
        from pipecat.frames.frames import (
            Frame,
            InterruptionFrame,
            OutputImageRawFrame,
            TTSAudioRawFrame,
        )
        from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

        from vlogger.integrations.pipecat import VloggerVideoService

        self.run = Run("pipecat")
        self.setup = setup
        self.result_path = result_path
        self.service = VloggerVideoService(
            stream_factory=setup.new_stream, audio_out_sample_rate=IN_RATE, name="vlogger-avatar"
        )
        self.first_in: asyncio.Future[float] | None = None
        self.interrupt_in: asyncio.Future[float] | None = None
        self.tells: list[asyncio.Future[None]] = []
        adapter = self

        class Stamp(FrameProcessor):
            """Notes when speech and interruptions leave it for the service."""

            async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
                await super().process_frame(frame, direction)
                if direction == FrameDirection.DOWNSTREAM:
                    now = time.monotonic()
                    if (
                        isinstance(frame, TTSAudioRawFrame)
                        and adapter.first_in
                        and not adapter.first_in.done()
                    ):
                        adapter.first_in.set_result(now)
                    if isinstance(frame, InterruptionFrame) and adapter.interrupt_in:
                        if not adapter.interrupt_in.done():
                            adapter.interrupt_in.set_result(now)
                await self.push_frame(frame, direction)

        class Recorder(FrameProcessor):
            """Notes every image and audio frame the service pushes."""

            async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
                await super().process_frame(frame, direction)
                if direction == FrameDirection.DOWNSTREAM:
                    t = time.monotonic()
                    out = adapter.run.out
                    if isinstance(frame, OutputImageRawFrame):
                        speech = bool(frame.metadata.get("vlogger", {}).get("speech"))
                        out.append((t, "video", False, speech))
                    elif isinstance(frame, TTSAudioRawFrame):
                        if out and out[-1][1] == "video":
                            out[-1] = (out[-1][0], "video", True, True)
                        pcm = np.frombuffer(frame.audio, "<i2")
                        out.append((t, "audio", True, bool(pcm.size and np.abs(pcm).max() > 0)))
                await self.push_frame(frame, direction)

        self.stamp, self.recorder = Stamp(), Recorder()

    async def _child_line(self) -> str:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60.0)
        if not line:
            raise RuntimeError("the receiver process ended early")
        return line.decode().strip()

    async def _tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        await self.proc.stdin.drain()

    async def start(self) -> None:
        from pipecat.pipeline.pipeline import Pipeline
        from pipecat.pipeline.worker import PipelineParams, PipelineWorker
        from pipecat.transports.base_transport import TransportParams
        from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
        from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
        from pipecat.workers.runner import WorkerRunner

        loopback_only_ice()
        with contextlib.suppress(ImportError):  # pipecat logs every connection step through loguru
            from loguru import logger

            logger.remove()
            logger.add(sys.stderr, level="ERROR")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).resolve()),
            "--_receiver",
            str(self.result_path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        offer = await self._child_line()
        conn = SmallWebRTCConnection(ice_servers=None)
        await conn.initialize(sdp=json.loads(offer), type="offer")
        answer = conn.get_answer()
        assert answer is not None
        await self._tell(json.dumps(answer["sdp"]))
        height, width = self.setup.avatar.image.shape[:2]
        transport = SmallWebRTCTransport(
            conn,
            TransportParams(
                audio_out_enabled=True,
                video_out_enabled=True,
                video_out_is_live=False,
                video_out_width=width,
                video_out_height=height,
                video_out_framerate=30,
            ),
        )
        pipeline = Pipeline([self.stamp, self.service, self.recorder, transport.output()])
        self.worker = PipelineWorker(
            pipeline,
            params=PipelineParams(audio_out_sample_rate=IN_RATE),
            cancel_on_idle_timeout=False,
            enable_rtvi=False,
        )
        started = asyncio.Event()

        @self.worker.event_handler("on_pipeline_started")
        async def _started(worker: Any, frame: Any) -> None:
            started.set()

        self.runner = WorkerRunner(handle_sigint=False)
        await self.runner.add_workers(self.worker)
        self.runner_task = asyncio.create_task(self.runner.run())
        await asyncio.wait_for(started.wait(), 60.0)
        if await self._child_line() != "media":
            raise RuntimeError("the receiver got no media")

    def keep(self, on: bool) -> None:
        self.run.keep = on
        self.tells.append(asyncio.ensure_future(self._tell("keep" if on else "drop")))

    async def push(self, pcm: np.ndarray) -> float:
        from pipecat.frames.frames import TTSAudioRawFrame, TTSStoppedFrame

        frames = [
            TTSAudioRawFrame(audio=i16(p).tobytes(), sample_rate=IN_RATE, num_channels=1) for p in pieces(pcm)
        ]
        self.first_in = asyncio.get_running_loop().create_future()
        await self.worker.queue_frames([*frames, TTSStoppedFrame()])
        return await asyncio.wait_for(self.first_in, 10.0)

    async def interrupt(self) -> float:
        from pipecat.frames.frames import InterruptionFrame

        self.interrupt_in = asyncio.get_running_loop().create_future()
        await self.worker.queue_frame(InterruptionFrame())
        return await asyncio.wait_for(self.interrupt_in, 10.0)

    async def stop(self) -> None:
        await self._tell("stop")
        await self.worker.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.runner_task, 15.0)
        await asyncio.wait_for(self.proc.wait(), 300.0)
        data = json.loads(self.result_path.read_text())
        self.run.rx_video = [(t, None) for t in data["video_t"]]
        self.run.rx_faces = (np.array(data["faces_t"]), np.array(data["mouth"]))
        self.run.rx_audio = list(zip(data["audio_t"], data["rms"], strict=True))
        self.run.notes.append(
            "receiving end = an aiortc peer in another process over SmallWebRTCTransport on 127.0.0.1 "
            "(VP8 + Opus), arrival = first RTP packet of a frame"
        )


async def receiver_main(path: str) -> None:
    """The pipecat run's receiving end (its own process): offer on stdout, answer on stdin, then
    ``keep`` / ``drop`` / ``stop`` lines; writes what it received (mouth series computed here)."""
    loopback_only_ice()
    loop = asyncio.get_running_loop()
    rx = Receiver("", keep_frames=False)

    async def answer(sdp: str) -> str:
        print(json.dumps(sdp), flush=True)
        return str(json.loads(await loop.run_in_executor(None, sys.stdin.readline)))

    await rx.connect_offer(answer, kinds=("audio", "video"), timeout=60.0)
    await rx.wait_media(60.0)
    print("media", flush=True)
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line == "keep":
            rx.keep_frames = True
        elif line == "drop":
            rx.keep_frames = False
        elif line in ("stop", ""):
            break
    await rx.close()
    series = measure_faces(rx.video)
    path_out = Path(path)
    path_out.write_text(
        json.dumps(
            {
                "video_t": [v.arrival for v in rx.video],
                "faces_t": series.t.tolist(),
                "mouth": series.mouth.tolist(),
                "audio_t": [a.arrival for a in rx.audio],
                "rms": [rms(a.pcm) for a in rx.audio],
            }
        )
    )


# -- analysis ----------------------------------------------------------------------------------------


def analyse(run: Run, offline_ms: list[float]) -> dict[str, Any]:
    """Per utterance figures from what a run recorded."""
    if run.rx_faces is not None:
        ft, mouth = run.rx_faces
    else:
        kept = [(t, p) for t, p in run.rx_video if p is not None]
        ft, mouth = faces([t for t, _ in kept], [p for _, p in kept])
    at = np.array([t for t, _ in run.rx_audio])
    env = np.array([r for _, r in run.rx_audio])
    first_ms, open_ms, align_ms, excess_ms = [], [], [], []
    stale_out_ms, stale_rx_ms = [], []
    for u in run.utterances:
        # audio in -> first video frame out covering speech
        first = next(
            (t for t, kind, covers, _ in run.out if kind == "video" and covers and t >= u.pushed),
            float("nan"),
        )
        # the mouth at the receiving end
        idle = mouth[(ft >= u.pushed - KEEP_BEFORE_S) & (ft < u.pushed)]
        base = float(np.median(idle)) if idle.size else float("nan")
        opened = ft[(ft > u.pushed) & (mouth > base + OPEN_DELTA)]
        if u.clip >= 0:
            first_ms.append((first - u.pushed) * 1000.0)
            open_ms.append((opened[0] - u.pushed) * 1000.0 if opened.size else float("nan"))
            lo, hi = u.pushed - 0.2, u.pushed + u.duration + 0.7
            wv, wa = (ft >= lo) & (ft <= hi), (at >= lo) & (at <= hi)
            lag = av_offset(ft[wv], mouth[wv], at[wa], env[wa]) * 1000.0
            align_ms.append(lag)
            excess_ms.append(lag - offline_ms[u.clip])
        else:
            cut = u.interrupted
            stale = [t for t, _, _, drawn in run.out if cut < t < cut + AFTER_INTERRUPT_S and drawn]
            stale_out_ms.append((max(stale) - cut) * 1000.0 if stale else 0.0)
            heard = at[(at > cut) & (at < cut + AFTER_INTERRUPT_S) & (env > SPEECH_RMS)]
            stale_rx_ms.append((float(heard.max()) - cut) * 1000.0 if heard.size else 0.0)
    speech_seconds = sum(u.duration for u in run.utterances if u.clip >= 0)
    # where the delays come from: out -> receiving end, for speech audio at its onset and for video
    onset_audio_ms, video_ms, stale_rx_video_ms = [], [], []
    for u in run.utterances:
        said = next((t for t, kind, _, drawn in run.out if kind == "audio" and drawn and t >= u.pushed), None)
        heard = at[(at >= u.pushed) & (env > SPEECH_RMS)]
        if said is not None and heard.size:
            onset_audio_ms.append((float(heard[0]) - said) * 1000.0)
    if run.rx_match is not None:
        vout = [(t, drawn) for t, kind, _, drawn in run.out if kind == "video"]
        pairs = [(vout[j], rx) for (rx, _), j in zip(run.rx_video, run.rx_match, strict=True) if j >= 0]
        video_ms = [(rx - t) * 1000.0 for (t, _), rx in pairs]
        for u in run.utterances:
            if u.clip < 0:
                cut = u.interrupted
                late = [rx for (_, drawn), rx in pairs if drawn and cut < rx < cut + AFTER_INTERRUPT_S]
                stale_rx_video_ms.append((max(late) - cut) * 1000.0 if late else 0.0)
    return {
        "first_frame_ms": first_ms,
        "first_frame_ms_median": med(first_ms),
        "first_frame_frames_median": med(first_ms) / (DT * 1000.0),
        "first_open_mouth_rx_ms": open_ms,
        "first_open_mouth_rx_ms_median": med(open_ms),
        "av_offset_rx_ms": align_ms,
        "av_offset_rx_ms_median": med(align_ms),
        "av_offset_minus_offline_ms": excess_ms,
        "av_offset_minus_offline_ms_median": med(excess_ms),
        "interrupt_last_stale_out_ms": stale_out_ms,
        "interrupt_last_stale_out_ms_median": med(stale_out_ms),
        "interrupt_last_stale_rx_ms": stale_rx_ms,
        "interrupt_last_stale_rx_ms_median": med(stale_rx_ms),
        "interrupt_stale_over_80ms_out": any(x > STALE_S * 1000.0 for x in stale_out_ms),
        "interrupt_stale_over_80ms_rx": any(x > STALE_S * 1000.0 for x in stale_rx_ms + stale_rx_video_ms),
        "speech_audio_out_to_heard_at_onset_ms": onset_audio_ms,
        "speech_audio_out_to_heard_at_onset_ms_median": med(onset_audio_ms),
        "video_frames_matched": len(video_ms),
        "video_out_to_received_ms_median": med(video_ms),
        "video_out_to_received_ms_p90": float(np.percentile(video_ms, 90)) if video_ms else float("nan"),
        "interrupt_last_stale_rx_video_ms": stale_rx_video_ms,
        "interrupt_last_stale_rx_video_ms_median": med(stale_rx_video_ms),
        "cpu_cores": run.cpu_s / run.wall_s if run.wall_s else float("nan"),
        "cpu_s": run.cpu_s,
        "wall_s": run.wall_s,
        "speech_s": speech_seconds,
        "frames_out": sum(1 for _, kind, _, _ in run.out if kind == "video"),
        "frames_received": len(run.rx_video),
        "faces_measured": int(ft.size),
        "notes": run.notes,
    }


# -- vlogger serve -----------------------------------------------------------------------------------


def server_cpu(size: int, mode: str, utterances: int) -> dict[str, Any]:
    """``vlogger serve``'s CPU for one session at ``size`` (see benchmarks/realtime.py)."""
    if mode == "skip":
        return {"source": "skipped"}
    if mode == "run":
        from benchmarks import realtime

        proc, url = realtime.start_server(size)
        try:
            r = asyncio.run(realtime.run_config(url, proc.pid, 1, utterances))
        finally:
            proc.terminate()
            proc.wait(15)
        return {
            "source": f"run now (benchmarks/realtime.py run_config, 1 session, {utterances} utterances)",
            "server_cpu_cores": r["server_cpu_cores"],
            "main_process_cpu_cores": r["main_process_cpu_cores"],
            "av_offset_ms_median": r["av_offset_ms_median"],
            "first_open_ms_median": r["first_open_ms_median"],
            "load_average_1min_at_start": r["load_average_1min_at_start"],
        }
    found = []
    for path in sorted(RESULTS.glob("realtime*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        with contextlib.suppress(Exception):
            data = json.loads(path.read_text())
            for r in data.get("results", []):
                if r.get("size") == size and r.get("sessions") == 1:
                    found.append((path.name, r))
    if not found:
        return {"source": f"no benchmarks/results/realtime*.json with 1 session at {size} px"}
    name, r = found[0]
    return {
        "source": f"reused benchmarks/results/{name} (newest with 1 session at {size} px)",
        "server_cpu_cores": r["server_cpu_cores"],
        "main_process_cpu_cores": r.get("main_process_cpu_cores"),
        "av_offset_ms_median": r.get("av_offset_ms_median"),
        "first_open_ms_median": r.get("first_open_ms_median"),
        "load_average_1min_at_start": r.get("load_average_1min_at_start"),
    }


# -- lines of user code ------------------------------------------------------------------------------

AVATAR_WORDS = re.compile(
    r"vlogger|Vlogger|avatar|Avatar|video_out_|VideoGenerator|video_gen|AvatarRunner|AvatarSession"
)


def _code_lines(source: str) -> list[tuple[int, str]]:
    """Non-blank, non-comment, non-docstring lines of Python source."""
    skip: set[int] = set()
    with contextlib.suppress(SyntaxError):
        for node in ast.walk(ast.parse(source)):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
                value = body[0].value
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    skip.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    comment_only: set[int] = set()
    with contextlib.suppress(tokenize.TokenError, IndentationError):
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT and not tok.line[: tok.start[1]].strip():
                comment_only.add(tok.start[0])
    return [
        (n, line)
        for n, line in enumerate(source.splitlines(), 1)
        if line.strip() and n not in skip and n not in comment_only
    ]


def user_lines() -> dict[str, Any]:
    """Avatar-specific lines a user adds to their agent, per framework: the first Python snippet of
    the README's section for it ("## In LiveKit Agents", "## In pipecat": its code lines plus each
    transport setting its comments require, one line each), and, for each
    ``examples/<framework>*.py`` present, its lines that name the avatar."""
    out: dict[str, Any] = {}
    readme = (ROOT / "README.md").read_text()
    headings = {"pipecat": "## In pipecat", "livekit": "## In LiveKit Agents"}
    for fw in ("pipecat", "livekit"):
        entry: dict[str, Any] = {"count": None}
        section = readme.split(headings[fw], 1)[-1].split("\n## ", 1)[0] if headings[fw] in readme else ""
        found = re.search(r"```python\n(.*?)```", section, re.S)
        snippet = found.group(1) if found else ""
        if snippet:
            code = [line.strip() for _, line in _code_lines(snippet)]
            comments = "\n".join(line for line in snippet.splitlines() if line.strip().startswith("#"))
            settings = sorted(set(re.findall(r"\b(video_out_\w+)", comments)))
            entry["readme"] = {
                "code_lines": code,
                "settings_named_in_comments": settings,
                "count": len(code) + len(settings),
            }
            entry["count"] = len(code) + len(settings)
        examples = {}
        for f in sorted((ROOT / "examples").glob(f"{fw}*.py")):
            lines = [line.strip() for _, line in _code_lines(f.read_text()) if AVATAR_WORDS.search(line)]
            examples[str(f.relative_to(ROOT))] = {"count": len(lines), "lines": lines}
        if examples:
            entry["examples"] = examples
            entry["examples_rule"] = (
                f"non-blank, non-comment, non-docstring lines matching {AVATAR_WORDS.pattern}"
            )
        out[fw] = entry
    return out


# -- report ------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    with contextlib.suppress(Exception):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    for mod in ("livekit.agents", "livekit.rtc", "pipecat", "aiortc"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            dist = {"livekit.agents": "livekit-agents", "livekit.rtc": "livekit", "pipecat": "pipecat-ai"}
            info[f"{mod} version"] = version(dist.get(mod, mod))
    return info


def _num(x: Any) -> float:
    return float("nan") if x is None else float(x)


def print_table(results: dict[str, Any], server: dict[str, Any], lines: dict[str, Any]) -> None:
    stream = results.get("stream", {})
    base = stream.get("first_frame_ms_median", float("nan"))
    print()
    head = (
        f"{'run':<14} {'first frame':>12} {'vs stream':>10} {'open mouth':>10} {'A/V rx':>7} "
        f"{'-offline':>8} {'int out':>8} {'int rx':>7} {'>80ms':>6} {'cores':>6}"
    )
    print(head)
    for name, r in results.items():
        first = r["first_frame_ms_median"]
        vs = (first - base) / (DT * 1000.0) if name != "stream" else 0.0
        late = r["interrupt_stale_over_80ms_out"] or r["interrupt_stale_over_80ms_rx"]
        stale = "yes" if late else "no"
        print(
            f"{name:<14} {first:>9.0f} ms {vs:>+8.2f} f {r['first_open_mouth_rx_ms_median']:>7.0f} ms "
            f"{r['av_offset_rx_ms_median']:>+5.0f}ms {r['av_offset_minus_offline_ms_median']:>+6.0f}ms "
            f"{r['interrupt_last_stale_out_ms_median']:>6.0f}ms "
            f"{r['interrupt_last_stale_rx_ms_median']:>5.0f}ms "
            f"{stale:>6} {r['cpu_cores']:>6.2f}"
        )
    if "server_cpu_cores" in server:
        print(
            f"{'serve':<14} {'':>12} {'':>10} {_num(server.get('first_open_ms_median')):>7.0f} ms "
            f"{_num(server.get('av_offset_ms_median')):>+5.0f}ms {'':>8} {'':>8} {'':>7} {'':>6} "
            f"{server['server_cpu_cores']:>6.2f}   ({server['source']})"
        )
    print(
        "first frame: audio in -> first video frame out covering speech (median; 'vs stream' in frames of "
        f"{DT * 1000:.0f} ms, target <= +{FIRST_FRAME_TARGET_FRAMES:g}); open mouth: at the receiving end "
        "(serve: after say, TTS included); A/V rx: mouth vs audio envelope at the receiving end, video later "
        f"= +; -offline: minus the same sentence rendered offline (target |x| <= {ALIGN_TARGET_MS:g} ms); "
        "int out/rx: interruption -> last stale speech frame out / heard; cores: CPU s per wall s"
    )
    for name, r in results.items():
        extra = []
        if r.get("video_out_to_received_ms_median") == r.get("video_out_to_received_ms_median"):
            extra.append(f"video out -> received {r['video_out_to_received_ms_median']:.0f} ms")
        if name != "stream":
            onset = r["speech_audio_out_to_heard_at_onset_ms_median"]
            extra.append(f"speech audio out -> heard at onset {onset:.0f} ms")
        if r.get("interrupt_last_stale_rx_video_ms"):
            extra.append(
                f"last stale speech video received {r['interrupt_last_stale_rx_video_ms_median']:.0f} ms "
                "after the interruption"
            )
        if "cpu_cores_without_local_receivers" in r:
            extra.append(f"{r['cpu_cores_without_local_receivers']:.2f} cores without the local receivers")
        if extra:
            print(f"{name}: " + "; ".join(extra))
    for fw, v in lines.items():
        readme = v.get("readme")
        text = (
            f"README snippet {readme['count']} ({len(readme['code_lines'])} code lines + "
            f"{len(readme['settings_named_in_comments'])} transport settings)"
            if readme
            else "no README snippet"
        )
        for name, ex in v.get("examples", {}).items():
            text += f"; {name}: {ex['count']} lines naming the avatar"
        print(f"lines of user code, {fw}: {text}")


def plot(results: dict[str, Any], server: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))

    def dots(ax: Any, key: str, offset: float = 0.0, color: str = "k") -> None:
        for i, n in enumerate(names):
            ys = [y for y in results[n][key] if y == y]
            ax.plot(np.full(len(ys), i + offset), ys, ".", color=color, ms=4)

    ax = axes[0]
    ax.bar(x - 0.2, [results[n]["first_frame_ms_median"] for n in names], 0.4, label="first frame out")
    ax.bar(x + 0.2, [results[n]["first_open_mouth_rx_ms_median"] for n in names], 0.4, label="open mouth, rx")
    dots(ax, "first_frame_ms", -0.2)
    dots(ax, "first_open_mouth_rx_ms", 0.2)
    if "stream" in results:
        ax.axhline(
            results["stream"]["first_frame_ms_median"] + DT * 1000,
            color="r",
            ls="--",
            lw=1,
            label="stream + 1 frame",
        )
    ax.set_title("audio in -> first frame (ms)")
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.bar(x, [results[n]["av_offset_minus_offline_ms_median"] for n in names], 0.5)
    dots(ax, "av_offset_minus_offline_ms")
    for y in (-ALIGN_TARGET_MS, ALIGN_TARGET_MS):
        ax.axhline(y, color="r", ls="--", lw=1)
    ax.set_title("A/V at receiver minus offline (ms, video later +)")
    ax = axes[2]
    w = 0.27
    ax.bar(x - w, [results[n]["interrupt_last_stale_out_ms_median"] for n in names], w, label="out")
    ax.bar(x, [results[n]["interrupt_last_stale_rx_ms_median"] for n in names], w, label="audio heard")
    ax.bar(
        x + w,
        [_num(results[n].get("interrupt_last_stale_rx_video_ms_median")) for n in names],
        w,
        label="video received",
    )
    dots(ax, "interrupt_last_stale_out_ms", -w)
    dots(ax, "interrupt_last_stale_rx_ms", 0.0)
    dots(ax, "interrupt_last_stale_rx_video_ms", w)
    ax.axhline(STALE_S * 1000, color="r", ls="--", lw=1)
    ax.set_title("interruption -> last stale speech (ms)")
    ax.legend(fontsize=7)
    ax = axes[3]
    labels = list(names)
    vals = [results[n]["cpu_cores"] for n in names]
    for n in names:
        if "cpu_cores_without_local_receivers" in results[n]:
            labels.append(f"{n}\nno rx")
            vals.append(results[n]["cpu_cores_without_local_receivers"])
    if "server_cpu_cores" in server:
        labels.append("serve")
        vals.append(server["server_cpu_cores"])
    ax.bar(np.arange(len(labels)), vals, 0.5)
    ax.set_xticks(np.arange(len(labels)), labels, rotation=30, fontsize=8)
    ax.set_title("CPU cores per session")
    for a in axes[:3]:
        a.set_xticks(x, names, rotation=15, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--_receiver":
        asyncio.run(receiver_main(sys.argv[2]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 repeat, 1 interruption (smoke run)")
    ap.add_argument("--size", type=int, default=256, help="avatar height in px (256; 512 optional)")
    ap.add_argument("--repeats", type=int, default=None, help="rounds of the 3 sentences (default 3)")
    ap.add_argument("--interruptions", type=int, default=None, help="interruption trials (default 3)")
    ap.add_argument(
        "--only",
        choices=("stream", "livekit", "pipecat"),
        action="append",
        default=None,
        help="run only this (repeatable); livekit: the stock runner loop and VloggerAvatarRunner",
    )
    ap.add_argument(
        "--server",
        choices=("run", "reuse", "skip"),
        default=None,
        help="vlogger serve's CPU: run it now (default), reuse realtime*.json (default "
        "with --quick), or skip",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--no-pin",
        action="store_true",
        help="leave numpy's and OpenCV's thread pools alone (default: one thread each, as vlogger "
        "serve and examples/pipecat_avatar.py set them)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "integrations.json")
    args = ap.parse_args()
    os.environ.setdefault("GLOG_minloglevel", "2")
    repeats = args.repeats or (1 if args.quick else 3)
    interrupts = args.interruptions or (1 if args.quick else 3)
    server_mode = args.server or ("reuse" if args.quick else "run")
    only = args.only or ["stream", "livekit", "pipecat"]
    skipped: dict[str, str] = {}
    if "livekit" in only and not have("livekit.agents"):
        skipped["livekit"] = "livekit-agents is not installed (pip install -e '.[livekit]')"
    if "pipecat" in only and not (have("pipecat") and have("aiortc")):
        skipped["pipecat"] = "pipecat-ai[webrtc] is not installed (pip install -e '.[pipecat]')"
    for name, why in skipped.items():
        log(f"skipping {name}: {why}")
    todo = [n for n in ("stream", "livekit", "pipecat") if n in only and n not in skipped]
    if "livekit" in todo:
        if have("vlogger.integrations.livekit_runner"):
            todo.insert(todo.index("livekit") + 1, "livekit_runner")
        else:
            log("skipping livekit_runner: vlogger.integrations.livekit_runner is not there")
            skipped["livekit_runner"] = "vlogger.integrations.livekit_runner is not there"
    if not todo:
        log("nothing to run")
        return 0
    RESULTS.mkdir(exist_ok=True)
    load_start = os.getloadavg()
    log(
        f"load average {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}; building engines "
        f"and speech at {args.size} px ..."
    )
    t_start = time.monotonic()
    setup = make_setup(args.size, args.seed)
    log(
        f"speech: {', '.join(f'{c.size / IN_RATE:.2f} s' for c in setup.clips)}; "
        f"interruption speech {setup.long.size / IN_RATE:.2f} s"
    )
    unpinned = float("nan")
    if not args.no_pin:
        from vlogger.engines.threads import pin_native_threads

        log("AvatarStream alone with numpy/OpenCV thread pools left alone (6 s probe) ...")
        unpinned = paced_stream_cores(setup)
        pin_native_threads(1)
        log(f"  {unpinned:.2f} cores unpinned; pinned one thread each from here on")
    log("offline reference ...")
    offline = offline_offsets(setup)
    log(f"offline A/V lag per sentence: {', '.join(f'{o:+.0f} ms' for o in offline)}")
    results: dict[str, Any] = {}
    for name in todo:
        rng = np.random.default_rng(args.seed)
        log(f"{name}: {repeats} x {len(setup.clips)} sentences, {interrupts} interruption(s) ...")
        load = os.getloadavg()[0]
        adapter: Adapter
        if name == "stream":
            adapter = StreamAlone(setup)
        elif name == "livekit":
            adapter = LiveKitAdapter(setup)
        elif name == "livekit_runner":
            adapter = LiveKitAdapter(setup, runner=True)
        else:
            adapter = PipecatAdapter(setup, RESULTS / ".integrations_receiver.json")
        run = asyncio.run(drive(adapter, setup, repeats, interrupts, rng))
        log(f"{name}: measuring faces ...")
        results[name] = analyse(run, offline)
        results[name]["load_average_1min_at_start"] = load
        if name.startswith("livekit"):
            log(f"{name}: once more without the local receiving streams, for the CPU figure alone ...")
            bare_adapter = LiveKitAdapter(setup, receive=False, runner=name == "livekit_runner")
            bare = asyncio.run(drive(bare_adapter, setup, 1, 0, rng))
            results[name]["cpu_cores_without_local_receivers"] = bare.cpu_s / bare.wall_s
        r = results[name]
        log(
            f"{name}: first frame {r['first_frame_ms_median']:.0f} ms, A/V - offline "
            f"{r['av_offset_minus_offline_ms_median']:+.0f} ms, interruption out/heard "
            f"{r['interrupt_last_stale_out_ms_median']:.0f}/{r['interrupt_last_stale_rx_ms_median']:.0f} ms, "
            f"{r['cpu_cores']:.2f} cores"
        )
    with contextlib.suppress(FileNotFoundError):
        (RESULTS / ".integrations_receiver.json").unlink()
    log(f"vlogger serve CPU ({server_mode}) ...")
    server: dict[str, Any] = {}
    failures = []
    for attempt in range(2 if server_mode == "run" else 1):
        try:
            server = server_cpu(args.size, server_mode, len(SENTENCES))
            break
        except Exception as e:  # the comparison is optional: never lose the adapters' figures
            failures.append(f"{type(e).__name__}: {e}")
            log(f"vlogger serve run {attempt + 1} failed ({failures[-1]})")
    if not server:
        server = server_cpu(args.size, "reuse", len(SENTENCES))
    if failures:
        server["failed_runs"] = failures
    lines = user_lines()
    print_table(results, server, lines)
    base = results.get("stream", {}).get("first_frame_ms_median", float("nan"))
    targets = {
        name: {
            "first_frame_within_one_frame_of_stream": r["first_frame_ms_median"] - base <= DT * 1000.0,
            "av_within_20ms_of_offline": abs(r["av_offset_minus_offline_ms_median"]) <= ALIGN_TARGET_MS,
            "no_stale_speech_after_80ms": not (
                r["interrupt_stale_over_80ms_out"] or r["interrupt_stale_over_80ms_rx"]
            ),
        }
        for name, r in results.items()
        if name != "stream"
    }
    out = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "load_average_at_start": list(load_start),
        "load_average_at_end": list(os.getloadavg()),
        "seconds": time.monotonic() - t_start,
        "size": args.size,
        "seed": args.seed,
        "repeats": repeats,
        "interruptions": interrupts,
        "sentences": list(SENTENCES),
        "sentence_seconds": [c.size / IN_RATE for c in setup.clips],
        "interruption_speech": LONG_SENTENCE,
        "offline_av_offset_ms": offline,
        "native_threads_pinned": not args.no_pin,
        "stream_cpu_cores_threads_unpinned_probe": unpinned,
        "frame_ms": DT * 1000.0,
        "results": results,
        "targets": targets,
        "server": server,
        "lines_of_user_code": lines,
        "skipped": skipped,
    }
    args.out.write_text(json.dumps(out, indent=2, default=float))
    if results:
        plot(results, server, args.out.with_suffix(".png"))
    log(
        f"wrote {args.out} and {args.out.with_suffix('.png').name} "
        f"(load average now {os.getloadavg()[0]:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
