"""Hostile clients against ``vlogger serve``: what each one costs a neighbour session.

The server runs as its own process (``python -m vlogger.runtime serve --loopback-ice --size 256``).
An observer process (see ``soak.py``) holds one **neighbour** session over WebRTC (an aiortc
:class:`~benchmarks.receiver.Receiver` that says a sentence every ``--say-every`` seconds)
and polls ``GET /healthz`` every 0.2 s; it runs apart from this process so that building and
sending the hostile payloads cannot delay what it measures. Then each case of the corpus runs
against the server from this process, over a fresh plain WebSocket (``websockets`` client, or a
raw socket where the case needs bytes no client library sends) or plain HTTP. Per case, over the
case and the ``--after-s`` seconds after it:

* what the server answered (``error`` codes, close code, HTTP status) and whether that is the
  documented answer (``docs/protocol.md`` and the issue);
* the neighbour's worst 1-second fps (frames whose first RTP packet arrived in each whole second
  from the case's start); target >= 22 in every case. Next to it (``rend``), the lowest
  ``stats.fps_rendered`` the neighbour's session reported: frames sent are not always new
  pictures (a late render repeats the last one), so a frozen picture shows there, not in the fps;
* ``/healthz`` round-trip p50 / p99 (the server's loop lag seen from outside; a failed probe
  counts as its 2 s timeout);
* RSS of the server and its worker processes: before, peak during, after (deltas in MB);
* whether the server is still up, and exception lines (``ERROR``, ``Traceback``) in its log.

After each case we wait (up to ``--recover-s``, 30 s) until the neighbour is back: two whole
seconds in a row of >= 22 frames with the server's RSS no longer growing; the wait is reported
(``rec``). A server that has not recovered by then, or has died, is restarted with the neighbour,
so one case's aftermath does not land on the next. The server (with its workers) is killed when
its RSS passes ``--rss-cap-mb`` (default a quarter of the RAM, at most 8 GB): the machine may be
shared, and a runaway server must not bring the kernel's OOM killer onto other processes.

A case passes when its answer is the documented one, the neighbour kept >= 22 fps, the server
stayed up, logged no exception and recovered. A baseline row (the neighbour alone for 5 s) comes
first.

``--token T`` starts the server with ``--token T`` and sends ``Authorization: Bearer T`` on
``/ws`` and ``/agent``. Prints a table, writes ``benchmarks/results/hostile.json`` and
``hostile.png`` (the neighbour's worst fps per case against the 22 fps target, and the ``/healthz``
p99). Usage::

    python benchmarks/hostile.py [--cases 'say_*,origin_*'] [--size 256] [--after-s 3]
                                 [--say-every 3.0] [--max-sessions N] [--token T] [--list]
                                 [--recover-s 30] [--rss-cap-mb MB]
    python benchmarks/hostile.py --cases 'id_newline,big_int,origin_*'    # a quick subset
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import fnmatch
import json
import os
import platform
import re
import socket
import struct
import sys
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a script from benchmarks/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.soak import (
    Observer,
    ObserverConfig,
    Server,
    add_rss_cap_argument,
    auth_headers,
    fmt_num,
    http_raw,
    lag_stats,
    open_sessions,
    sample_procs,
    wait_sessions,
    worst_second_fps,
)

RESULTS = Path(__file__).with_name("results")
TARGET_FPS = 22.0
MAX_MESSAGE = 8 * 1024 * 1024
#: A complete-looking receive-only video offer (its one candidate points at the discard port).
SDP_HEAD = "".join(
    line + "\r\n"
    for line in (
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "c=IN IP4 0.0.0.0",
        "a=mid:0",
        "a=recvonly",
        "a=rtcp-mux",
        "a=rtpmap:96 VP8/90000",
        "a=ice-ufrag:hstl",
        "a=ice-pwd:hostilehostilehostile00",
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
        "a=setup:actpass",
        "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
    )
)
_LOG_FAULT = re.compile(r"\bERROR\b|\bCRITICAL\b|Traceback")


# ---- what a case sees and returns ---------------------------------------------------------------------
@dataclass
class Ctx:
    server: Server
    token: str | None
    sockets: list[Any] = field(default_factory=list)
    """Every WebSocket a case opened (closed after the case, should it leave one open)."""

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    async def ws(self, path: str = "/ws", **kw: Any) -> Any:
        """A ``websockets`` client on ``path`` (the bearer token, no client pings, no size limit)."""
        from websockets.asyncio.client import connect

        opts: dict[str, Any] = {
            "additional_headers": auth_headers(self.token),
            "max_size": None,
            "proxy": None,
            "open_timeout": 15,
            "ping_interval": None,
            "close_timeout": 2,
            "compression": None,
        }
        opts.update(kw)
        ws = await connect(self.server.url(path), **opts)
        self.sockets.append(ws)
        return ws

    async def close_all(self) -> None:
        for ws in self.sockets:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 3.0)
        self.sockets.clear()

    async def session(self) -> Any:
        """A new ``/ws`` session, its ``session`` event read."""
        ws = await self.ws()
        first = json.loads(await asyncio.wait_for(ws.recv(), 15))
        if first.get("type") != "session":
            await ws.close()
            raise RuntimeError(f"no session event: {first}")
        return ws

    async def sessions(self) -> int | None:
        return await open_sessions(self.host, self.port)


@dataclass
class Reply:
    """What came back on one socket: events (``session``/``stats`` left out) and how it closed."""

    events: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False
    close_code: int | None = None
    close_reason: str = ""

    def codes(self) -> collections.Counter[str]:
        return collections.Counter(str(e.get("code")) for e in self.events if e.get("type") == "error")

    def states(self) -> collections.Counter[str]:
        return collections.Counter(str(e.get("state")) for e in self.events if e.get("type") == "utterance")

    def describe(self) -> str:
        parts = []
        for state, n in self.states().items():
            parts.append(state + (f" x{n}" if n > 1 else ""))
        for e in self.events:
            if e.get("type") in ("answer", "avatar"):
                parts.append(str(e["type"]))
        for code, n in self.codes().items():
            parts.append(f"error {code}" + (f" x{n}" if n > 1 else ""))
        if self.closed:
            parts.append(
                f"closed {self.close_code}" + (f" ({self.close_reason})" if self.close_reason else "")
                if self.close_code is not None
                else "closed without a close frame"
            )
        return "; ".join(parts) or "nothing"

    def first_error(self) -> str:
        for e in self.events:
            if e.get("type") == "error":
                return f"{e.get('code')}: {str(e.get('message', ''))[:160]}"
        return ""

    def first_message(self, code: str) -> str:
        for e in self.events:
            if e.get("type") == "error" and e.get("code") == code:
                return str(e.get("message", ""))[:160]
        return ""


def _closed(reply: Reply, exc: Exception) -> None:
    reply.closed = True
    rcvd = getattr(exc, "rcvd", None)
    if rcvd is not None:
        reply.close_code = int(rcvd.code)
        reply.close_reason = str(rcvd.reason)[:80]


async def collect(ws: Any, seconds: float, until: Callable[[dict[str, Any]], bool] | None = None) -> Reply:
    """Read events for ``seconds`` (or until ``until(event)``, or the socket closes)."""
    from websockets.exceptions import ConnectionClosed

    reply = Reply()
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await asyncio.wait_for(ws.recv(), left)
            except TimeoutError:
                break
            if not isinstance(msg, str):
                continue
            ev = json.loads(msg)
            if ev.get("type") in ("session", "stats", "connection"):
                continue
            reply.events.append(ev)
            if until is not None and until(ev):
                break
    except ConnectionClosed as exc:
        _closed(reply, exc)
    return reply


class Listener:
    """Reads a socket in the background while the case sends (:meth:`stop` returns the Reply)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.reply = Reply()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for msg in self.ws:
                if isinstance(msg, str):
                    ev = json.loads(msg)
                    if ev.get("type") not in ("session", "stats", "connection"):
                        self.reply.events.append(ev)
        except ConnectionClosed as exc:
            _closed(self.reply, exc)
        else:
            self.reply.closed = True
            self.reply.close_code = self.ws.close_code
            self.reply.close_reason = str(self.ws.close_reason or "")[:80]

    def errors(self) -> int:
        return sum(1 for e in self.reply.events if e.get("type") == "error")

    async def stop(self, linger: float = 0.0) -> Reply:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), linger)
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        return self.reply


