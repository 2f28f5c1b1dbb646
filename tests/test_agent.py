"""The /agent socket: access (token, loopback, origin), attach and create, event fan-out, the
small client, a flooding agent, an agent that vanishes mid-reply, and the example agent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conversation_fakes import ListeningFakeEngines
from fakes import run_async
from test_server import Client, serving
from websockets.asyncio.client import connect
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus
from websockets.http11 import Request
from websockets.typing import Origin

from vlogger.runtime.agent import agent_access
from vlogger.runtime.client import AgentError
from vlogger.runtime.client import connect as agent_connect

ROOT = Path(__file__).resolve().parents[1]


class Page:
    """A /ws client that reads all the time (a client that stops reading is dropped by the
    server's keepalive) and waits for events by predicate."""

    def __init__(self, client: Client) -> None:
        self.ws = client.ws
        self.events: list[dict[str, Any]] = list(client.events)
        self._task = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, server: Any) -> Page:
        return cls(await Client.open(server))

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for msg in self.ws:
                self.events.append(json.loads(msg))

    async def expect(self, pred: Any, timeout: float = 5.0, since: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events[since:]:
                if pred(ev):
                    return ev
            assert time.monotonic() < deadline, f"no matching event; last: {self.events[-5:]}"
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        await self.ws.close()
        self._task.cancel()


def _hear(server: Any, session_id: str, text: str) -> None:
    """Inject a final transcript into a session, as its listener would."""
    conv = server.sessions[session_id].conversation
    conv._on_listener_event({"type": "transcript", "text": text, "final": True, "t_start": 1.0, "t_end": 2.0})


def test_access_rules() -> None:
    req = Request("/agent", Headers([("Authorization", "Bearer s3cret")]))
    assert agent_access(req, ("10.1.2.3", 5000), "s3cret") is None
    assert agent_access(req, ("10.1.2.3", 5000), "other")[0] == 401  # type: ignore[index]
    bare = Request("/agent", Headers())
    assert agent_access(bare, ("127.0.0.1", 5000), "s3cret")[0] == 401  # type: ignore[index]
    assert agent_access(bare, ("127.0.0.1", 5000), None) is None
    assert agent_access(bare, ("::1", 5000, 0, 0), None) is None
    denied = agent_access(bare, ("192.168.1.20", 5000), None)
    assert denied is not None and denied[0] == 403 and "loopback" in denied[1]


@run_async
async def test_token_is_required_and_checked() -> None:
    async with serving(ListeningFakeEngines(), token="s3cret") as server:
        url = f"ws://127.0.0.1:{server.port}/agent"
        for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            with pytest.raises(InvalidStatus, match="401"):
                await connect(url, additional_headers=headers)
        with pytest.raises(AgentError, match="401"):
            async with agent_connect(url, token="nope"):
                pass
        async with agent_connect(url, token="s3cret") as s:
            assert s.info["type"] == "session" and s.id in server.sessions
        with pytest.raises(InvalidStatus, match="403"):  # a web page elsewhere may not drive agents
            await connect(
                url,
                origin=Origin("http://evil.example"),
                additional_headers={"Authorization": "Bearer s3cret"},
            )


@run_async
async def test_attached_agent_hears_the_user_and_replaces_the_brain() -> None:
    engines = ListeningFakeEngines()
    async with serving(engines) as server:
        page = await Page.open(server)
        sid = page.events[0]["id"]
        _hear(server, sid, "hello avatar")  # no agent: the echo brain says it back
        ev = await page.expect(lambda e: e["type"] == "utterance" and e["state"] == "queued")
        assert ev["id"] == "r1" and ev["text"] == "hello avatar"
        url = f"ws://127.0.0.1:{server.port}/agent"
        with pytest.raises(AgentError, match="unknown_session"):
            async with agent_connect(url, session="nope"):
                pass
        async with agent_connect(url, session=sid) as agent:
            assert agent.info == {"type": "attached", "session": sid, "version": "test"}
            await page.expect(lambda e: e["type"] == "agent" and e["state"] == "attached")
            _hear(server, sid, "what time is it")
            async for ev in agent:
                if ev["type"] == "transcript":
                    break
            assert ev["text"] == "what time is it" and ev["final"] is True
            uid = await agent.say("It is tea time.")  # (no media here: it stays queued)
            async for ev in agent:
                if ev["type"] == "utterance":
                    break
            assert ev == {"type": "utterance", "id": uid, "state": "queued"}
            await page.expect(lambda e: e.get("id") == uid and e.get("state") == "queued")
            brain_ids = [e["id"] for e in page.events if e["type"] == "utterance" and e["id"].startswith("r")]
            assert set(brain_ids) == {"r1"}, "the brain answered while an agent was attached"
            await agent.send({"type": "offer", "sdp": "v=0\r\nm=video 9 x\r\n"})
            async for ev in agent:
                if ev["type"] == "error":
                    break
            assert ev["code"] == "bad_state"  # the page owns the media
        await page.expect(lambda e: e["type"] == "agent" and e["state"] == "detached")
        await page.close()


@run_async
async def test_headless_session_flood_is_bounded_and_a_vanished_agent_frees_everything() -> None:
    async with serving(ListeningFakeEngines(synth_latency_s=0.0)) as server:
        neighbour = await Page.open(server)
        url = f"ws://127.0.0.1:{server.port}/agent"
        ws = await connect(url)
        await ws.send('{"type":"say","text":"too early"}')
        assert json.loads(await ws.recv())["code"] == "not_attached"
        await ws.send('{"type":"create"}')
        info = json.loads(await ws.recv())
        assert info["type"] == "session" and server.sessions[info["id"]].headless
        for i in range(40):  # faster than speech can play
            await ws.send(json.dumps({"type": "say", "id": f"f{i}", "text": f"sentence number {i}"}))
        full = 0
        deadline = time.monotonic() + 5
        while full < 8 and time.monotonic() < deadline:
            ev = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if ev["type"] == "error":
                assert ev["code"] == "queue_full" and "32" in ev["message"]
                full += 1
        assert full == 8
        await ws.send('{"type":"audio.start","id":"a1","sample_rate":16000}')
        await ws.send(b"\x00\x01" * 4000)
        ws.transport.abort()  # vanishes mid-reply, mid-segment
        t0 = time.monotonic()
        while info["id"] in server.sessions:
            assert time.monotonic() - t0 < 3, "the headless session outlived its agent"
            await asyncio.sleep(0.05)
        await neighbour.ws.send('{"type":"say","id":"n1","text":"still fine"}')
        await neighbour.expect(lambda e: e.get("id") == "n1" and e.get("state") == "queued", 5)
        await neighbour.close()
    leftover = [t.name for t in threading.enumerate() if t.name.startswith("vlogger-")]
    assert not [n for n in leftover if n != "vlogger-tts-preload"], leftover


@run_async
async def test_agent_that_leaves_mid_segment_closes_it_and_the_page_goes_on() -> None:
    from benchmarks.receiver import Receiver

    async with serving(ListeningFakeEngines()) as server:
        page = Receiver(f"ws://127.0.0.1:{server.port}/ws", keep_frames=False)
        await page.connect()
        await page.wait_media(5)
        sid = page.session["id"]
        ws = await connect(f"ws://127.0.0.1:{server.port}/agent")
        await ws.send(json.dumps({"type": "attach", "session": sid}))
        assert json.loads(await ws.recv())["type"] == "attached"
        await ws.send('{"type":"audio.start","id":"a1","sample_rate":16000}')
        await ws.send(b"\x10\x00" * 8000)
        await page.wait_utterance("a1", "started", 5)
        await page.send(b"\x00\x00")  # the page may not write into the agent's segment
        err = await page.wait_event(lambda e: e["type"] == "error", 3)
        assert err["code"] == "bad_audio" and "another client" in err["message"]
        await ws.close()  # gone before audio.end
        await page.wait_event(lambda e: e["type"] == "agent" and e["state"] == "detached", 3)
        await page.wait_utterance("a1", "done", 5)  # what arrived plays out; nothing hangs
        session = server.sessions[sid]
        assert session.agents == set() and session._segment is None
        await page.say("after the agent", id="p1")
        await page.wait_utterance("p1", "done", 5)
        await page.close()


@run_async
async def test_example_agent_answers_a_transcript_against_a_real_server() -> None:
    engines = ListeningFakeEngines()
    async with serving(engines) as server:
        page = await Page.open(server)
        sid = page.events[0]["id"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "examples" / "agent.py"),
            "--url",
            f"ws://127.0.0.1:{server.port}/agent",
            "--session",
            sid,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert f"attached to session {sid}" in line.decode()
            _hear(server, sid, "good morning")
            await page.expect(lambda e: e["type"] == "utterance" and e["state"] == "queued", 10)
            deadline = time.monotonic() + 5
            while not (spoken := [c for tts in engines.tts for c in tts.calls]):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert spoken == ["You said: good morning That was 2 words"], spoken
        finally:
            await page.close()  # the session ends: the agent is told and exits
            try:
                assert await asyncio.wait_for(proc.wait(), 10) == 0
            finally:
                if proc.returncode is None:
                    proc.kill()
