"""The server over real sockets with fake engines: HTTP, the /ws protocol, bad input, isolation
between sessions, WebRTC on loopback, freeing sessions, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from fakes import FakeEngines, mouth_open, run_async
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from benchmarks.receiver import Receiver
from vlogger.runtime.server import VloggerServer
from vlogger.runtime.server_config import ServerConfig


@contextlib.asynccontextmanager
async def serving(engines: FakeEngines | None = None, **cfg: Any) -> AsyncIterator[VloggerServer]:
    cfg.setdefault("loopback_ice", True)
    cfg.setdefault("max_sessions", 16)  # fakes cost nothing: capacity is tested on its own
    server = VloggerServer(engines or FakeEngines(), ServerConfig(port=0, **cfg), version="test")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


class Client:
    """A bare /ws client that collects events."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, server: VloggerServer, **kw: Any) -> Client:
        c = cls(await connect(f"ws://127.0.0.1:{server.port}/ws", **kw))
        assert (await c.next())["type"] == "session"
        return c

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        ev = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.events.append(ev)
        return ev

    async def expect(self, pred: Any, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            ev = await self.next(max(0.01, deadline - time.monotonic()))
            if pred(ev):
                return ev

    async def error_for(self, raw: str | bytes) -> dict[str, Any]:
        await self.ws.send(raw)
        return await self.expect(lambda e: e["type"] == "error")


@run_async
async def test_http_page_health_and_404() -> None:
    async with serving() as server:
        base = f"http://127.0.0.1:{server.port}"
        status, ctype, body = await asyncio.to_thread(_get, base + "/healthz")
        assert status == 200 and ctype == "application/json"
        assert json.loads(body) == {"status": "ok", "version": "test", "sessions": 0}
        status, ctype, body = await asyncio.to_thread(_get, base + "/")
        assert status == 200 and ctype.startswith("text/html") and b"<video" in body
        status, ctype, body = await asyncio.to_thread(_get, base + "/app.js")
        assert status == 200 and "javascript" in ctype and b"RTCPeerConnection" in body
        for bad in ("/nope.js", "/../pyproject.toml", "/%2e%2e/README.md", "/__init__.py"):
            assert (await asyncio.to_thread(_get, base + bad))[0] == 404
        # the page's own origin may open /ws, another web site may not
        own = await connect(f"ws://127.0.0.1:{server.port}/ws", origin=Origin(base))
        assert json.loads(await own.recv())["type"] == "session"
        await own.close()
        with pytest.raises(Exception, match="403"):
            await connect(f"ws://127.0.0.1:{server.port}/ws", origin=Origin("http://evil.example"))


@run_async
async def test_bad_input_gets_error_events_and_the_session_lives_on() -> None:
    async with serving() as server:
        c = await Client.open(server)
        session = c.events[0]
        assert session["ice_servers"] == [] and session["max_queued_utterances"] == 32
        cases: list[tuple[str | bytes, str]] = [
            ("{oops", "bad_json"),
            ('{"type":"teleport"}', "unknown_type"),
            (b"\x01\x02\x03\x04", "bad_audio"),
            ('{"type":"offer","sdp":"not an sdp"}', "bad_sdp"),
            ('{"type":"offer","sdp":"v=0\\r\\nm=garbage\\r\\n"}', "bad_sdp"),
            ('{"type":"audio.end"}', "bad_state"),
            ('{"type":"say","text":""}', "bad_text"),
            ('{"type":"avatar","image":"bm9mYWNlIGhlcmU="}', "bad_image"),  # b"noface here"
        ]
        for raw, code in cases:
            ev = await c.error_for(raw)
            assert ev["code"] == code, (raw, ev)
            assert len(ev["message"]) > 5
        await c.ws.send('{"type":"avatar","image":"aGVsbG8="}')
        ev = await c.expect(lambda e: e["type"] in ("avatar", "error"))
        assert ev == {"type": "avatar", "width": 64, "height": 64, "faces": 1}
        await c.ws.send('{"type":"audio.start","id":"a1","sample_rate":16000}')
        assert (await c.expect(lambda e: e["type"] == "utterance")) == {
            "type": "utterance",
            "id": "a1",
            "state": "queued",
        }
        ev = await c.error_for(b"\x00\x01\x02")
        assert ev["code"] == "bad_audio" and "even" in ev["message"]
        ev = await c.error_for('{"type":"audio.start"}')
        assert ev["code"] == "bad_state"
        await c.ws.send('{"type":"audio.end","id":"a1"}')
        await c.ws.send('{"type":"say","text":"still here"}')
        ev = await c.expect(lambda e: e["type"] == "utterance" and e["id"] == "u1")
        assert ev["state"] == "queued"  # the server numbered it
        await c.ws.close()


@run_async
async def test_burst_of_100_says_queues_32_then_queue_full() -> None:
    async with serving() as server:
        c = await Client.open(server)
        for i in range(100):
            await c.ws.send(json.dumps({"type": "say", "id": f"s{i}", "text": f"number {i}"}))
        got: dict[str, str] = {}
        while len(got) < 100:
            ev = await c.next()
            if ev["type"] == "utterance" and ev["state"] == "queued":
                got[ev["id"]] = "queued"
            elif ev["type"] == "error":
                assert ev["code"] == "queue_full"
                got[ev["id"]] = "queue_full"
        assert [k for k, v in got.items() if v == "queued"] == [f"s{i}" for i in range(32)]
        assert sum(v == "queue_full" for v in got.values()) == 68
        await c.ws.send('{"type":"interrupt"}')
        cut: set[str] = set()
        while len(cut) < 32:
            ev = await c.next()
            if ev["type"] == "utterance" and ev["state"] == "interrupted":
                cut.add(ev["id"])
        await c.ws.send('{"type":"say","id":"after","text":"room again"}')
        await c.expect(lambda e: e.get("id") == "after" and e["type"] == "utterance")


@run_async
async def test_huge_message_closes_only_that_socket() -> None:
    async with serving() as server:
        neighbour = await Client.open(server)
        big = await Client.open(server)
        assert len(server.sessions) == 2
        payload = json.dumps({"type": "avatar", "image": "A" * (10 * 1024 * 1024)})
        with contextlib.suppress(ConnectionClosed):
            await big.ws.send(payload)
            await big.ws.recv()
            await big.ws.recv()
        await asyncio.wait_for(big.ws.wait_closed(), 5)
        assert big.ws.close_code == 1009
        # the neighbour still gets its stats every second and can speak
        t0 = time.monotonic()
        await neighbour.expect(lambda e: e["type"] == "stats", timeout=2.5)
        await neighbour.ws.send('{"type":"say","id":"n1","text":"fine"}')
        await neighbour.expect(lambda e: e.get("id") == "n1")
        assert time.monotonic() - t0 < 3
        deadline = time.monotonic() + 2
        while len(server.sessions) != 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)