@dataclass
class Outcome:
    answer: str
    ok: bool | None
    """The documented answer (``None``: nothing to judge, e.g. the baseline)."""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    expected: str
    run: Callable[[Ctx, Any], Awaitable[Outcome]]
    prepare: Callable[[], Any] | None = None
    """Builds the payload before the measured window (so building it costs nothing there)."""
    timeout_s: float = 60.0


# ---- raw sockets --------------------------------------------------------------------------------------
def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One masked client frame (mask key 0: legal, and the payload stays readable)."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 1 << 16:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


def upgrade_request(path: str, host: str, headers: dict[str, str]) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def raw_upgrade(
    ctx: Ctx, path: str, headers: dict[str, str], host: str | None = None, rcvbuf: int | None = None
) -> tuple[int | None, asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a WebSocket by hand; returns the HTTP status and the open streams (close them)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.wait_for(loop.sock_connect(sock, (ctx.host, ctx.port)), 10)
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    writer.write(
        upgrade_request(path, host or f"{ctx.host}:{ctx.port}", {**auth_headers(ctx.token), **headers})
    )
    await writer.drain()
    head = b""
    with contextlib.suppress(
        TimeoutError, asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError
    ):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return (int(m.group(1)) if m else None), reader, writer


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 2)


async def raw_get(ctx: Ctx, target: bytes) -> int | None:
    req = b"GET " + target + b" HTTP/1.1\r\nHost: " + f"{ctx.host}:{ctx.port}".encode() + b"\r\n\r\n"
    try:
        status, _ = await http_raw(ctx.host, ctx.port, req, 10)
    except (OSError, TimeoutError):
        return None
    return status


