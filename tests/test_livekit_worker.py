"""The LiveKit side around the adapter: the avatar worker's HTTP endpoint, the agent-side
``AvatarSession`` plugin, the ``vlogger livekit-worker`` command line, and the in-process path
(``QueueAudioOutput`` -> ``VloggerVideoGenerator`` -> ``VloggerAvatarRunner``, LiveKit's
``AvatarRunner``, on a real ``AVSynchronizer``/``AudioSource``/``VideoSource``, driven directly and
by LiveKit's own ``AgentSession.say``) with its playback accounting on a timeline.

All traffic stays on 127.0.0.1: the worker listens there, and its LiveKit URL is a closed port there.
Not tested (no LiveKit server can be installed on these machines): joining a real room, the
DataStream between agent and avatar, and publishing tracks; the in-process tests leave only the
runner's track publishing (``_publish_track``, which needs a server) out, and a session's life
after a join is run on a room that is not connected. ``examples/livekit_room_check.py`` checks the
room path against a real server.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("livekit.agents", reason="the livekit extra is not installed (pip install .[livekit])")

import aiohttp
from livekit import api, rtc
from livekit.agents.voice.avatar import QueueAudioOutput

from vlogger.engines.errors import InputError
from vlogger.engines.stream import StreamFrame
from vlogger.integrations.livekit import VloggerVideoGenerator, build_avatar_stream
from vlogger.integrations.livekit_cli import DEFAULT_PORT, worker_settings
from vlogger.integrations.livekit_runner import VloggerAvatarRunner
from vlogger.integrations.livekit_session import AvatarSession, AvatarWorkerError, avatar_token
from vlogger.integrations.livekit_worker import AvatarWorker, WorkerConfig
from vlogger.runtime.capacity import session_capacity
from vlogger.runtime.cli import build_parser, main
from vlogger.runtime.config import VloggerConfig

KEY = "APItestkey"
SECRET = "a-test-secret-that-is-long-enough-for-hs256"
FPS = 25.0
ROOT = Path(__file__).resolve().parents[1]


def closed_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def small_config() -> VloggerConfig:
    cfg = VloggerConfig()
    cfg.output.height = 256
    return cfg


def token(
    *,
    key: str = KEY,
    secret: str = SECRET,
    room: str = "room-1",
    identity: str = "vlogger-avatar-room-1",
    agent: str | None = "agent-1",
    ttl_s: float = 300.0,
    join: bool = True,
) -> str:
    t = api.AccessToken(key, secret).with_identity(identity).with_kind("agent")
    t = t.with_grants(api.VideoGrants(room_join=join, room=room))
    if agent is not None:
        t = t.with_attributes({"lk.publish_on_behalf": agent})
    import datetime

    return t.with_ttl(datetime.timedelta(seconds=ttl_s)).to_jwt()


class StubGenerator:
    """What a join that fails touches of a generator (its size and ``aclose``)."""

    width, height, fps, audio_sample_rate = 256, 256, FPS, 48000

    def __init__(self) -> None:
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


class Factory:
    """A generator factory that records its calls and, while ``gate`` is clear, waits."""

    def __init__(self, gate: bool = False) -> None:
        self.calls: list[tuple[bytes | None, int]] = []
        self.made: list[StubGenerator] = []
        self.gate = asyncio.Event()
        if not gate:
            self.gate.set()

    async def __call__(self, photo: bytes | None, seed: int) -> Any:
        self.calls.append((photo, seed))
        await self.gate.wait()
        gen = StubGenerator()
        self.made.append(gen)
        return gen


async def started_worker(factory: Any = None, **kw: Any) -> AvatarWorker:
    cfg = WorkerConfig(url=f"ws://127.0.0.1:{closed_port()}", api_key=KEY, api_secret=SECRET, port=0, **kw)
    worker = AvatarWorker(cfg, small_config(), make_generator=factory)
    await worker.start()
    return worker


async def post(worker: AvatarWorker, body: Any = None, *, data: Any = None) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{worker.url}/v1/sessions", json=body, data=data) as r,
    ):
        return r.status, await r.json(content_type=None)


async def wait_until(cond: Any, timeout: float = 10.0) -> None:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        await asyncio.sleep(0.01)


# -- the worker's endpoint -------------------------------------------------------------------------


def test_worker_listens_on_loopback_and_refuses_bad_tokens() -> None:
    async def run() -> list[tuple[int, dict[str, Any]]]:
        factory = Factory()
        worker = await started_worker(factory)
        assert worker.config.host == "127.0.0.1" and WorkerConfig("ws://x", "k", "s").host == "127.0.0.1"
        answers = [
            await post(worker, {"token": "not.a.jwt"}),
            await post(worker, {"token": token(secret="another-secret-of-another-project-xxxxxx")}),
            await post(worker, {"token": token(key="APIotherkey")}),
            await post(worker, {"token": token(ttl_s=-600)}),  # expired 10 min ago (beyond the leeway)
            await post(worker, {"token": token(join=False)}),
            await post(worker, {"token": token(agent=None)}),
        ]
        async with aiohttp.ClientSession() as http, http.get(f"{worker.url}/v1/health") as r:
            health = await r.json()
        await worker.stop()
        assert factory.calls == []  # no avatar is built for a refused request
        assert health == {"status": "ok", "sessions": 0, "max_sessions": 1}
        return answers

    answers = asyncio.run(run())
    assert [(s, a["error"]) for s, a in answers] == [
        (401, "bad_token"),
        (401, "bad_token"),
        (401, "bad_token"),
        (401, "token_expired"),
        (403, "token_cannot_join"),
        (403, "token_cannot_join"),
    ]
    assert "signature" in answers[1][1]["message"]
    assert "another API key" in answers[2][1]["message"]
    assert "lk.publish_on_behalf" in answers[5][1]["message"]


def test_worker_names_malformed_requests() -> None:
    async def run() -> list[tuple[int, dict[str, Any]]]:
        worker = await started_worker(Factory())
        answers = [
            await post(worker, data=b"{not json"),
            await post(worker, [token()]),
            await post(worker, {}),
            await post(worker, {"token": token(), "url": "wss://elsewhere.example"}),
            await post(worker, {"token": token(), "photo": "not base64 !!"}),
            await post(worker, {"token": token(), "photo": 12}),
        ]
        await worker.stop()
        return answers

    answers = asyncio.run(run())
    assert [(s, a["error"]) for s, a in answers] == [
        (400, "bad_json"),
        (400, "bad_request"),
        (400, "bad_request"),
        (400, "bad_request"),
        (400, "bad_photo"),
        (400, "bad_photo"),
    ]
    assert "token" in answers[2][1]["message"]
    assert "url" in answers[3][1]["message"]  # a request cannot choose the server the worker joins


def test_worker_bounds_bodies_and_photos() -> None:
    async def run() -> list[tuple[int, dict[str, Any]]]:
        factory = Factory()
        worker = await started_worker(factory, max_body_bytes=64 * 1024, max_photo_bytes=20 * 1024)

        async def chunks() -> Any:  # no Content-Length: the limit holds while reading
            for _ in range(20):
                yield b" " * 8192

        answers = [
            await post(worker, {"token": token(), "photo": "A" * 100_000}),
            await post(worker, data=chunks()),
            await post(worker, {"token": token(), "photo": base64.b64encode(b"x" * 30_000).decode()}),
        ]
        await worker.stop()
        assert factory.calls == []
        return answers

    answers = asyncio.run(run())
    assert [(s, a["error"]) for s, a in answers] == [
        (413, "body_too_large"),
        (413, "body_too_large"),
        (413, "photo_too_large"),
    ]


def test_worker_full_busy_duplicate_then_join_fails_and_it_serves_on() -> None:
    async def run() -> dict[str, Any]:
        factory = Factory(gate=True)
        worker = await started_worker(factory, max_sessions=1, connect_timeout_s=5.0)
        photo = b"\x89PNG fake photo bytes"
        first = asyncio.create_task(
            post(worker, {"token": token(), "photo": base64.b64encode(photo).decode()})
        )
        await wait_until(lambda: worker.sessions == 1)
        duplicate = await post(worker, {"token": token()})
        same_agent = await post(worker, {"token": token(room="room-2", identity="vlogger-avatar-room-2")})
        busy = await post(worker, {"token": token(room="room-3", identity="x", agent="agent-3")})
        factory.gate.set()
        t0 = time.monotonic()
        failed = await first
        join_s = time.monotonic() - t0
        sessions_after = worker.sessions
        again = await post(worker, {"token": token(room="room-3", identity="x", agent="agent-3")})
        await worker.stop()
        return {
            "duplicate": duplicate,
            "same_agent": same_agent,
            "busy": busy,
            "failed": failed,
            "join_s": join_s,
            "after": sessions_after,
            "again": again,
            "factory": factory,
            "worker": worker,
        }

    r = asyncio.run(run())
    assert (r["duplicate"][0], r["duplicate"][1]["error"]) == (409, "session_exists")
    assert (r["same_agent"][0], r["same_agent"][1]["error"]) == (409, "agent_in_use")
    assert (r["busy"][0], r["busy"][1]["error"]) == (503, "worker_busy")
    status, answer = r["failed"]
    assert (status, answer["error"]) == (502, "join_failed")
    assert r["worker"].ws_url in answer["message"] and "room-1" in answer["message"]
    assert r["join_s"] < 20.0
    assert r["after"] == 0  # the slot is free again
    assert (r["again"][0], r["again"][1]["error"]) == (502, "join_failed")  # served, not busy
    factory = r["factory"]
    assert factory.calls[0][0] == b"\x89PNG fake photo bytes"
    assert [seed for _, seed in factory.calls] == [0, 1]  # each session its own seed
    assert all(g.closed for g in factory.made)  # a failed join closes its avatar


def test_worker_builds_the_real_avatar_and_names_an_unusable_photo() -> None:
    import cv2

    noise = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    png = cv2.imencode(".png", noise)[1].tobytes()

    async def run() -> tuple[tuple[int, dict[str, Any]], tuple[int, dict[str, Any]], int]:
        worker = await started_worker(connect_timeout_s=5.0)  # the real generator factory
        bad = await post(worker, {"token": token(), "photo": base64.b64encode(png).decode()})
        joined = await post(worker, {"token": token()})  # the default portrait builds; no server
        sessions = worker.sessions
        await worker.stop()
        return bad, joined, sessions

    bad, joined, sessions = asyncio.run(run())
    assert bad[0] == 422 and bad[1]["error"] in ("bad_image", "bad_input")  # the InputError's code
    assert bad[1]["message"].startswith("the avatar's photo: ")
    assert (joined[0], joined[1]["error"]) == (502, "join_failed")
    assert sessions == 0


def test_a_session_whose_room_is_gone_ends_and_frees_its_slot(caplog: pytest.LogCaptureFixture) -> None:
    """The session's life after a join (here on a room that is not connected, the closest to a room
    that went away that runs without a server): it ends, closes its avatar and runner, frees the slot."""
    from vlogger.integrations.livekit_worker import _Session

    async def run() -> tuple[int, bool, int]:
        worker = await started_worker()
        gen = VloggerVideoGenerator(await asyncio.to_thread(build_avatar_stream, small_config()))
        session = _Session("s1", "room-1", "vlogger-avatar-room-1", "agent-1")
        worker._sessions[session.id] = session
        await asyncio.wait_for(worker._run(session, rtc.Room(), gen), 10.0)
        sessions = worker.sessions
        await worker.stop()
        return sessions, gen._closed, len(asyncio.all_tasks())

    with caplog.at_level("INFO", logger="vlogger.integrations.livekit_worker"):
        sessions, closed, tasks = asyncio.run(run())
    assert sessions == 0 and closed
    assert tasks == 1  # only the test's own: the runner's and synchronizer's tasks are gone
    assert "session s1 in room room-1 ended: failed: room is not connected" in caplog.text


# -- the plugin ------------------------------------------------------------------------------------


def test_plugin_token_has_identity_grants_and_publish_on_behalf() -> None:
    t0 = time.time()
    jwt = avatar_token(
        api_key=KEY,
        api_secret=SECRET,
        room="demo",
        identity="vlogger-avatar-demo",
        agent_identity="agent-AJ_1",
    )
    claims = api.TokenVerifier(KEY, SECRET).verify(jwt)
    assert claims.identity == "vlogger-avatar-demo"
    assert claims.kind == "agent"
    assert claims.video is not None
    assert (claims.video.room_join, claims.video.room) == (True, "demo")
    assert claims.video.can_publish and claims.video.can_subscribe and claims.video.can_publish_data
    assert claims.attributes == {"lk.publish_on_behalf": "agent-AJ_1"}
    import jwt as pyjwt

    raw = pyjwt.decode(jwt, SECRET, algorithms=["HS256"], issuer=KEY)
    assert abs(raw["exp"] - (t0 + 300)) <= 2
    with pytest.raises(Exception, match="Signature"):
        api.TokenVerifier(KEY, "some-other-secret-that-is-long-enough-xx").verify(jwt)


def test_plugin_posts_its_token_and_photo_to_a_real_worker(tmp_path: Path) -> None:
    photo = tmp_path / "me.jpg"
    photo.write_bytes(b"\xff\xd8 a jpeg's bytes")

    async def run() -> dict[str, Any]:
        factory = Factory(gate=True)
        worker = await started_worker(factory, connect_timeout_s=5.0)
        plugin = AvatarSession(worker_url=worker.url, photo=photo, api_key=KEY, api_secret=SECRET)
        assert plugin.provider == "vlogger"
        task = asyncio.create_task(plugin.request_avatar("room-9", "agent-9"))
        await wait_until(lambda: worker.sessions == 1)
        seen = [(s.room_name, s.identity, s.agent_identity) for s in worker._sessions.values()]
        factory.gate.set()
        with pytest.raises(AvatarWorkerError) as failed:
            await task
        unreachable = AvatarSession(
            worker_url=f"http://127.0.0.1:{closed_port()}", api_key=KEY, api_secret=SECRET
        )
        with pytest.raises(AvatarWorkerError) as nobody:
            await unreachable.request_avatar("room-9", "agent-9")
        await worker.stop()
        return {"seen": seen, "failed": failed.value, "nobody": nobody.value, "factory": factory}

    r = asyncio.run(run())
    assert r["seen"] == [("room-9", "vlogger-avatar", "agent-9")]
    assert r["factory"].calls[0][0] == b"\xff\xd8 a jpeg's bytes"
    assert (r["failed"].status, r["failed"].code) == (502, "join_failed")
    assert (r["nobody"].status, r["nobody"].code) == (0, "unreachable")


def test_plugin_passes_the_avatar_to_the_next_worker_when_one_is_full_or_gone() -> None:
    async def run() -> dict[str, Any]:
        full_factory, free_factory = Factory(gate=True), Factory(gate=True)
        full = await started_worker(full_factory, max_sessions=1, connect_timeout_s=5.0)
        free = await started_worker(free_factory, connect_timeout_s=5.0)
        hold = asyncio.create_task(
            post(full, {"token": token(room="room-0", identity="a0", agent="agent-0")})
        )
        await wait_until(lambda: full.sessions == 1)
        gone = f"http://127.0.0.1:{closed_port()}"
        plugin = AvatarSession(worker_url=[gone, full.url, free.url], api_key=KEY, api_secret=SECRET)
        task = asyncio.create_task(plugin.request_avatar("room-5", "agent-5"))
        await wait_until(lambda: free.sessions == 1)
        rooms = (
            [s.room_name for s in full._sessions.values()],
            [s.room_name for s in free._sessions.values()],
        )
        full_factory.gate.set()
        free_factory.gate.set()
        with pytest.raises(AvatarWorkerError) as failed:  # the free worker took it, then found no server
            await task
        await hold
        # a refusal that is not about capacity is not passed on
        strict = AvatarSession(worker_url=[full.url, free.url], api_key=KEY, api_secret="another-secret" * 3)
        with pytest.raises(AvatarWorkerError) as refused:
            await strict.request_avatar("room-6", "agent-6")
        sessions = (full.sessions, free.sessions)
        await full.stop()
        await free.stop()
        return {"rooms": rooms, "failed": failed.value, "refused": refused.value, "sessions": sessions}

    r = asyncio.run(run())
    assert r["rooms"] == (["room-0"], ["room-5"])  # skipped the unreachable and the full worker
    assert (r["failed"].status, r["failed"].code) == (502, "join_failed")
    assert (r["refused"].status, r["refused"].code) == (401, "bad_token")
    assert r["sessions"] == (0, 0)
    monkeypatched = AvatarSession(worker_url="http://a:1, http://b:2/", api_key=KEY, api_secret=SECRET)
    assert monkeypatched.worker_urls == ["http://a:1", "http://b:2"]


def test_plugin_needs_credentials_and_a_connected_room(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIVEKIT_API_KEY", raising=False)
    monkeypatch.delenv("LIVEKIT_API_SECRET", raising=False)
    with pytest.raises(ValueError, match="LIVEKIT_API_KEY"):
        AvatarSession()
    with pytest.raises(ValueError, match="http"):
        AvatarSession(worker_url="ws://127.0.0.1:1", api_key=KEY, api_secret=SECRET)
    monkeypatch.setenv("LIVEKIT_API_KEY", KEY)
    monkeypatch.setenv("LIVEKIT_API_SECRET", SECRET)
    monkeypatch.setenv("VLOGGER_WORKER_URL", "http://127.0.0.1:1234/")
    assert AvatarSession().worker_url == "http://127.0.0.1:1234"

    async def run() -> None:
        from livekit.agents import AgentSession

        session = AgentSession()
        before = session.output.audio
        with pytest.raises(RuntimeError, match="connect the room"):
            await AvatarSession().start(session, rtc.Room())
        assert session.output.audio is before  # the agent's audio is left alone

    asyncio.run(run())


# -- the command line ------------------------------------------------------------------------------


def test_cli_parses_flags_and_livekit_env_vars() -> None:
    parser = build_parser()
    env = {"LIVEKIT_URL": "wss://project.livekit.cloud", "LIVEKIT_API_KEY": "k1", "LIVEKIT_API_SECRET": "s1"}
    worker, config = worker_settings(parser.parse_args(["livekit-worker"]), env=env)
    assert (worker.url, worker.api_key, worker.api_secret) == ("wss://project.livekit.cloud", "k1", "s1")
    assert (worker.host, worker.port) == ("127.0.0.1", DEFAULT_PORT)
    assert worker.max_sessions == session_capacity(512)
    args = parser.parse_args(
        [
            "livekit-worker",
            "--url",
            "http://127.0.0.1:7880",
            "--api-key",
            "k2",
            "--api-secret",
            "s2",
            "--port",
            "9001",
            "--max-sessions",
            "3",
            "--size",
            "256",
            "--fps",
            "20",
            "--seed",
            "7",
        ]
    )
    worker, config = worker_settings(args, env=env)
    assert (worker.url, worker.api_key, worker.api_secret, worker.port) == (
        "http://127.0.0.1:7880",
        "k2",
        "s2",
        9001,
    )
    assert worker.max_sessions == 3
    assert (config.output.height, config.output.fps, config.seed) == (256, 20.0, 7)
    assert AvatarWorker(worker, config).ws_url == "ws://127.0.0.1:7880"
    with pytest.raises(InputError, match=r"--api-secret is required \(or set LIVEKIT_API_SECRET\)"):
        worker_settings(
            parser.parse_args(["livekit-worker"]), env={"LIVEKIT_URL": "ws://h", "LIVEKIT_API_KEY": "k"}
        )
    with pytest.raises(InputError, match="must start with ws://"):
        worker_settings(parser.parse_args(["livekit-worker", "--url", "ftp://h"]), env=env)
    with pytest.raises(InputError, match="--max-sessions"):
        worker_settings(parser.parse_args(["livekit-worker", "--max-sessions", "0"]), env=env)
    with pytest.raises(InputError, match="image not found"):
        worker_settings(parser.parse_args(["livekit-worker", "--image", "/nonexistent.jpg"]), env=env)


def test_cli_without_livekit_settings_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        monkeypatch.delenv(var, raising=False)
    assert main(["livekit-worker"]) == 2
    assert "--url is required (or set LIVEKIT_URL)" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_worker_starts_serves_and_stops_on_sigterm() -> None:
    env = dict(os.environ)
    env.update(LIVEKIT_URL=f"ws://127.0.0.1:{closed_port()}", LIVEKIT_API_KEY=KEY, LIVEKIT_API_SECRET=SECRET)
    cmd = [sys.executable, "-m", "vlogger.runtime.cli", "livekit-worker", "--port", "0", "--size", "256"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        url = None
        t0 = time.monotonic()
        while url is None and time.monotonic() - t0 < 120:
            line = proc.stderr.readline()
            assert line, f"the worker exited early ({proc.poll()})"
            m = re.search(r"POST (http://127\.0\.0\.1:\d+)/v1/sessions", line)
            url = m.group(1) if m else None
        assert url is not None

        async def ask() -> tuple[int, dict[str, Any]]:
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"{url}/v1/sessions", json={"token": "x"}) as r,
            ):
                return r.status, await r.json()

        assert asyncio.run(ask())[0] == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- the in-process path: QueueAudioOutput -> generator -> AvatarRunner, on a timeline -----------


class UnpublishedRunner(VloggerAvatarRunner):
    """The runner without its one server-bound step: publishing the tracks into a room."""

    async def _publish_track(self) -> None:
        self._video_publication = True  # type: ignore[assignment]


class Recorder:
    """What leaves a runner: the audio it hands to its audio source (when, how long, and what is
    still queued once the runner is done with the push) and the video frames its synchronizer
    hands to the video source (when, and the drawn frame's index and whether it was speaking)."""

    def __init__(self, runner: VloggerAvatarRunner, drawn: list[StreamFrame[Any]]) -> None:
        self.runner = runner
        self.pushes: list[dict[str, Any]] = []
        self.shown: list[tuple[float, int | None, bool]] = []
        self.cuts: list[dict[str, Any]] = []
        of_frame: dict[int, tuple[int, bool]] = {}
        sync, video = runner.av_sync, runner._video_source
        sync_push, video_capture = sync.push, video.capture_frame
        loop = asyncio.get_running_loop()

        async def push(frame: Any, timestamp: float | None = None) -> None:
            if isinstance(frame, rtc.VideoFrame):
                of_frame[id(frame)] = (drawn[-1].index, drawn[-1].motion.speaking)
            await sync_push(frame, timestamp)
            if isinstance(frame, rtc.AudioFrame):
                # the silence the runner plays before each piece of speech (its audio delay)
                silence = abs(frame.duration - runner._audio_delay_s) < 1e-3 and not any(frame.data)
                entry = {"t": time.perf_counter(), "s": frame.duration, "queued": None, "silence": silence}
                self.pushes.append(entry)
                # once the runner is done with this push (it may empty the queue), what is left
                loop.call_soon(lambda: entry.update(queued=runner.audio_source.queued_duration))

        def capture(frame: Any, *a: Any, **kw: Any) -> None:
            self.shown.append((time.perf_counter(), *of_frame.pop(id(frame), (None, False))))
            video_capture(frame, *a, **kw)

        sync.push = push  # type: ignore[method-assign]
        video.capture_frame = capture  # type: ignore[method-assign]

    def heard(self) -> float:
        """Speech played so far: handed to the audio source, less what it still holds, less the
        silence played before the speech (one piece of speech)."""
        pushed = sum(p["s"] for p in self.pushes)
        silence = sum(p["s"] for p in self.pushes if p["silence"])
        return max(0.0, pushed - self.runner.audio_source.queued_duration - silence)

    def on_clear_buffer(self) -> None:
        """Registered before the runner's own handler: records when an interruption reached the
        avatar, what had been heard then, and what the audio source still held after the runner
        handled it."""
        cut = {"t": time.perf_counter(), "heard": self.heard(), "queued_after": None}
        self.cuts.append(cut)
        asyncio.get_running_loop().call_soon(
            lambda: cut.update(queued_after=self.runner.audio_source.queued_duration)
        )


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    """About 2.4 s of the packaged piper voice (mono float32)."""
    from vlogger.engines.tts import PiperTTS

    tts = PiperTTS(VloggerConfig().tts)
    text = "Hello there, how are you doing today? I hope that all is well with you."
    pcm = np.concatenate([c.pcm for c in tts.synthesize(text, 0.0)])
    assert pcm.size >= 2.4 * tts.sample_rate
    return pcm[: int(2.4 * tts.sample_rate)].astype(np.float32), tts.sample_rate


def agent_frames(pcm: np.ndarray, rate: int, seconds: float) -> list[rtc.AudioFrame]:
    i16 = np.clip(np.round(pcm[: int(seconds * rate)] * 32767), -32768, 32767).astype(np.int16)
    step = rate // 50
    return [
        rtc.AudioFrame(i16[a : a + step].tobytes(), rate, 1, i16[a : a + step].size)
        for a in range(0, i16.size, step)
    ]


async def in_process_avatar() -> tuple[VloggerVideoGenerator, QueueAudioOutput, UnpublishedRunner, Recorder]:
    drawn: list[StreamFrame[Any]] = []
    stream = await asyncio.to_thread(build_avatar_stream, small_config())
    gen = VloggerVideoGenerator(stream, on_frame=drawn.append)
    agent_out = QueueAudioOutput(wait_playback_start=True)  # what AgentSession.output.audio would be
    runner = UnpublishedRunner(rtc.Room(), audio_recv=agent_out, video_gen=gen, options=gen.avatar_options())
    recorder = Recorder(runner, drawn)
    agent_out.on("clear_buffer", recorder.on_clear_buffer)
    await runner.start()
    await wait_until(lambda: len(recorder.shown) >= 10, 30.0)  # idle frames flow (past the warm-up)
    return gen, agent_out, runner, recorder


def check_cut(rec: Recorder) -> None:
    """Nothing of the cut speech comes out more than 80 ms after the interruption."""
    assert len(rec.cuts) == 1
    t_cut, queued_after_cut = rec.cuts[0]["t"], rec.cuts[0]["queued_after"]
    # sound: what was queued is dropped at once, and a push under way at the cut ends (with what
    # it left queued) within 80 ms
    assert queued_after_cut <= 0.08
    sound_ends = [p["t"] - t_cut + p["queued"] for p in rec.pushes if p["t"] > t_cut]
    assert all(end <= 0.08 for end in sound_ends), sound_ends
    # pictures, on the stream's clock (wall-clock timing would follow the machine's load): after
    # the last frame shown before the cut, speaking frames only within 80 ms (2 frames at 25 fps)
    before = [index for t, index, _ in rec.shown if t <= t_cut and index is not None]
    after = [(t - t_cut, index, speaking) for t, index, speaking in rec.shown if t > t_cut]
    assert before and len(after) >= 5, after
    late = [(dt, index) for dt, index, speaking in after if speaking and index > before[-1] + 0.08 * FPS]
    assert late == [], after[:6]


def test_queue_audio_output_timeline_interruption_and_full_segment(speech: tuple[np.ndarray, int]) -> None:
    pcm, rate = speech

    async def run() -> dict[str, Any]:
        gen, agent_out, runner, rec = await in_process_avatar()
        events: list[tuple[float, Any]] = []
        agent_out.on("playback_started", lambda ev: events.append((time.perf_counter(), ev)))
        agent_out.on("playback_finished", lambda ev: events.append((time.perf_counter(), ev)))
        # the agent speaks 2.4 s (faster than real time, as TTS does) and is interrupted at 1 s
        for f in agent_frames(pcm, rate, 2.4):
            await agent_out.capture_frame(f)
        agent_out.flush()
        await wait_until(lambda: rec.heard() >= 1.0, 30.0)
        agent_out.clear_buffer()  # what AgentSession does on an interruption
        first = await asyncio.wait_for(agent_out.wait_for_playout(), 5.0)
        t_cut, heard_at_cut = rec.cuts[0]["t"], rec.cuts[0]["heard"]
        await wait_until(lambda: sum(t > t_cut for t, _, _ in rec.shown) >= 5, 30.0)
        check_cut(rec)
        # an uninterrupted segment of 0.8 s
        for f in agent_frames(pcm, rate, 0.8):
            await agent_out.capture_frame(f)
        agent_out.flush()
        second = await asyncio.wait_for(agent_out.wait_for_playout(), 30.0)
        await runner.aclose()
        await gen.aclose()
        return {"t_cut": t_cut, "heard": heard_at_cut, "first": first, "second": second, "events": events}

    r = asyncio.run(run())
    first, second = r["first"], r["second"]
    # interrupted: LiveKit hears interrupted=True, at once, and the position actually played
    assert first.interrupted is True
    finished_at = next(t for t, ev in r["events"] if ev is first)
    assert finished_at - r["t_cut"] <= 0.08  # the agent waits for this answer
    assert abs(first.playback_position - r["heard"]) <= 0.08
    assert 0.95 <= first.playback_position <= 1.2
    # uninterrupted: interrupted=False and the whole segment
    assert second.interrupted is False
    assert abs(second.playback_position - 0.8) <= 1.0 / FPS
    kinds = [type(ev).__name__ for _, ev in r["events"]]
    assert kinds == ["PlaybackStartedEvent", "PlaybackFinishedEvent"] * 2  # once per segment


def test_agent_session_say_and_interrupt_through_the_in_process_avatar(
    speech: tuple[np.ndarray, int],
) -> None:
    """The in-process example's path with LiveKit's own ``AgentSession``: ``say`` -> ``QueueAudioOutput``
    -> the generator -> the runner; the framework sees the interruption and the full segment."""
    from livekit.agents import Agent, AgentSession

    pcm, rate = speech

    async def frames(seconds: float) -> Any:
        for f in agent_frames(pcm, rate, seconds):
            yield f

    async def run() -> dict[str, Any]:
        gen, agent_out, runner, rec = await in_process_avatar()
        session: AgentSession[None] = AgentSession()
        session.output.audio = agent_out
        items: list[Any] = []
        session.on("conversation_item_added", lambda ev: items.append(ev.item))
        started: list[float] = []
        finished: list[Any] = []
        agent_out.on("playback_started", lambda ev: started.append(time.perf_counter()))
        agent_out.on("playback_finished", finished.append)
        await session.start(Agent(instructions="say what you are given"))
        handle = session.say("Hello there, how are you doing today?", audio=frames(2.4))
        await wait_until(lambda: rec.heard() >= 1.0, 30.0)
        t_interrupt = time.perf_counter()
        handle.interrupt()
        await asyncio.wait_for(handle.wait_for_playout(), 5.0)
        t_cut, heard_at_cut = rec.cuts[0]["t"], rec.cuts[0]["heard"]
        await wait_until(lambda: sum(t > t_cut for t, _, _ in rec.shown) >= 5, 30.0)
        check_cut(rec)
        second = session.say("I am fine.", audio=frames(0.8))
        await asyncio.wait_for(second.wait_for_playout(), 30.0)
        await session.aclose()
        await runner.aclose()
        await gen.aclose()
        spoken = [i for i in items if getattr(i, "role", None) == "assistant"]
        return {
            "elapsed": t_cut - started[0],
            "lag": t_cut - t_interrupt,
            "heard": heard_at_cut,
            "finished": finished,
            "handles": (handle, second),
            "spoken": spoken,
        }

    r = asyncio.run(run())
    first, second = r["finished"]
    assert first.interrupted is True and second.interrupted is False
    assert r["lag"] <= 0.05, r["lag"]  # interrupt() reaches the avatar's buffer at once
    assert abs(first.playback_position - r["heard"]) <= 0.08
    assert first.playback_position <= r["elapsed"] + 0.08  # never more than real time allowed
    assert abs(second.playback_position - 0.8) <= 1.0 / FPS
    assert [h.interrupted for h in r["handles"]] == [True, False]
    assert [i.interrupted for i in r["spoken"]] == [True, False]
    assert all(i.metrics.get("playback_latency") is not None for i in r["spoken"])  # AvatarMetrics' source
