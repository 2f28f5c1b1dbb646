"""Check the LiveKit room path end to end: a real LiveKit server (or LiveKit Cloud), a
``vlogger livekit-worker``, a tiny agent that speaks through the ``AvatarSession`` plugin, and a
viewer that watches the avatar.

    pip install "vlogger-runtime[livekit]"
    export LIVEKIT_URL=wss://<project>.livekit.cloud LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=...
    python examples/livekit_room_check.py --start-worker           # starts a worker of its own
    python examples/livekit_room_check.py --worker-url http://127.0.0.1:8090   # or uses yours

What it does, in a new room ``vlogger-check-<random>``: a viewer joins (and subscribes, which is
what makes the avatar publish); an agent participant joins and starts an ``AgentSession`` with
no speech input; ``AvatarSession.start`` mints the avatar's token and asks the worker to join;
the agent says one sentence (this project's packaged piper voice, or ``--wav``), then a second
one that it interrupts after ``--interrupt-after`` seconds. It prints whether video frames and
audio reached the viewer, the first-frame latency (avatar requested -> first video frame at the
viewer), say -> first speech heard at the viewer, the ``playback_finished`` reports
(``playback_position``, ``interrupted``) the agent received, and LiveKit's ``AvatarMetrics``.
Exit status 0 when every check passes, 1 otherwise.

This script is not run by the tests: no LiveKit server can be installed on the machines this
project is developed on. It is written against the installed SDK's documented API
(``livekit-agents`` 1.8.9, ``livekit`` 1.1.21, ``livekit-api``); everything up to the room is
tested in ``tests/test_livekit_worker.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from livekit import api, rtc
from livekit.agents import Agent, AgentSession, MetricsCollectedEvent, room_io
from livekit.agents.metrics.base import AvatarMetrics  # not re-exported by livekit.agents.metrics

from vlogger.integrations.livekit_session import AvatarSession

SENTENCE = "Hello! This is the vlogger avatar, speaking in a LiveKit room."
LONG_SENTENCE = "Now I will keep talking for a while, so that the agent can interrupt me halfway through it."


@dataclass
class Viewer:
    """What the viewer received from the avatar."""

    video_frames: int = 0
    size: tuple[int, int] = (0, 0)
    first_video: float | None = None
    audio_s: float = 0.0
    speech_at: list[float] = field(default_factory=list)
    """When audio above a speech level arrived (perf_counter)."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def read_video(self, track: rtc.Track) -> None:
        async for ev in rtc.VideoStream(track):
            self.video_frames += 1
            if self.first_video is None:
                self.first_video = time.perf_counter()
                self.size = (ev.frame.width, ev.frame.height)

    async def read_audio(self, track: rtc.Track) -> None:
        async for ev in rtc.AudioStream(track, sample_rate=48000, num_channels=1):
            frame = ev.frame
            self.audio_s += frame.duration
            if np.abs(np.frombuffer(frame.data, np.int16)).max(initial=0) > 1000:
                self.speech_at.append(time.perf_counter())


def speech_frames(text: str, wav: str | None) -> tuple[list[rtc.AudioFrame], float]:
    """``text`` in the packaged piper voice (or the ``wav``), as 20 ms frames, and its duration."""
    if wav is not None:
        from vlogger.engines.audio import load_audio

        pcm, rate = load_audio(wav, 24000, max_seconds=30.0)
    else:
        from vlogger.engines.tts import PiperTTS
        from vlogger.runtime.config import VloggerConfig

        tts = PiperTTS(VloggerConfig().tts)
        pcm, rate = np.concatenate([c.pcm for c in tts.synthesize(text, 0.0)]), tts.sample_rate
    i16 = np.clip(np.round(pcm * 32767), -32768, 32767).astype(np.int16)
    step = rate // 50
    frames = [
        rtc.AudioFrame(i16[a : a + step].tobytes(), rate, 1, i16[a : a + step].size)
        for a in range(0, i16.size, step)
    ]
    return frames, i16.size / rate


async def replay(frames: list[rtc.AudioFrame]) -> AsyncIterator[rtc.AudioFrame]:
    for f in frames:
        yield f


def room_token(key: str, secret: str, room: str, identity: str, *, agent: bool = False) -> str:
    grants = api.VideoGrants(room_join=True, room=room, can_publish=agent, can_subscribe=True)
    token = api.AccessToken(key, secret).with_identity(identity).with_grants(grants)
    return (token.with_kind("agent") if agent else token).to_jwt()


async def start_worker(size: int) -> tuple[asyncio.subprocess.Process, str]:
    """A ``vlogger livekit-worker`` on a free loopback port (it reads the LIVEKIT_* variables)."""
    cmd = [sys.executable, "-m", "vlogger.runtime.cli", "livekit-worker", "--port", "0", "--size", str(size)]
    proc = await asyncio.create_subprocess_exec(*cmd, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 300.0)).decode()
        if not line:
            raise RuntimeError(f"the worker exited ({await proc.wait()})")
        print(f"  worker: {line.rstrip()}")
        if m := re.search(r"POST (http://\S+)/v1/sessions", line):
            return proc, m.group(1)