# ---- payloads -----------------------------------------------------------------------------------------
def _words(n: int) -> str:
    """``n`` characters of words with no sentence end."""
    text = ("the quick brown fox jumps over the lazy dog and keeps on running " * (n // 60 + 2))[:n]
    return text[:-1] + "x" if text.endswith(" ") else text


def _huge_sdp_message(total: int = 7_650_000) -> str:
    """A ~7.65 MB ``offer`` message: a valid-looking video offer buried in junk attribute lines."""
    line = "a=x-junk:" + "z" * 990 + "\r\n"
    head = len(json.dumps({"type": "offer", "sdp": SDP_HEAD}))
    n = (total - head) // (len(json.dumps(line)) - 2)
    return json.dumps({"type": "offer", "sdp": SDP_HEAD + line * n})


def png_bomb(side: int = 12000) -> bytes:
    """A ``side`` x ``side`` 8-bit grey PNG of zeros (144 MP at 12000: ~140 kB compressed)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    comp = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte + pixels
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _bomb_message() -> str:
    return json.dumps({"type": "avatar", "image": base64.b64encode(png_bomb()).decode()})


def _oversize_message() -> str:
    prefix, suffix = '{"type":"say","text":"', '"}'
    return prefix + "a" * (MAX_MESSAGE + 1 - len(prefix) - len(suffix)) + suffix


def _pcm_second(rate: int = 16000) -> bytes:
    """One second of quiet noise, 16-bit little-endian."""
    rng = np.random.default_rng(0)
    return (rng.standard_normal(rate) * 300).astype("<i2").tobytes()


# ---- the corpus ---------------------------------------------------------------------------------------
def _say_case(chars: int, many: bool) -> Callable[[Ctx, Any], Awaitable[Outcome]]:
    async def run(ctx: Ctx, _: Any) -> Outcome:
        text = ("Hi there. " * (chars // 10 + 1))[:chars].rstrip() if many else _words(chars)
        ws = await ctx.session()
        t = time.monotonic()
        await ws.send(json.dumps({"type": "say", "id": "h1", "text": text}))
        reply = await collect(ws, 8.0)
        await ws.close()
        ok = reply.states()["queued"] == 1 and not reply.codes() and not reply.closed
        return Outcome(reply.describe(), ok, {"chars": len(text), "observed_s": time.monotonic() - t})

    return run


async def case_six_at_once(ctx: Ctx, _: Any) -> Outcome:
    async def one() -> tuple[Any, str, float]:
        t = time.monotonic()
        ws = await ctx.ws()
        ev = json.loads(await asyncio.wait_for(ws.recv(), 20))
        code = ev.get("code") if ev.get("type") == "error" else None
        return ws, str(code or ev.get("type")), time.monotonic() - t

    got = await asyncio.gather(*(one() for _ in range(6)), return_exceptions=True)
    await asyncio.sleep(4.0)
    kinds: collections.Counter[str] = collections.Counter()
    waits = []
    for g in got:
        if isinstance(g, BaseException):
            kinds[f"client {type(g).__name__}"] += 1
            continue
        ws, kind, wait = g
        kinds[kind] += 1
        waits.append(wait * 1000.0)
        with contextlib.suppress(Exception):
            await ws.close()
    answer = ", ".join(f"{k} x{n}" for k, n in kinds.items())
    if waits:
        answer += f"; first event after {np.median(waits):.0f} ms median, {max(waits):.0f} max"
    ok = sum(n for k, n in kinds.items() if k in ("session", "server_busy")) == 6
    return Outcome(answer, ok, {"first_event_ms": waits, "kinds": dict(kinds)})


async def _one_big_message(
    ctx: Ctx, message: str, timeout: float, replies: tuple[str, ...]
) -> tuple[Reply, float]:
    """Send ``message`` on a fresh session; the reply of one of ``replies`` and how long it took."""
    ws = await ctx.session()
    t = time.monotonic()
    await ws.send(message)
    reply = await collect(ws, timeout, lambda e: e.get("type") in replies)
    took = time.monotonic() - t
    await ws.close()
    return reply, took


async def case_sdp_huge(ctx: Ctx, message: str) -> Outcome:
    reply, took = await _one_big_message(ctx, message, 30.0, ("answer", "error"))
    ok = reply.codes()["bad_sdp"] >= 1 and not reply.closed
    return Outcome(
        f"{reply.describe()} after {took:.2f} s",
        ok,
        {"bytes": len(message), "seconds": took, "message": reply.first_message("bad_sdp")},
    )


async def case_sdp_malformed(ctx: Ctx, _: Any) -> Outcome:
    bad = [
        "v=0\r\no=- x\r\nm=video notaport RTP/AVP x\r\na=rtpmap:zz\r\n",
        "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=fingerprint:sha-256 ZZ\r\na=ice-ufrag\r\n",
        "v=0\r\nm=\r\n" + "a=candidate:1 1 udp 1 127.0.0.1 notaport typ host\r\n" * 3,
    ]
    ws = await ctx.session()
    replies = []
    for sdp in bad:
        await ws.send(json.dumps({"type": "offer", "sdp": sdp}))
        replies.append(await collect(ws, 10.0, lambda e: e.get("type") in ("answer", "error")))
        if replies[-1].closed:
            break
    await ws.close()
    ok = all(r.codes()["bad_sdp"] == 1 and not r.closed for r in replies) and len(replies) == len(bad)
    return Outcome(" | ".join(r.describe() for r in replies), ok)


async def case_json_burst(ctx: Ctx, _: Any) -> Outcome:
    ws = await ctx.session()
    listener = Listener(ws)
    t = time.monotonic()
    for i in range(1000):
        await ws.send('{"type":"say","text":"broken ' + str(i) + '"')
    deadline = time.monotonic() + 15
    while listener.errors() < 1000 and not listener.reply.closed and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    reply = await listener.stop()
    took = time.monotonic() - t
    await ws.close()
    ok = reply.codes()["bad_json"] >= 1 and set(reply.codes()) == {"bad_json"} and not reply.closed
    return Outcome(f"{reply.describe()} in {took:.1f} s", ok)


async def _one_message(ctx: Ctx, raw: str | bytes, text: bool = True, seconds: float = 5.0) -> Reply:
    ws = await ctx.session()
    await ws.send(raw, text=text)
    reply = await collect(ws, seconds, lambda e: e.get("type") in ("error", "utterance"))
    await ws.close()
    return reply


async def case_big_int(ctx: Ctx, _: Any) -> Outcome:
    reply = await _one_message(ctx, '{"type":"audio.start","sample_rate":' + "9" * 5000 + "}")
    ok = bool(set(reply.codes()) & {"bad_json", "bad_message"}) and "internal" not in reply.codes()
    return Outcome(reply.describe(), ok, {"error": reply.first_error()})


async def case_json_deep(ctx: Ctx, _: Any) -> Outcome:
    reply = await _one_message(ctx, "[" * 100_000)
    return Outcome(reply.describe(), reply.codes()["bad_json"] == 1 and not reply.closed)


async def case_invalid_utf8(ctx: Ctx, _: Any) -> Outcome:
    reply = await _one_message(ctx, b'{"type":"say","text":"caf\xc3 \xff\xfe \xed\xa0\x80"}', text=True)
    ok = reply.codes()["bad_json"] == 1 or (reply.closed and reply.close_code == 1007)
    return Outcome(reply.describe(), ok)


async def case_id_newline(ctx: Ctx, _: Any) -> Outcome:
    reply = await _one_message(ctx, json.dumps({"type": "say", "id": "u1\n", "text": "Hello there."}))
    return Outcome(reply.describe(), reply.codes()["bad_message"] == 1)


async def case_lone_surrogate(ctx: Ctx, _: Any) -> Outcome:
    ws = await ctx.session()
    await ws.send('{"type":"say","id":"s1","text":"Hello \\ud800 world, how are you?"}')
    reply = await collect(ws, 6.0, lambda e: e.get("type") == "error")
    await ws.close()
    codes = reply.codes()
    ok = codes["bad_text"] == 1 or (not codes and reply.states()["queued"] == 1 and not reply.closed)
    return Outcome(reply.describe(), ok, {"error": reply.first_error()})


async def case_http_nul(ctx: Ctx, _: Any) -> Outcome:
    targets = {"literal NUL": b"/a\x00b.js", "%00": b"/a%00b.js", "/ws%00": b"/ws%00"}
    got = {k: await raw_get(ctx, t) for k, t in targets.items()}
    ok = all(s is not None and 400 <= s < 500 for s in got.values())
    return Outcome(", ".join(f"{k}: HTTP {s}" for k, s in got.items()), ok, {"status": got})


async def case_http_long_name(ctx: Ctx, _: Any) -> Outcome:
    targets = {
        "300-char .js": b"/" + b"a" * 300 + b".js",
        "300-char": b"/" + b"b" * 300,
        "300-char dir": b"/" + b"c" * 300 + b"/x.css",
    }
    got = {k: await raw_get(ctx, t) for k, t in targets.items()}
    ok = all(s is not None and 400 <= s < 500 for s in got.values())
    return Outcome(", ".join(f"{k}: HTTP {s}" for k, s in got.items()), ok, {"status": got})


async def case_pcm_flood(ctx: Ctx, second: bytes) -> Outcome:
    from websockets.exceptions import ConnectionClosed

    ws = await ctx.session()
    listener = Listener(ws)
    await ws.send(json.dumps({"type": "audio.start", "id": "a1", "sample_rate": 16000}))
    t = time.monotonic()
    sent = 0
    refused_at = None
    with contextlib.suppress(ConnectionClosed):
        for _ in range(600):
            await ws.send(second)
            sent += 1
            await asyncio.sleep(0)  # let the listener see a refusal
            if listener.errors() and refused_at is None:
                refused_at = sent
                break
        await ws.send(json.dumps({"type": "audio.end", "id": "a1"}))
    took = time.monotonic() - t
    reply = await listener.stop(linger=4.0)
    with contextlib.suppress(Exception):
        await ws.close()
    codes = reply.codes()
    # a refusal closes the segment: PCM already on its way then gets bad_audio, audio.end bad_state
    ok = not reply.closed and set(codes) <= {"bad_audio", "audio_full", "bad_state"}
    answer = f"{reply.describe()}; sent {sent} s of PCM in {took:.1f} s"
    if refused_at is not None:
        answer += f" (refused after {refused_at} s)"
    return Outcome(answer, ok, {"seconds_sent": sent, "send_s": took, "refused_after_s": refused_at})


async def case_pcm_odd_48k(ctx: Ctx, _: Any) -> Outcome:
    ws = await ctx.session()
    listener = Listener(ws)
    await ws.send(json.dumps({"type": "audio.start", "id": "a1", "sample_rate": 48000}))
    for _ in range(20):
        await ws.send(b"\x01" * 961)
    await ws.send(json.dumps({"type": "audio.end", "id": "a1"}))
    reply = await listener.stop(linger=3.0)
    await ws.close()
    codes = reply.codes()
    ok = codes["bad_audio"] >= 1 and "internal" not in codes and not reply.closed
    return Outcome(reply.describe(), ok, {"message": reply.first_message("bad_audio")})


async def case_png_bomb(ctx: Ctx, message: str) -> Outcome:
    reply, took = await _one_big_message(ctx, message, 60.0, ("avatar", "error"))
    return Outcome(
        f"{reply.describe()} after {took:.1f} s",
        reply.codes()["bad_image"] == 1,
        {"message_bytes": len(message), "seconds": took, "message": reply.first_message("bad_image")},
    )


async def case_oversize(ctx: Ctx, message: str) -> Outcome:
    ws = await ctx.session()
    reply = Reply()
    note = ""
    try:
        await ws.send(message)
        reply = await collect(ws, 10.0)
    except Exception as exc:  # ConnectionClosed, or the transport going away mid-send
        note = f" (client: {type(exc).__name__})"
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.wait_closed(), 5.0)
    if not reply.closed and ws.close_code is not None:
        reply.closed, reply.close_code = True, int(ws.close_code)
        reply.close_reason = str(ws.close_reason or "")[:80]
    with contextlib.suppress(Exception):
        await ws.close()
    return Outcome(reply.describe() + note, reply.close_code == 1009, {"bytes": len(message.encode())})


def _never_reads_case(messages: int) -> Callable[[Ctx, Any], Awaitable[Outcome]]:
    async def run(ctx: Ctx, _: Any) -> Outcome:
        return await _never_reads(ctx, messages)

    return run


async def _never_reads(ctx: Ctx, messages: int) -> Outcome:
    base = await ctx.sessions() or 0
    status, _, writer = await raw_upgrade(ctx, "/ws", {}, rcvbuf=4096)
    if status != 101:
        await _close_writer(writer)
        return Outcome(f"HTTP {status}", False)
    t = time.monotonic()
    # bad messages: events the server must queue for a client that reads none of them
    writer.write(
        b"".join(ws_frame(b'{"type":"say","text":"broken ' + str(i).encode()) for i in range(messages))
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    dropped = None
    while time.monotonic() - t < 15:
        await asyncio.sleep(0.2)
        n = await ctx.sessions()
        if n is not None and n <= base:
            dropped = time.monotonic() - t
            break
    await _close_writer(writer)
    answer = "never dropped within 15 s" if dropped is None else f"dropped after {dropped:.1f} s"
    return Outcome(answer, dropped is not None and dropped < 10, {"dropped_after_s": dropped})


def _origin_case(path: str, host_evil: bool) -> Callable[[Ctx, Any], Awaitable[Outcome]]:
    async def run(ctx: Ctx, _: Any) -> Outcome:
        host = "evil.example" if host_evil else None
        status, _, writer = await raw_upgrade(ctx, path, {"Origin": "http://evil.example"}, host=host)
        await _close_writer(writer)
        return Outcome(f"HTTP {status}", status == 403, {"status": status})

    return run


async def case_quick_close(ctx: Ctx, _: Any) -> Outcome:
    base = await ctx.sessions() or 0
    before = sample_procs(ctx.server.pid).workers
    failures = 0
    for i in range(20):
        try:
            ws = await ctx.ws()
            await asyncio.sleep(0.01 * i)  # 0 to 0.19 s
            await ws.close()
        except Exception:
            failures += 1
    left = await wait_sessions(ctx.host, ctx.port, base, 5.0)
    workers = sample_procs(ctx.server.pid).workers
    deadline = time.monotonic() + 10
    while workers > before and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        workers = sample_procs(ctx.server.pid).workers
    answer = f"sessions {left} (baseline {base}); worker processes {before} -> {workers}"
    if failures:
        answer += f"; {failures} connects failed"
    ok = left == base and workers <= before and not failures
    return Outcome(answer, ok, {"sessions_after": left, "workers_before": before, "workers_after": workers})


async def case_plain_session(ctx: Ctx, _: Any) -> Outcome:
    t = time.monotonic()
    ws = await ctx.session()
    took = time.monotonic() - t
    await asyncio.sleep(1.0)
    await ws.close()
    return Outcome(f"session after {took * 1000:.0f} ms", True, {"session_ms": took * 1000})


_QUIET = "queued; no error; the session goes on"
CASES: tuple[Case, ...] = (
    Case(
        "plain_session",
        "control: a well-behaved /ws session, open 1 s (every WebSocket case opens one)",
        "session",
        case_plain_session,
    ),
    Case("say_1200_no_end", "say: 1,200 characters, no sentence end", _QUIET, _say_case(1200, False)),
    Case("say_20000_no_end", "say: 20,000 characters, no sentence end", _QUIET, _say_case(20000, False)),
    Case("say_many_short", "say: 20,000 characters of 'Hi there.'", _QUIET, _say_case(20000, True)),
    Case(
        "six_at_once",
        "6 sessions opened at once (loop lag)",
        "session (or server_busy) for each; /healthz p99 stays low",
        case_six_at_once,
    ),
    Case(
        "sdp_huge",
        "offer: 7.65 MB SDP, a video m-line and junk attribute lines",
        "error bad_sdp (too large), quickly; no loop stall",
        case_sdp_huge,
        _huge_sdp_message,
    ),
    Case(
        "sdp_malformed",
        "offer: 3 malformed SDPs that start 'v=0 ... m='",
        "error bad_sdp each",
        case_sdp_malformed,
    ),
    Case(
        "json_burst", "1,000 malformed JSON messages", "bad_json each; the session goes on", case_json_burst
    ),
    Case("big_int", "a 5,000-digit integer in sample_rate", "error bad_json or bad_message", case_big_int),
    Case("json_deep", "100,000 nested '['", "error bad_json", case_json_deep),
    Case(
        "invalid_utf8", "a text frame with invalid UTF-8", "error bad_json, or close 1007", case_invalid_utf8
    ),
    Case("id_newline", "say id 'u1\\n' (trailing newline)", "error bad_message", case_id_newline),
    Case(
        "lone_surrogate", "say text with a lone surrogate \\ud800", "bad_text, or spoken", case_lone_surrogate
    ),
    Case("http_nul", "GET with a NUL byte (and %00) in the path", "HTTP 4xx", case_http_nul),
    Case("http_long_name", "GET of a 300-character file name", "HTTP 4xx", case_http_long_name),
    Case(
        "pcm_flood",
        "audio.start, then 600 s of PCM as fast as possible",
        "accepted, or refused (audio_full/bad_audio); the session goes on",
        case_pcm_flood,
        _pcm_second,
    ),
    Case(
        "pcm_odd_48k",
        "audio.start at 48 kHz, 20 binary frames of 961 bytes",
        "error bad_audio",
        case_pcm_odd_48k,
    ),
    Case(
        "png_bomb",
        "avatar: 144 MP PNG of zeros (~140 kB)",
        "error bad_image, no memory spike",
        case_png_bomb,
        _bomb_message,
    ),
    Case(
        "msg_8mb_plus_1", "one text message of 8 MiB + 1 byte", "close 1009", case_oversize, _oversize_message
    ),
    Case(
        "never_reads_idle",
        "a client that reads nothing (no pong either) and sends nothing",
        "dropped within 10 s (keepalive)",
        _never_reads_case(0),
    ),
    Case(
        "never_reads",
        "a client that reads none of its events, 2,000 bad messages sent",
        "dropped within 10 s (slow_client or keepalive)",
        _never_reads_case(2000),
    ),
    Case(
        "origin_ws_rebind",
        "/ws with Origin http://evil.example and Host evil.example",
        "HTTP 403",
        _origin_case("/ws", True),
    ),
    Case(
        "origin_ws_foreign",
        "/ws with Origin http://evil.example (Host: the server)",
        "HTTP 403",
        _origin_case("/ws", False),
    ),
    Case(
        "origin_agent_rebind",
        "/agent with Origin http://evil.example and Host evil.example",
        "HTTP 403",
        _origin_case("/agent", True),
    ),
    Case(
        "origin_agent_foreign",
        "/agent with Origin http://evil.example (Host: the server)",
        "HTTP 403",
        _origin_case("/agent", False),
    ),
    Case(
        "quick_close_x20",
        "a session closed within 0.2 s of opening, 20 times",
        "all freed: sessions and worker processes back to the baseline",
        case_quick_close,
    ),
)


# ---- running the corpus -----------------------------------------------------------------------------
class Bench:
    """The server, the neighbour (in the observer) and the settings; restarts both after a crash."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.server: Server | None = None
        self.observer: Observer | None = None
        self.restarts = 0

    def start(self) -> None:
        a = self.args
        self.server = Server(a.size, max_sessions=a.max_sessions, token=a.token, rss_cap_mb=a.rss_cap_mb)
        self.observer = Observer(
            ObserverConfig(self.server.host, self.server.port, a.token, True, a.say_every, 3 * 3600.0)
        )
        if not self.observer.wait_media(60):
            raise RuntimeError("the neighbour session got no media within 60 s")
        time.sleep(2.0)  # settle

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()
        if self.server is not None:
            self.server.stop()


async def run_case(bench: Bench, case: Case | None, after_s: float) -> dict[str, Any]:
    server, obs = bench.server, bench.observer
    assert server is not None and obs is not None
    ctx = Ctx(server, bench.args.token)
    payload = case.prepare() if case is not None and case.prepare is not None else None
    base = await ctx.sessions()
    before = sample_procs(server.pid)
    peak = [before.rss_total_mb]
    sampling = True

    async def sampler() -> None:
        while sampling:
            peak.append(sample_procs(server.pid).rss_total_mb)
            await asyncio.sleep(0.25)

    watch = asyncio.ensure_future(sampler())
    t0 = time.monotonic()
    if case is None:
        await asyncio.sleep(5.0)
        outcome = Outcome("the neighbour alone", None)
    else:
        try:
            outcome = await asyncio.wait_for(case.run(ctx, payload), case.timeout_s)
        except TimeoutError:
            outcome = Outcome(f"the case did not finish within {case.timeout_s:g} s", False)
        except Exception as exc:
            outcome = Outcome(f"client saw {type(exc).__name__}: {str(exc)[:120]}", False)
        await ctx.close_all()
    del payload
    t1 = time.monotonic()
    await asyncio.sleep(after_s)
    t2 = time.monotonic()
    sampling = False
    await watch
    await asyncio.sleep(0.7)  # the observer reports every 0.5 s
    after = sample_procs(server.pid)
    up = server.alive() and (await ctx.sessions()) is not None
    left = await wait_sessions(server.host, server.port, base or 0, 10.0) if up else None
    faults = log_faults(server.log_between(t0, t2 + 0.7))
    worst = worst_second_fps(obs.frames_between(t0, t2), t0, t2)
    lag = lag_stats(obs.health_between(t0, t2))
    killed = server.killed_for_rss
    row: dict[str, Any] = {
        "case": "baseline" if case is None else case.name,
        "what": "the neighbour alone, 5 s" if case is None else case.what,
        "expected": "" if case is None else case.expected,
        "answer": outcome.answer,
        "answer_ok": outcome.ok,
        "detail": outcome.detail,
        "case_s": t1 - t0,
        "neighbour_worst_fps": worst,
        "neighbour_fps_mean": len(obs.frames_between(t0, t2)) / max(1e-9, t2 - t0),
        "neighbour_rendered_min": min((r for _, _, r in obs.stats_between(t0 + 1.0, t2 + 0.7)), default=None),
        "neighbour_sent_min": min((f for _, f, _ in obs.stats_between(t0 + 1.0, t2 + 0.7)), default=None),
        "neighbour_lost": sum(1 for t in obs.lost if t0 <= t <= t2 + 0.7),
        "neighbour_errors": [code for t, code in obs.errors if t0 <= t <= t2 + 0.7],
        "healthz": lag,
        "rss_before_mb": before.rss_total_mb,
        "rss_peak_delta_mb": max(peak) - before.rss_total_mb,
        "rss_delta_mb": after.rss_total_mb - before.rss_total_mb,
        "rss_main_delta_mb": after.rss_main_mb - before.rss_main_mb,
        "workers_before": before.workers,
        "workers_after": after.workers,
        "server_up": up,
        "killed_for_rss_mb": killed[1] if killed is not None else None,
        "recovered_after_s": 0.0,
        "restarted_after": False,
        "sessions_left_over": None if left is None or base is None else left - base,
        "log_faults": len(faults),
        "log_fault_lines": faults[:6],
    }
    fps_ok = worst is not None and worst >= TARGET_FPS
    row["pass"] = None if case is None else bool(outcome.ok and fps_ok and up and not faults)
    return row


def log_faults(lines: list[str]) -> list[str]:
    """Exception lines of a log: ``ERROR``/``CRITICAL`` lines, and the exception that ends each
    traceback (its last unindented line)."""
    out = []
    for i, line in enumerate(lines):
        if _LOG_FAULT.search(line) and not line.startswith("Traceback"):
            out.append(line[:240])
        elif line.startswith("Traceback"):
            end = next((x for x in lines[i + 1 :] if x and not x[0].isspace()), "")
            out.append("  -> " + end[:240])
    return out


async def recover(bench: Bench, limit_s: float) -> float | None:
    """Seconds until the neighbour is back after a case (two whole seconds in a row of >= 22
    frames, the server's RSS growing by less than 40 MB in them); ``None``: not within
    ``limit_s`` (or the server is down)."""
    server, obs = bench.server, bench.observer
    assert server is not None and obs is not None
    t0 = time.monotonic()
    rss: list[tuple[float, float]] = []
    while time.monotonic() - t0 < limit_s:
        await asyncio.sleep(0.5)
        if not server.alive():
            return None
        now = time.monotonic()
        rss.append((now, sample_procs(server.pid).rss_total_mb))
        a = now - 2.7  # the observer reports every 0.5 s
        worst = worst_second_fps(obs.frames_between(a, a + 2.0), a, a + 2.0)
        old = [m for t, m in rss if t <= now - 2.0]
        growing = not old or rss[-1][1] - old[-1] > 40.0
        if worst is not None and worst >= TARGET_FPS and not growing:
            return now - t0
    return None


def _why(row: dict[str, Any]) -> str:
    why = []
    if row["answer_ok"] is False:
        why.append(f"answer: {row['answer']} (expected {row['expected']})")
    if row["neighbour_worst_fps"] is None or row["neighbour_worst_fps"] < TARGET_FPS:
        why.append(f"neighbour worst {row['neighbour_worst_fps']} fps")
    if not row["server_up"]:
        why.append("server down")
    if row["log_faults"]:
        why.append(f"{row['log_faults']} exception lines in the log: {row['log_fault_lines'][0][:120]}")
    if row["sessions_left_over"]:
        why.append(f"{row['sessions_left_over']} sessions left over")
    if row["killed_for_rss_mb"] is not None:
        why.append(f"server killed by the benchmark at {row['killed_for_rss_mb']:.0f} MB RSS")
    if row["recovered_after_s"] is None:
        why.append("the neighbour had not recovered after the case (server restarted)")
    return "; ".join(why)


def _print_row(row: dict[str, Any]) -> None:
    lag = row["healthz"]
    verdict = {None: "-", True: "pass", False: "FAIL"}[row["pass"]]
    worst = row["neighbour_worst_fps"]
    print(
        f"{row['case']:<21} {verdict:>4} {fmt_num(worst, '.0f'):>5} "
        f"{fmt_num(row['neighbour_rendered_min'], '.0f'):>5} {fmt_num(lag['p50_ms'], '.0f'):>6} "
        f"{fmt_num(lag['p99_ms'], '.0f'):>6} {row['rss_main_delta_mb']:>+7.0f} "
        f"{row['rss_peak_delta_mb']:>+7.0f} {'yes' if row['server_up'] else 'NO':>3} {row['log_faults']:>3} "
        f"{fmt_num(row['recovered_after_s'], '.0f'):>4}  "
        f"{row['answer'][:90]}",
        flush=True,
    )


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["case"] for r in rows]
    x = np.arange(len(rows))
    fig, axes = plt.subplots(2, 1, figsize=(max(8.0, 0.5 * len(rows) + 3), 7), sharex=True)
    colors = ["grey" if r["pass"] is None else ("tab:green" if r["pass"] else "tab:red") for r in rows]
    axes[0].bar(x, [r["neighbour_worst_fps"] or 0 for r in rows], color=colors)
    axes[0].axhline(TARGET_FPS, color="k", ls="--", lw=1, label=f"target {TARGET_FPS:g} fps")
    axes[0].set_ylabel("neighbour worst 1-s fps")
    axes[0].set_ylim(0, 30)
    axes[0].legend(fontsize=8, loc="lower right")
    axes[0].set_title("hostile corpus (green: documented answer, fps, server up, no exception; red: not)")
    axes[1].bar(x - 0.2, [r["healthz"]["p50_ms"] or 0 for r in rows], 0.4, label="p50")
    axes[1].bar(x + 0.2, [r["healthz"]["p99_ms"] or 0 for r in rows], 0.4, label="p99")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("/healthz round trip (ms)")
    axes[1].legend(fontsize=8)
    axes[1].set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


async def run_all(bench: Bench, cases: list[Case], after_s: float, recover_s: float) -> list[dict[str, Any]]:
    print(
        f"{'case':<21} {'ok':>4} {'fps':>5} {'rend':>5} {'hz p50':>6} {'hz p99':>6} {'main Δ':>7} "
        f"{'peak Δ':>7} {'up':>3} {'log':>3} {'rec':>4}  answer",
        flush=True,
    )
    rows = [await run_case(bench, None, after_s)]
    _print_row(rows[-1])
    for case in cases:
        row = await run_case(bench, case, after_s)
        rows.append(row)
        if row["server_up"]:
            row["recovered_after_s"] = await recover(bench, recover_s)
        if not row["server_up"] or row["recovered_after_s"] is None:
            row["pass"] = False
            row["restarted_after"] = True
        _print_row(row)
        if row["restarted_after"]:
            why = "went down" if not row["server_up"] else f"had not recovered {recover_s:g} s later"
            print(f"the server {why} after {case.name}; restarting it and the neighbour", file=sys.stderr)
            bench.stop()
            bench.restarts += 1
            await asyncio.to_thread(bench.start)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="*", help="comma-separated names or patterns (default: all)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--size", type=int, default=256, help="video height (default 256)")
    ap.add_argument("--after-s", type=float, default=3.0, help="seconds measured after each case (default 3)")
    ap.add_argument("--say-every", type=float, default=3.0, help="seconds between the neighbour's sentences")
    ap.add_argument("--max-sessions", type=int, default=None, help="server --max-sessions (default: its own)")
    ap.add_argument("--token", default=None, help="bearer token for the server, /ws and /agent")
    ap.add_argument(
        "--recover-s",
        type=float,
        default=30.0,
        help="longest wait for the neighbour to recover after a case; then the server restarts (default 30)",
    )
    add_rss_cap_argument(ap)
    ap.add_argument("--out", default="hostile", help="name of the JSON and PNG in benchmarks/results/")
    args = ap.parse_args()
    if args.list:
        for c in CASES:
            print(f"{c.name:<21} {c.what}  [expected: {c.expected}]")
        return 0
    patterns = [p.strip() for p in args.cases.split(",") if p.strip()]
    cases = [c for c in CASES if any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]
    if not cases:
        ap.error(f"no case matches {args.cases!r} (see --list)")
    if args.after_s < 1.0:
        ap.error("--after-s must be at least 1 (the fps is measured in whole seconds)")
    RESULTS.mkdir(exist_ok=True)
    print(f"{len(cases)} case(s), {args.size} px; starting the server and the neighbour ...", file=sys.stderr)
    bench = Bench(args)
    try:
        bench.start()
        rows = asyncio.run(run_all(bench, cases, args.after_s, args.recover_s))
    finally:
        bench.stop()
    failing = [r for r in rows if r["pass"] is False]
    six = next((r for r in rows if r["case"] == "six_at_once"), None)
    if six is not None:
        print(
            f"6 sessions at once: /healthz p50 {six['healthz']['p50_ms']:.0f} ms, p99 "
            f"{six['healthz']['p99_ms']:.0f} ms, max {six['healthz']['max_ms']:.0f} ms; "
            f"neighbour worst {six['neighbour_worst_fps']} fps"
        )
    frozen = [
        f"{r['case']} ({r['neighbour_rendered_min']:.1f})"
        for r in rows
        if r["neighbour_rendered_min"] is not None and r["neighbour_rendered_min"] < TARGET_FPS
    ]
    if frozen:
        print(
            "the neighbour's newly rendered fps (stats.fps_rendered, the rest repeat the last picture) "
            f"fell below {TARGET_FPS:g} in: " + ", ".join(frozen)
        )
    print(f"{len(cases) - len(failing)} of {len(cases)} cases pass; server restarts: {bench.restarts}")
    for r in failing:
        print(f"  {r['case']}: {_why(r)}")
    out = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_1min_at_end": os.getloadavg()[0],
        },
        "config": vars(args),
        "target_neighbour_worst_fps": TARGET_FPS,
        "rows": rows,
        "failing": {r["case"]: _why(r) for r in failing},
        "server_restarts": bench.restarts,
        "command": " ".join(sys.argv),
    }
    (RESULTS / f"{args.out}.json").write_text(json.dumps(out, indent=2))
    plot(rows, RESULTS / f"{args.out}.png")
    print(f"wrote {RESULTS / (args.out + '.json')} and {args.out}.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
