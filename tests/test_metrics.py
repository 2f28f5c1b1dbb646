"""``GET /metrics`` of a real server on 127.0.0.1 with fake engines: the Prometheus text format,
stage histograms after a ``say``, per-session gauges that leave with their session, session
counters, the token."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

from fakes import FakeEngines, run_async
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from benchmarks.receiver import Receiver
from vlogger.runtime.metrics import ServerMetrics
from vlogger.runtime.server import VloggerServer
from vlogger.runtime.server_config import ServerConfig

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@contextlib.asynccontextmanager
async def serving(**cfg: Any) -> AsyncIterator[VloggerServer]:
    cfg.setdefault("loopback_ice", True)
    cfg.setdefault("max_sessions", 16)
    server = VloggerServer(FakeEngines(), ServerConfig(host="127.0.0.1", port=0, **cfg), version="test")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


async def scrape(server: VloggerServer, headers: dict[str, str] | None = None) -> Samples:
    """Every sample of ``/metrics`` by (name, sorted labels)."""
    status, ctype, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{server.port}/metrics", headers)
    assert status == 200, body
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def session_samples(samples: Samples, session_id: str) -> dict[str, float]:
    return {name: v for (name, labels), v in samples.items() if ("session", session_id) in labels}


@run_async
async def test_stage_histograms_and_session_gauges() -> None:
    async with serving() as server:
        before = await scrape(server)
        assert before[("vlogger_sessions_open", ())] == 0
        assert before[("vlogger_say_to_first_frame_seconds_count", ())] == 0
        assert before[("vlogger_sessions_refused_total", (("reason", "server_busy"),))] == 0
        rx = Receiver(f"ws://127.0.0.1:{server.port}/ws")
        await rx.connect()
        sid = rx.session["id"]
        try:
            await rx.wait_media(5)
            await rx.say("Hello, metrics.", id="m1")
            await rx.wait_utterance("m1", "done", 10)
            n = len(rx.events)
            await rx.wait_event(lambda e: e["type"] == "stats" and e["fps"] > 0, 3, since=n)
            samples = await scrape(server)
        finally:
            await rx.close()
        for stage in ("say_to_first_frame", "tts_first_chunk", "motion", "render_frame"):
            assert samples[(f"vlogger_{stage}_seconds_count", ())] >= 1, stage
        assert 0 < samples[("vlogger_say_to_first_frame_seconds_sum", ())] < 5
        gauges = session_samples(samples, sid)
        assert 20 <= gauges["vlogger_session_sent_frames_per_second"] <= 30
        assert 0 <= gauges["vlogger_session_rendered_frames_per_second"] <= 30
        assert gauges["vlogger_session_queued_frames"] >= 0
        assert gauges["vlogger_session_queued_utterances"] == 0  # said and done
        assert 0 <= gauges["vlogger_session_audio_buffer_seconds"] < 10
        assert samples[("vlogger_sessions_open", ())] == 1
        assert samples[("vlogger_sessions_started_total", ())] == 1
        deadline = time.monotonic() + 3
        while server.sessions:
            assert time.monotonic() < deadline, "session not freed"
            await asyncio.sleep(0.05)
        after = await scrape(server)
        assert session_samples(after, sid) == {}
        assert after[("vlogger_sessions_open", ())] == 0
        assert after[("vlogger_say_to_first_frame_seconds_count", ())] >= 1  # histograms stay


@run_async
async def test_refused_sessions_are_counted() -> None:
    async with serving(max_sessions=1) as server:
        url = f"ws://127.0.0.1:{server.port}/ws"
        first = await connect(url)
        assert json.loads(await first.recv())["type"] == "session"
        second = await connect(url)
        assert json.loads(await second.recv())["code"] == "server_busy"
        await second.close()
        samples = await scrape(server)
        assert samples[("vlogger_sessions_refused_total", (("reason", "server_busy"),))] == 1
        assert samples[("vlogger_sessions_started_total", ())] == 1
        await first.close()


@run_async
async def test_metrics_need_the_token_when_one_is_set() -> None:
    async with serving(token="s3cret") as server:
        url = f"http://127.0.0.1:{server.port}/metrics"
        assert (await asyncio.to_thread(_get, url))[0] == 401
        assert (await asyncio.to_thread(_get, url, {"Authorization": "Bearer nope"}))[0] == 401
        samples = await scrape(server, {"Authorization": "Bearer s3cret"})
        assert ("vlogger_sessions_open", ()) in samples


def test_each_server_has_its_own_registry() -> None:
    a, b = ServerMetrics(), ServerMetrics()
    a.stages.render_frame.observe(0.01)
    a.session_stats("s1", {"fps": 25.0, "audio_buffer_ms": 250.0})
    assert b"vlogger_render_frame_seconds_count 1.0" in a.exposition()
    assert b"vlogger_render_frame_seconds_count 0.0" in b.exposition()
    assert b'vlogger_session_audio_buffer_seconds{session="s1"} 0.25' in a.exposition()
    a.session_closed("s1")
    a.session_closed("never-opened")
    assert b'session="s1"' not in a.exposition()
