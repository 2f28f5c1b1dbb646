"""A Python client of ``/ws`` that receives the avatar over WebRTC (aiortc), for the tests and the
benchmarks (it lives in the repository, not in the installed package; an agent may start from it):
it records every decoded video frame and audio packet with its arrival time.

    from benchmarks.receiver import Receiver  # with the repository root on sys.path

    rx = Receiver("ws://127.0.0.1:8080/ws")
    await rx.connect()
    sent_at = await rx.say("Hello there.")
    await rx.wait_utterance("u1", "done", timeout=10)
    await rx.close()

Analysis helpers (:func:`audio_envelope`, :func:`av_offset`) work on what it recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "FaceSeries",
    "ReceivedAudio",
    "ReceivedVideo",
    "Receiver",
    "audio_envelope",
    "av_offset",
    "measure_faces",
]


@dataclass
class ReceivedVideo:
    arrival: float
    """``time.monotonic()`` when the first RTP packet of the frame arrived (network arrival;
    decode and the receiver's jitter buffer excluded)."""
    pts: int
    """RTP-derived pts (90 kHz)."""
    rgb: np.ndarray | None
    """The picture (``None`` when frames are not kept)."""


@dataclass
class ReceivedAudio:
    arrival: float
    """``time.monotonic()`` when the packet arrived (aiortc holds audio 4 packets = 80 ms in its
    jitter buffer before decoding; that delay is excluded here)."""
    pts: int
    rate: int
    pcm: np.ndarray
    """Mono float32."""


@dataclass
class Receiver:
    """One session as seen from a client (receive-only transceivers, all candidates in the SDP)."""

    url: str
    keep_frames: bool = True
    """Keep decoded pictures (RGB); off for load tests, which only count frames."""
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    video: list[ReceivedVideo] = field(default_factory=list)
    audio: list[ReceivedAudio] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    """Extra HTTP headers of the ``/ws`` request (e.g. ``Authorization: Bearer T``)."""

    def __post_init__(self) -> None:
        self.ws: Any = None
        self.pc: Any = None
        self.session: dict[str, Any] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._changed = asyncio.Event()
        self._ids = 0
        self._packet_times: dict[str, dict[int, float]] = {}

    async def connect(self, timeout: float = 15.0) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
        from websockets.asyncio.client import connect

        self.ws = await connect(
            self.url, max_size=None, additional_headers=self.headers or None, open_timeout=timeout
        )
        self._tasks.append(asyncio.ensure_future(self._read()))
        session = await self.wait_event(lambda e: e["type"] == "session", timeout)
        self.session = session
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc = pc
        for kind in ("video", "audio"):
            self._watch_packets(pc.addTransceiver(kind, direction="recvonly").receiver, kind)

        @pc.on("track")
        def on_track(track: Any) -> None:
            self._tasks.append(asyncio.ensure_future(self._consume(track)))

        await pc.setLocalDescription(await pc.createOffer())
        await self.send({"type": "offer", "sdp": pc.localDescription.sdp})
        answer = await self.wait_event(lambda e: e["type"] in ("answer", "error"), timeout)
        if answer["type"] == "error":
            raise RuntimeError(f"offer refused: {answer}")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    async def connect_offer(
        self, answer: Any, kinds: tuple[str, ...] = ("audio", "video"), timeout: float = 15.0
    ) -> None:
        """Receive from a peer other than ``/ws`` (a framework's transport): ``await answer(sdp)``
        gets this side's offer (receive-only transceivers in the order of ``kinds``, host candidates
        included) and returns the answer's SDP. Records media like :meth:`connect`."""
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc = pc
        for kind in kinds:
            self._watch_packets(pc.addTransceiver(kind, direction="recvonly").receiver, kind)

        @pc.on("track")
        def on_track(track: Any) -> None:
            self._tasks.append(asyncio.ensure_future(self._consume(track)))

        await pc.setLocalDescription(await pc.createOffer())
        sdp = await asyncio.wait_for(answer(pc.localDescription.sdp), timeout)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    def _watch_packets(self, receiver: Any, kind: str) -> None:
        """Note when each RTP timestamp's first packet arrives (wraps the receiver's handler)."""
        seen: dict[int, float] = {}
        self._packet_times[kind] = seen
        handle = receiver._handle_rtp_packet

        origin: list[int] = []

        async def timed(packet: Any, arrival_time_ms: int) -> None:
            # decoded frames carry pts = RTP timestamp - the first one (aiortc's unwrapping)
            if not origin:
                origin.append(packet.timestamp)
            seen.setdefault((packet.timestamp - origin[0]) % (1 << 32), time.monotonic())
            if len(seen) > 20000:
                for k in list(seen)[:10000]:
                    del seen[k]
            await handle(packet, arrival_time_ms)

        receiver._handle_rtp_packet = timed

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for msg in self.ws:
                if isinstance(msg, str):
                    self.events.append((time.monotonic(), json.loads(msg)))
                    self._changed.set()
        self._changed.set()

    async def _consume(self, track: Any) -> None:
        from aiortc.mediastreams import MediaStreamError

        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                now = self._packet_times.get(track.kind, {}).get(int(frame.pts or 0), time.monotonic())
                if track.kind == "video":
                    rgb = frame.to_ndarray(format="rgb24") if self.keep_frames else None
                    self.video.append(ReceivedVideo(now, int(frame.pts or 0), rgb))
                else:
                    x = frame.to_ndarray()
                    if x.dtype == np.int16:
                        x = x.astype(np.float32) / 32768.0
                    channels = len(frame.layout.channels)
                    mono = x.reshape(-1, channels).mean(axis=1) if frame.format.is_packed else x.mean(axis=0)
                    self.audio.append(ReceivedAudio(now, int(frame.pts or 0), frame.sample_rate, mono))

    async def send(self, obj: dict[str, Any] | bytes) -> float:
        await self.ws.send(obj if isinstance(obj, bytes) else json.dumps(obj))
        return time.monotonic()

    async def say(self, text: str, id: str | None = None) -> float:
        """Send ``say``; returns the send time."""
        if id is None:
            self._ids += 1
            id = f"u{self._ids}"
        return await self.send({"type": "say", "id": id, "text": text})

    async def wait_event(self, pred: Any, timeout: float = 10.0, since: int = 0) -> dict[str, Any]:
        """The first event (from index ``since``) for which ``pred(event)`` is true."""
        deadline = time.monotonic() + timeout
        while True:
            for _, ev in self.events[since:]:
                if pred(ev):
                    return ev
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"no matching event within {timeout} s; got {[e for _, e in self.events][-5:]}"
                )
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    def event_time(self, pred: Any) -> float | None:
        for t, ev in self.events:
            if pred(ev):
                return t
        return None

    async def wait_utterance(self, id: str, state: str, timeout: float = 10.0) -> float:
        """Wait until utterance ``id`` reaches ``state``; returns when the event arrived."""
        await self.wait_event(
            lambda e: e.get("type") == "utterance" and e.get("id") == id and e.get("state") == state, timeout
        )
        t = self.event_time(
            lambda e: e.get("type") == "utterance" and e.get("id") == id and e.get("state") == state
        )
        assert t is not None
        return t

    async def wait_media(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not (self.video and self.audio):
            if time.monotonic() > deadline:
                raise TimeoutError("no media arrived")
            await asyncio.sleep(0.05)

    def is_open(self) -> bool:
        """Whether the ``/ws`` socket is connected."""
        from websockets.protocol import State

        return self.ws is not None and self.ws.state is State.OPEN

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self.pc is not None:
            await self.pc.close()
        if self.ws is not None:
            await self.ws.close()

    def fps(self, t0: float, t1: float) -> float:
        n = sum(1 for v in self.video if t0 <= v.arrival < t1)
        return n / max(1e-9, t1 - t0)


def audio_envelope(audio: list[ReceivedAudio], step: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """(arrival times, RMS) per received packet (about 20 ms each)."""
    if not audio:
        return np.zeros(0), np.zeros(0)
    t = np.array([a.arrival for a in audio])
    rms = np.array([float(np.sqrt(np.mean(a.pcm.astype(np.float64) ** 2))) for a in audio])
    return t, rms


def av_offset(
    video_t: np.ndarray, mouth: np.ndarray, audio_t: np.ndarray, rms: np.ndarray, max_lag: float = 0.3
) -> float:
    """Lag (s) of the mouth-opening series behind the audio envelope that correlates best
    (positive: video arrives later than sound), both sampled on a 5 ms grid by arrival time."""
    if len(video_t) < 5 or len(audio_t) < 5:
        return float("nan")
    t0 = max(video_t[0], audio_t[0])
    t1 = min(video_t[-1], audio_t[-1])
    grid = np.arange(t0, t1, 0.005)
    v = np.interp(grid, video_t, mouth)
    a = np.interp(grid, audio_t, rms)
    v = (v - v.mean()) / (v.std() + 1e-9)
    a = (a - a.mean()) / (a.std() + 1e-9)
    reach = int(max_lag / 0.005)
    best, best_c = 0, -np.inf
    for lag in range(-reach, reach + 1):
        if lag >= 0:
            c = float(np.dot(v[lag:], a[: len(a) - lag])) / max(1, len(a) - lag)
        else:
            c = float(np.dot(v[:lag], a[-lag:])) / max(1, len(a) + lag)
        if c > best_c:
            best, best_c = lag, c
    return best * 0.005


@dataclass
class FaceSeries:
    """Face measures of received frames (frames without a detected face are left out)."""

    t: np.ndarray
    """Arrival times."""
    mouth: np.ndarray
    """Inner-lip gap over eye-corner distance (:func:`vlogger.engines.metrics.mouth_opening`)."""
    eyes: np.ndarray
    """Mean lid gap over eye width of both eyes."""
    nose: np.ndarray
    """(n, 2) nose-tip pixels (landmark 1)."""


def measure_faces(video: list[ReceivedVideo], every: int = 1, static: bool = True) -> FaceSeries:
    """Run the face landmarker (478 points, as FaceMesh refine_landmarks=True) over the received
    pictures. ``static`` detects every frame afresh: slower, but tracking mode can smooth blinks of
    small faces away."""
    from vlogger.engines.avatar.landmarks import FaceLandmarker
    from vlogger.engines.metrics import eye_openness, mouth_opening

    t, mouth, eyes, nose = [], [], [], []
    with FaceLandmarker(static=static, max_faces=1) as mesh:
        for v in video[::every]:
            if v.rgb is None:
                continue
            found = mesh.process(v.rgb)
            if not found:
                continue
            p = found[0][:, :2]
            t.append(v.arrival)
            mouth.append(mouth_opening(p))
            eyes.append(float(np.mean(eye_openness(p))))
            nose.append(p[1])
    return FaceSeries(np.array(t), np.array(mouth), np.array(eyes), np.array(nose).reshape(-1, 2))
