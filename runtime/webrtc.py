"""WebRTC helpers of a session: ICE server lists, draining unwanted tracks, the stats events."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import SessionDescription

from vlogger.runtime.tracks import TrackCounters

__all__ = ["StatsSampler", "answer_offer", "drain", "ice_servers", "public_ice"]


def ice_servers(urls: list[str]) -> list[RTCIceServer]:
    """``RTCIceServer``s from URLs; ``turn:user:pass@host:port`` carries credentials."""
    out = []
    for url in urls:
        scheme, _, rest = url.partition(":")
        if "@" in rest:
            cred, _, host = rest.rpartition("@")
            user, _, password = cred.partition(":")
            out.append(RTCIceServer(urls=f"{scheme}:{host}", username=user, credential=password))
        else:
            out.append(RTCIceServer(urls=url))
    return out


def public_ice(urls: list[str]) -> list[dict[str, Any]]:
    """The page's ``iceServers`` (same servers, in the browser's format)."""
    out: list[dict[str, Any]] = []
    for s in ice_servers(urls):
        item: dict[str, Any] = {"urls": s.urls}
        if s.username:
            item.update(username=s.username, credential=s.credential)
        out.append(item)
    return out


class StatsSampler:
    """Turns the tracks' counters into the periodic ``stats`` event (rates since the last one)."""

    def __init__(self) -> None:
        self._last = time.monotonic()
        self._prev = (0, 0, 0, 0)

    def sample(self, p: Any, video: Any, audio: Any) -> dict[str, Any]:
        """The ``stats`` event for pipeline ``p`` and its (possibly absent) tracks."""
        from vlogger.runtime.protocol import event

        now = time.monotonic()
        dt = max(1e-6, now - self._last)
        self._last = now
        v = video.counters if video is not None else TrackCounters()
        a = audio.counters if audio is not None else TrackCounters()
        cur = (v.sent, v.fresh, v.repeats, a.sent)
        d = [c - q for c, q in zip(cur, self._prev, strict=True)]
        self._prev = cur
        w, h = p.size
        return event(
            "stats",
            fps=round(d[0] / dt, 2),
            fps_rendered=round(d[1] / dt, 2),
            repeated_frames=d[2],
            audio_packets_per_s=round(d[3] / dt, 2),
            render_ms=round(p.render_ms(), 2),
            queue_frames=len(p.frames),
            queue_utterances=p.unfinished(),
            audio_buffer_ms=round(p.timeline.buffered_seconds() * 1000.0, 1),
            say_to_first_frame_ms=None if p.last_first_frame_ms is None else round(p.last_first_frame_ms, 1),
            stream_time_s=round(p.clock.now(), 3),
            width=w,
            height=h,
        )


async def drain(track: MediaStreamTrack) -> None:
    """Read and drop a track's frames until it ends."""
    with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
        while True:
            await track.recv()


async def answer_offer(session: Any, msg: Any) -> None:
    """Negotiate the session's peer connection from the client's offer and send the answer
    (``session``: the :class:`~vlogger.runtime.session.Session`); ProtocolError ``bad_sdp`` when it
    cannot be negotiated."""
    from vlogger.runtime.protocol import ProtocolError, event
    from vlogger.runtime.tracks import AvatarVideoTrack, SpeechAudioTrack

    if session.pc is not None:
        raise ProtocolError("bad_state", "this session already has a peer connection")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers(session.config.ice_servers)))
    session.pc = pc
    p = session.pipeline
    session.video = AvatarVideoTrack(
        p.clock, p.frames, p.fps, on_sent=p.on_video_sent, size=p.size, placeholder=p.still_frame()
    )
    session.audio = SpeechAudioTrack(p.clock, p.timeline, on_marks=p.on_audio_marks)

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:  # the microphone: listen to it
        if track.kind == "audio" and session.config.listen_enabled:
            session._spawn(session._hear(track))
        else:
            session._spawn(drain(track))

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc is not session.pc:  # a failed negotiation's connection being closed
            return
        state = pc.connectionState
        session.emit(event("connection", state=state))
        if state in ("failed", "closed") and not session._closing:
            session._spawn(session._abort(f"peer connection {state}"))

    try:
        # parse once off the loop: a malformed offer is refused without touching it, and the
        # size limit bounds aiortc's own parse on the loop (about 0.12 ms per kB)
        await asyncio.to_thread(SessionDescription.parse, msg.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=msg.sdp, type="offer"))
        kinds = {t.kind for t in pc.getTransceivers()}
        if "video" not in kinds:
            raise ValueError("the offer has no video m-line (add a recvonly video transceiver)")
        pc.addTrack(session.video)
        if "audio" in kinds:
            pc.addTrack(session.audio)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
    except Exception as exc:
        session.pc = None
        session.video = session.audio = None
        with contextlib.suppress(Exception):
            await pc.close()
        raise ProtocolError("bad_sdp", f"could not negotiate the offer: {exc}") from exc
    session.emit(event("answer", sdp=pc.localDescription.sdp))