@run_async
async def test_client_that_never_reads_does_not_stall_its_neighbour() -> None:
    async with serving(event_queue_size=64) as server:
        neighbour = await Client.open(server)
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", server.port))
        raw.sendall(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        while len(server.sessions) < 2:
            await asyncio.sleep(0.01)
        frame = _masked_text(json.dumps({"type": "y" * 4000}))  # each answered by a ~100 B error
        raw.setblocking(False)
        t0 = time.monotonic()
        stats_times = []
        sent = 0
        freed_after = None
        while time.monotonic() - t0 < 3.5:
            with contextlib.suppress(BlockingIOError, ConnectionError, OSError):
                for _ in range(200):
                    raw.send(frame)
                    sent += 1
            with contextlib.suppress(TimeoutError):
                ev = await neighbour.next(timeout=0.05)
                if ev["type"] == "stats":
                    stats_times.append(time.monotonic())
            if freed_after is None and len(server.sessions) == 1:
                freed_after = time.monotonic() - t0
        raw.close()
        assert sent > 1000
        assert freed_after is not None and freed_after < 3, "the silent client's session was not closed"
        assert len(stats_times) >= 3 and max(np.diff(stats_times)) < 1.6


@run_async
async def test_vanished_client_is_dropped_after_its_keepalive() -> None:
    async with serving(keepalive_s=0.3, keepalive_timeout_s=0.6) as server:
        raw = socket.create_connection(("127.0.0.1", server.port))
        raw.sendall(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        while not server.sessions:
            await asyncio.sleep(0.01)
        t0 = time.monotonic()  # from here on the client answers nothing, not even pings
        while server.sessions:
            assert time.monotonic() - t0 < 0.3 + 0.6 + 0.5 + 0.5, "a silent client outlived its keepalive"
            await asyncio.sleep(0.02)
        raw.close()


@run_async
async def test_vanished_client_is_freed_within_2s_by_default() -> None:
    async with serving() as server:  # the shipped keepalive settings
        raw = socket.create_connection(("127.0.0.1", server.port))
        raw.sendall(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        while not server.sessions:
            await asyncio.sleep(0.01)
        t0 = time.monotonic()  # silent from here on
        while server.sessions:
            assert time.monotonic() - t0 < 2.0, "a vanished client was not freed within 2 s"
            await asyncio.sleep(0.02)
        raw.close()


def _masked_text(text: str) -> bytes:
    data = text.encode()
    mask = b"\x01\x02\x03\x04"
    header = b"\x81" + (bytes([0x80 | 126]) + len(data).to_bytes(2, "big") if len(data) < 65536 else b"")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


@run_async
async def test_server_busy_past_max_sessions() -> None:
    async with serving(max_sessions=1) as server:
        first = await Client.open(server)
        ws = await connect(f"ws://127.0.0.1:{server.port}/ws")
        ev = json.loads(await ws.recv())
        assert ev["type"] == "error" and ev["code"] == "server_busy"
        await asyncio.wait_for(ws.wait_closed(), 3)
        assert ws.close_code == 1013
        await first.ws.close()


@run_async
async def test_webrtc_session_on_loopback_speaks_and_is_freed_on_close() -> None:
    async with serving(FakeEngines(size=96)) as server:
        rx = Receiver(f"ws://127.0.0.1:{server.port}/ws")
        await rx.connect()
        await rx.wait_media(5)
        ev = await rx.wait_event(lambda e: e["type"] == "stats" and e["fps"] > 0, 3)
        assert ev["width"] == 96
        t_say = await rx.say("Hello over the network", id="w1")
        t_start = await rx.wait_utterance("w1", "started", 3)
        await rx.wait_utterance("w1", "done", 5)
        await asyncio.sleep(0.2)
        await rx.send({"type": "offer", "sdp": rx.pc.localDescription.sdp})
        err = await rx.wait_event(lambda e: e["type"] == "error", 3)
        assert err["code"] == "bad_state"
        # lips and sound arrive together (network arrival; fake mouth bar vs tone)
        v_on = [
            v.arrival for v in rx.video if v.arrival > t_say and v.rgb is not None and mouth_open(v.rgb) > 0.3
        ]
        a_on = [a.arrival for a in rx.audio if a.arrival > t_say and np.abs(a.pcm).max() > 0.1]
        assert v_on and a_on and abs(v_on[0] - a_on[0]) < 0.03
        assert t_start - t_say < 0.5
        assert rx.fps(t_say, t_say + 1.0) == pytest.approx(25, abs=3)
        assert rx.video[-1].rgb.shape == (96, 96, 3)
        assert len(server.sessions) == 1
        t_close = time.monotonic()
        await rx.close()
        while server.sessions:
            assert time.monotonic() - t_close < 2.0, "session not freed within 2 s"
            await asyncio.sleep(0.02)
        _, _, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{server.port}/healthz")
        assert json.loads(body)["sessions"] == 0
    threads = [t for t in __import__("threading").enumerate() if t.name.startswith("vlogger-")]
    assert not threads, threads


def test_cli_serve_stops_cleanly_on_sigterm(tmp_path: Any) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vlogger.runtime",
            "serve",
            "--port",
            "0",
            "--size",
            "128",
            "--log-level",
            "warning",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stderr is not None
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            m = re.search(r"open (http://\S+)", line)
            url = m.group(1) if m else None
        assert url, "server did not come up"
        status, _, body = _get(url + "healthz")
        assert status == 200 and json.loads(body)["sessions"] == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert "stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@run_async
async def test_offer_that_also_sends_a_microphone_is_accepted() -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import AudioStreamTrack

    async with serving(FakeEngines(size=64)) as server:
        c = await Client.open(server)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(AudioStreamTrack())  # sendrecv audio: the microphone of a later issue
        pc.addTransceiver("video", direction="recvonly")
        got: list[str] = []
        pc.on("track", lambda track: got.append(track.kind))
        await pc.setLocalDescription(await pc.createOffer())
        await c.ws.send(json.dumps({"type": "offer", "sdp": pc.localDescription.sdp}))
        answer = await c.expect(lambda e: e["type"] in ("answer", "error"))
        assert answer["type"] == "answer", answer
        assert "a=sendrecv" in answer["sdp"]  # the server sends its voice on the mic's transceiver
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        await c.expect(lambda e: e["type"] == "connection" and e["state"] == "connected", 10)
        assert sorted(got) == ["audio", "video"]
        await pc.close()
        await c.ws.close()