async def check(args: argparse.Namespace) -> bool:
    url, key, secret = (
        os.environ.get(v, "") for v in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")
    )
    if not (url and key and secret):
        raise SystemExit("set LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET")
    room_name = f"vlogger-check-{uuid.uuid4().hex[:8]}"
    worker: asyncio.subprocess.Process | None = None
    worker_url = args.worker_url
    if args.start_worker:
        worker, worker_url = await start_worker(args.size)
    first, first_s = speech_frames(SENTENCE, args.wav)
    second, _ = speech_frames(LONG_SENTENCE, args.wav)
    print(f"room {room_name} on {url}; worker {worker_url}")

    viewer, seen = rtc.Room(), Viewer()
    avatar_identity = f"vlogger-avatar-{room_name}"

    def on_track(track: rtc.Track, _pub: Any, participant: rtc.RemoteParticipant) -> None:
        if participant.identity != avatar_identity:
            return
        reader = seen.read_video if track.kind == rtc.TrackKind.KIND_VIDEO else seen.read_audio
        seen.tasks.append(asyncio.create_task(reader(track)))

    viewer.on("track_subscribed", on_track)
    await viewer.connect(url, room_token(key, secret, room_name, "vlogger-check-viewer"))

    agent_room = rtc.Room()
    await agent_room.connect(url, room_token(key, secret, room_name, "vlogger-check-agent", agent=True))
    session: AgentSession[None] = AgentSession()
    metrics: list[AvatarMetrics] = []

    def on_metrics(ev: MetricsCollectedEvent) -> None:
        if isinstance(ev.metrics, AvatarMetrics):
            metrics.append(ev.metrics)

    session.on("metrics_collected", on_metrics)
    avatar = AvatarSession(worker_url=worker_url, photo=args.photo, api_key=key, api_secret=secret)
    ok = True
    try:
        t_request = time.perf_counter()
        await avatar.start(session, room=agent_room)
        print(f"worker answered in {time.perf_counter() - t_request:.2f} s: {avatar.worker_session}")
        sink = session.output.audio  # the plugin's DataStreamAudioOutput, before the session wraps it
        assert sink is not None
        finished: list[Any] = []
        sink.on("playback_finished", finished.append)
        options = room_io.RoomOptions(audio_input=False, text_input=False, close_on_disconnect=False)
        await session.start(
            Agent(instructions="Say what you are given."), room=agent_room, room_options=options
        )
        await avatar.wait_for_join(timeout=args.timeout)
        print(f"avatar published its video {time.perf_counter() - t_request:.2f} s after the request")

        t_say = time.perf_counter()
        handle = session.say(SENTENCE, audio=replay(first))
        await asyncio.wait_for(handle.wait_for_playout(), args.timeout)
        await asyncio.sleep(0.5)
        heard = [t for t in seen.speech_at if t >= t_say]
        handle2 = session.say(LONG_SENTENCE, audio=replay(second))
        await asyncio.sleep(args.interrupt_after)
        handle2.interrupt()
        await asyncio.wait_for(handle2.wait_for_playout(), args.timeout)
        await asyncio.sleep(1.0)

        checks = {
            "video frames arrived": seen.video_frames > 0,
            "speech audio arrived": bool(heard),
            "the sentence reported played in full": bool(finished)
            and not finished[0].interrupted
            and abs(finished[0].playback_position - first_s) <= 0.1,
            "the interruption reported": len(finished) > 1 and finished[1].interrupted,
        }
        if seen.first_video is not None:
            print(f"first video frame at the viewer {seen.first_video - t_request:.2f} s after the request")
        print(
            f"video: {seen.video_frames} frames of {seen.size[0]}x{seen.size[1]}; audio {seen.audio_s:.1f} s"
        )
        if heard:
            print(f"say -> first speech at the viewer: {heard[0] - t_say:.3f} s")
        for i, ev in enumerate(finished):
            print(f"playback_finished {i + 1}: position {ev.playback_position:.3f} s, ", end="")
            print(f"interrupted {ev.interrupted}")
        print(f"(the first sentence lasts {first_s:.3f} s; the second was interrupted ", end="")
        print(f"{args.interrupt_after} s after it was said)")
        for m in metrics:
            print(f"AvatarMetrics: {m.model_dump(exclude_none=True)}")
        for name, passed in checks.items():
            print(f"{'PASS' if passed else 'FAIL'}: {name}")
        ok = all(checks.values())
    finally:
        await session.aclose()
        await avatar.aclose()
        await agent_room.disconnect()
        for task in seen.tasks:
            task.cancel()
        await viewer.disconnect()
        if worker is not None:
            worker.terminate()
            await worker.wait()
    return ok


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker-url", default="http://127.0.0.1:8090", help="a running worker's endpoint")
    p.add_argument("--start-worker", action="store_true", help="start a worker of its own on a free port")
    p.add_argument("--size", type=int, default=256, help="video height of a started worker (default 256)")
    p.add_argument("--photo", help="the avatar's photo (default: the worker's)")
    p.add_argument("--wav", help="speech to play instead of the packaged voice")
    p.add_argument("--interrupt-after", type=float, default=1.0, help="seconds into the second sentence")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each step")
    try:
        sys.exit(0 if asyncio.run(check(p.parse_args())) else 1)
    except rtc.ConnectError as e:
        sys.exit(f"error: could not join the LiveKit server at {os.environ.get('LIVEKIT_URL')}: {e}")
