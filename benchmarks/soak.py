"""Soak and churn of ``vlogger serve``: memory, frame rate, loop lag and errors over time.

The server runs as its own process (``python -m vlogger.runtime serve --loopback-ice``); this
process holds the sessions (aiortc :class:`~benchmarks.receiver.Receiver` clients on
loopback), and a small observer process polls ``GET /healthz`` every 0.2 s from outside, so the
round-trip time measures how late the server's event loop answers (its loop lag) without this
process's own load in it.

**Soak** (``--sessions N --minutes M``): N WebRTC sessions stay open for M minutes; each says one
short sentence every ``--say-every`` seconds (staggered between sessions; skipped while two of
its own are still unfinished, so a slow server is not buried under a growing queue). Per minute
(``--period-s``) we record:

* RSS of the server process and of its workers (all its descendant processes, summed: the render
  processes, one per session plus a spare, and multiprocessing's resource tracker);
* CPU of the server process and of the workers, separately (cores), and the load average;
* received fps per session (frames whose first RTP packet arrived in the minute) and its worst
  1-second bin, and the server's own ``stats.fps_rendered`` (median of the minute);
* ``error`` events, utterances done, sentences said / skipped, sessions lost;
* ``/healthz`` round-trip p50 / p99 (and failed probes).

Targets: RSS (server + workers) grows less than 5% after the first minute; no errors; received
fps >= 24 per session on a quiet machine.

**Churn** (``--churn N``, on a fresh server before the soak): N sessions opened and closed one
after another, 25 of them (spread evenly) with WebRTC media (a Receiver that negotiates and
waits for media), the rest WebSocket-only (until the ``session`` event). After each one is freed
(``/healthz`` shows no session) we record the server's RSS and its workers' RSS and count.
Target: the server's RSS after the last session is within 5% of its RSS after the first.

The server (with its workers) is killed if its RSS passes ``--rss-cap-mb`` (default a quarter of
the RAM, at most 8 GB), so a runaway server cannot bring the OOM killer onto a shared machine.

``--token T`` starts the server with ``--token T`` and sends ``Authorization: Bearer T`` on every
WebSocket. Prints a per-minute table and a summary, writes ``benchmarks/results/soak.json`` and
``soak.png``. Usage::

    python benchmarks/soak.py [--sessions 4] [--minutes 30] [--size 256] [--say-every 3.0]
                              [--churn N] [--period-s 60] [--token T]
    python benchmarks/soak.py --sessions 1 --minutes 1 --churn 4     # a quick check
    python benchmarks/soak.py --minutes 0 --churn 500                # churn only

``hostile.py`` imports the server, probe and ``/proc`` helpers from here.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import multiprocessing as mp
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a script from benchmarks/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.receiver import Receiver

RESULTS = Path(__file__).with_name("results")
#: Short sentences (about 1.5-2.5 s of speech each), so one every 3 s does not pile up.
SENTENCES = (
    "Hello! It is nice to meet you.",
    "The weather is lovely today.",
    "Could you tell me a little more?",
    "Okay, let us try that again.",
    "I think that is a good idea.",
    "Thanks, that was very helpful.",
)
TARGET_RSS_GROWTH = 0.05
TARGET_FPS = 24.0
TARGET_CHURN_RATIO = 1.05
CHURN_WEBRTC = 25
PROBE_EVERY_S = 0.2
PROBE_TIMEOUT_S = 2.0
_CLK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_MB = 1024.0 * 1024.0


# ---- the server process -----------------------------------------------------------------------
def default_rss_cap_mb() -> float:
    """A quarter of the machine's memory, at most 8 GB: the server is killed above it (a
    runaway server must not push the machine, shared with others, into the OOM killer)."""
    total_kb = 16 * 1024 * 1024
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total_kb = int(line.split()[1])
    return min(8192.0, total_kb / 1024.0 / 4.0)


class Server:
    """``python -m vlogger.runtime serve`` on a free loopback port; its stderr is drained into
    :attr:`log` (``(monotonic time, line)``, the last 5,000 lines) so it never blocks on a pipe.
    A guard thread kills the server and its workers when their RSS passes ``rss_cap_mb``
    (:attr:`killed_for_rss` then says when and at what RSS)."""

    def __init__(
        self,
        size: int,
        max_sessions: int | None = 16,
        token: str | None = None,
        log_level: str = "warning",
        rss_cap_mb: float | None = None,
    ) -> None:
        cmd = [
            sys.executable,
            "-m",
            "vlogger.runtime",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--size",
            str(size),
            "--loopback-ice",
            "--log-level",
            log_level,
        ]
        if max_sessions is not None:  # None: the server's own default
            cmd += ["--max-sessions", str(max_sessions)]
        if token:
            cmd += ["--token", token]
        self.token = token
        self.log: collections.deque[tuple[float, str]] = collections.deque(maxlen=5000)
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env={**os.environ, "GLOG_minloglevel": "2"},
        )
        assert self.proc.stderr is not None
        self.host, self.port = "", 0
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            self.log.append((time.monotonic(), line.rstrip()))
            if m := re.search(r"open http://([\d.]+):(\d+)/", line):
                self.host, self.port = m.group(1), int(m.group(2))
                break
            if not line and self.proc.poll() is not None:
                break
        if not self.port:
            self.stop()
            tail = "\n".join(line for _, line in list(self.log)[-20:])
            raise RuntimeError(f"the server did not start:\n{tail}")
        self._drain = threading.Thread(target=self._read_log, name="server-log", daemon=True)
        self._drain.start()
        self.rss_cap_mb = rss_cap_mb if rss_cap_mb is not None else default_rss_cap_mb()
        self.killed_for_rss: tuple[float, float] | None = None
        threading.Thread(target=self._guard, name="server-rss-guard", daemon=True).start()

    def _guard(self) -> None:
        while self.proc.poll() is None:
            s = sample_procs(self.pid)
            if s.rss_total_mb > self.rss_cap_mb:
                self.killed_for_rss = (time.monotonic(), s.rss_total_mb)
                print(
                    f"the server's RSS reached {s.rss_total_mb:.0f} MB (cap {self.rss_cap_mb:.0f} MB): "
                    "killing it",
                    file=sys.stderr,
                    flush=True,
                )
                self.kill_tree()
                return
            time.sleep(0.25)

    def kill_tree(self) -> None:
        """SIGKILL the server and every process under it."""
        kids = descendants(self.pid)
        with contextlib.suppress(OSError):
            self.proc.kill()
        for pid in kids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        with contextlib.suppress(ValueError, OSError):
            for line in self.proc.stderr:
                self.log.append((time.monotonic(), line.rstrip()))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str = "/ws") -> str:
        return f"ws://{self.host}:{self.port}{path}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_between(self, t0: float, t1: float) -> list[str]:
        return [line for t, line in list(self.log) if t0 <= t <= t1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


# ---- /proc ---------------------------------------------------------------------------------------
@dataclass
class ProcSample:
    """The server process and its descendants (render workers) at one instant."""

    t: float
    rss_main_mb: float
    rss_workers_mb: float
    workers: int
    cpu_main_s: float
    cpu_workers_s: float

    @property
    def rss_total_mb(self) -> float:
        return self.rss_main_mb + self.rss_workers_mb


def _proc_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (parent pid, CPU ticks user + system, RSS pages) of every process."""
    table: dict[int, tuple[int, int, int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            table[int(stat.parent.name)] = (
                int(fields[1]),
                int(fields[11]) + int(fields[12]),
                int(fields[21]),
            )
        except (OSError, IndexError, ValueError):
            continue
    return table


def descendants(pid: int, table: dict[int, tuple[int, int, int]] | None = None) -> list[int]:
    """Every process under ``pid`` (children, their children, ...)."""
    table = _proc_table() if table is None else table
    children: dict[int, list[int]] = collections.defaultdict(list)
    for p, (ppid, _, _) in table.items():
        children[ppid].append(p)
    kids: list[int] = []
    todo = list(children.get(pid, []))
    while todo and len(kids) < 10_000:
        p = todo.pop()
        kids.append(p)
        todo.extend(children.get(p, []))
    return kids


def sample_procs(pid: int) -> ProcSample:
    """RSS and CPU seconds (user + system) of ``pid`` and, summed, of all its descendants."""
    table = _proc_table()
    kids = descendants(pid, table)
    main = table.get(pid, (0, 0, 0))
    return ProcSample(
        t=time.monotonic(),
        rss_main_mb=main[2] * _PAGE / _MB,
        rss_workers_mb=sum(table[k][2] for k in kids) * _PAGE / _MB,
        workers=len(kids),
        cpu_main_s=main[1] / _CLK,
        cpu_workers_s=sum(table[k][1] for k in kids) / _CLK,
    )


# ---- plain HTTP ----------------------------------------------------------------------------------
async def http_raw(host: str, port: int, request: bytes, timeout: float = 5.0) -> tuple[int | None, bytes]:
    """Send ``request`` as is; returns the status (``None``: no HTTP answer) and what came back
    (headers and, when ``Content-Length`` says so, the body; at most 1 MB)."""
    deadline = time.monotonic() + timeout
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    data = b""
    try:
        writer.write(request)
        await writer.drain()
        need: int | None = None
        while len(data) < 1 << 20:
            if need is None and b"\r\n\r\n" in data:
                head = data.split(b"\r\n\r\n", 1)[0]
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                need = len(head) + 4 + (int(m.group(1)) if m else 0)
                if b" 101 " in head.split(b"\r\n", 1)[0]:
                    need = len(head) + 4  # an upgraded socket: the rest is WebSocket frames
            if need is not None and len(data) >= need:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                chunk = await asyncio.wait_for(reader.read(65536), left)
            except (TimeoutError, ConnectionError):
                break
            if not chunk:
                break
            data += chunk
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return (int(m.group(1)) if m else None), data


async def http_get(host: str, port: int, path: str, timeout: float = 5.0) -> tuple[int | None, bytes]:
    """``GET path``; returns (status, body)."""
    req = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    status, data = await http_raw(host, port, req, timeout)
    return status, data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""


async def open_sessions(host: str, port: int, timeout: float = 2.0) -> int | None:
    """The server's ``/healthz`` session count (``None`` when it does not answer)."""
    with contextlib.suppress(Exception):
        status, body = await http_get(host, port, "/healthz", timeout)
        if status == 200:
            return int(json.loads(body)["sessions"])
    return None


async def wait_sessions(host: str, port: int, at_most: int, timeout: float) -> int | None:
    """Poll ``/healthz`` until it shows at most ``at_most`` sessions (or the time is up)."""
    deadline = time.monotonic() + timeout
    n = await open_sessions(host, port)
    while (n is None or n > at_most) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        n = await open_sessions(host, port)
    return n


# ---- a WebRTC client with a bearer token ----------------------------------------------------------
def auth_receiver(url: str, keep_frames: bool = True, token: str | None = None) -> Receiver:
    """The project's :class:`Receiver`, sending ``Authorization: Bearer T`` on ``/ws`` when a
    token is given."""
    return Receiver(url, keep_frames=keep_frames, headers=auth_headers(token))


@dataclass
class Talker:
    """Drives one Receiver: says a sentence every ``every`` seconds (skipped while ``backlog`` of
    its own are unfinished), moves received frame arrival times out of the Receiver (so a long run
    keeps no pictures or audio) and tallies events."""

    rx: Receiver
    every: float
    offset: float = 0.0
    backlog: int = 2
    frames: list[float] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)
    done: list[float] = field(default_factory=list)
    said: list[float] = field(default_factory=list)
    skipped: list[float] = field(default_factory=list)
    stats: list[tuple[float, float, float]] = field(default_factory=list)
    """(arrival, ``fps``, ``fps_rendered``) of each ``stats`` event."""

    def __post_init__(self) -> None:
        self._pending: set[str] = set()
        self._sending: set[asyncio.Task[float]] = set()
        self._next = time.monotonic() + self.offset
        self._k = 0

    def step(self) -> None:
        """Collect what arrived; say the next sentence when it is due (call every ~0.1 s)."""
        rx = self.rx
        self.frames.extend(v.arrival for v in rx.video)
        rx.video.clear()
        rx.audio.clear()
        for t, ev in rx.events:
            kind = ev.get("type")
            if kind == "error":
                self.errors.append((t, str(ev.get("code"))))
                self._pending.discard(str(ev.get("id")))
            elif kind == "utterance":
                uid = str(ev.get("id"))
                if ev.get("state") == "queued":
                    self._pending.add(uid)
                elif ev.get("state") in ("done", "interrupted"):
                    self._pending.discard(uid)
                    if ev.get("state") == "done":
                        self.done.append(t)
            elif kind == "stats":
                self.stats.append((t, float(ev.get("fps") or 0.0), float(ev.get("fps_rendered") or 0.0)))
        rx.events.clear()
        now = time.monotonic()
        if now >= self._next and rx.is_open():
            self._next += self.every
            if len(self._pending) >= self.backlog:
                self.skipped.append(now)
            else:
                self._k += 1
                uid = f"s{self._k}"
                self._pending.add(uid)
                self.said.append(now)
                task = asyncio.ensure_future(rx.say(SENTENCES[self._k % len(SENTENCES)], id=uid))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)


# ---- the observer process: /healthz probe (and a neighbour session for hostile.py) -----------------
@dataclass
class ObserverConfig:
    host: str
    port: int
    token: str | None = None
    neighbour: bool = False
    say_every: float = 3.0
    max_s: float = 3600.0


def _observer_main(cfg: ObserverConfig, conn: Any, stop: Any) -> None:
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        asyncio.run(_observe(cfg, conn, stop))


async def _observe(cfg: ObserverConfig, conn: Any, stop: Any) -> None:
    deadline = time.monotonic() + cfg.max_s
    batch: dict[str, Any] = {"health": [], "frames": [], "errors": [], "stats": [], "notes": []}

    def running() -> bool:
        return not stop.is_set() and time.monotonic() < deadline

    async def probe() -> None:
        while running():
            t = time.monotonic()
            sessions: int | None = None
            rtt: float | None = None
            with contextlib.suppress(Exception):
                status, body = await http_get(cfg.host, cfg.port, "/healthz", PROBE_TIMEOUT_S)
                if status == 200:
                    rtt = (time.monotonic() - t) * 1000.0
                    sessions = int(json.loads(body)["sessions"])
            batch["health"].append((t, rtt, sessions))
            await asyncio.sleep(max(0.0, PROBE_EVERY_S - (time.monotonic() - t)))

    async def neighbour() -> None:
        url = f"ws://{cfg.host}:{cfg.port}/ws"
        for _ in range(100):
            if not running():
                return
            rx = auth_receiver(url, keep_frames=False, token=cfg.token)
            talker = Talker(rx, cfg.say_every, offset=1.0)
            try:
                await rx.connect(15.0)
                await rx.wait_media(15.0)
                conn.send(("media", time.monotonic()))
                while running() and rx.is_open():
                    await asyncio.sleep(0.1)
                    talker.step()
                    batch["frames"].extend(talker.frames)
                    batch["errors"].extend(talker.errors)
                    batch["stats"].extend(talker.stats)
                    talker.frames.clear()
                    talker.errors.clear()
                    talker.stats.clear()
                if running():
                    batch["notes"].append((time.monotonic(), "neighbour socket closed; reconnecting"))
            except Exception as exc:
                batch["notes"].append((time.monotonic(), f"neighbour: {type(exc).__name__}: {exc}"))
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(rx.close(), 5.0)
            if running():
                conn.send(("lost", time.monotonic()))
                await asyncio.sleep(1.0)

    async def flush() -> None:
        while True:
            done = not running()
            await asyncio.sleep(0 if done else 0.5)
            out = {k: list(v) for k, v in batch.items()}
            for v in batch.values():
                v.clear()
            conn.send(("data", out))
            if done:
                return

    tasks = [probe(), flush()] + ([neighbour()] if cfg.neighbour else [])
    await asyncio.gather(*tasks)
    conn.send(("end", time.monotonic()))


class Observer:
    """Runs :func:`_observe` in a process of its own and gathers what it reports."""

    def __init__(self, cfg: ObserverConfig) -> None:
        ctx = mp.get_context("spawn")
        self._recv, send = ctx.Pipe(duplex=False)
        self._stop = ctx.Event()
        self.proc = ctx.Process(target=_observer_main, args=(cfg, send, self._stop), daemon=True)
        self.proc.start()
        send.close()
        self.health: list[tuple[float, float | None, int | None]] = []
        """(time, round trip in ms or ``None`` for a failed probe, sessions)."""
        self.frames: list[float] = []
        """Arrival times of the neighbour's video frames."""
        self.errors: list[tuple[float, str]] = []
        self.stats: list[tuple[float, float, float]] = []
        """The neighbour's ``stats`` events: (arrival, ``fps``, ``fps_rendered``)."""
        self.notes: list[tuple[float, str]] = []
        self.media: float | None = None
        self.lost: list[float] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="observer", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                kind, payload = self._recv.recv()
            except (EOFError, OSError):
                return
            with self._lock:
                if kind == "data":
                    self.health.extend(payload["health"])
                    self.frames.extend(payload["frames"])
                    self.errors.extend(payload["errors"])
                    self.stats.extend(payload["stats"])
                    self.notes.extend(payload["notes"])
                elif kind == "media":
                    self.media = payload
                elif kind == "lost":
                    self.lost.append(payload)
                elif kind == "end":
                    return

    def wait_media(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.media is None and time.monotonic() < deadline and self.proc.is_alive():
            time.sleep(0.1)
        return self.media is not None

    def health_between(self, t0: float, t1: float) -> list[float | None]:
        with self._lock:
            return [rtt for t, rtt, _ in self.health if t0 <= t < t1]

    def stats_between(self, t0: float, t1: float) -> list[tuple[float, float, float]]:
        with self._lock:
            return [s for s in self.stats if t0 <= s[0] < t1]

    def frames_between(self, t0: float, t1: float) -> list[float]:
        with self._lock:
            return [t for t in self.frames if t0 <= t < t1]

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(2)
        self._reader.join(2)


def lag_stats(rtts: list[float | None]) -> dict[str, Any]:
    """p50 / p99 / max of ``/healthz`` round trips in ms; a failed probe counts as the timeout."""
    vals = [PROBE_TIMEOUT_S * 1000.0 if r is None else r for r in rtts]
    if not vals:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "probes": 0, "failed": 0}
    return {
        "p50_ms": float(np.percentile(vals, 50)),
        "p99_ms": float(np.percentile(vals, 99)),
        "max_ms": float(max(vals)),
        "probes": len(vals),
        "failed": sum(1 for r in rtts if r is None),
    }


def worst_second_fps(arrivals: list[float], t0: float, t1: float) -> float | None:
    """The fewest frames that arrived in any whole second of [t0, t1) (seconds counted from t0)."""
    n = int((t1 - t0) // 1.0)
    if n <= 0:
        return None
    counts = np.zeros(n, dtype=int)
    for t in arrivals:
        k = int((t - t0) // 1.0)
        if 0 <= k < n:
            counts[k] += 1
    return float(counts.min())


def fmt_num(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


# ---- soak ---------------------------------------------------------------------------------------------
async def run_soak(
    server: Server, observer: Observer, sessions: int, minutes: float, say_every: float, period_s: float
) -> dict[str, Any]:
    rxs = [auth_receiver(server.url(), keep_frames=False, token=server.token) for _ in range(sessions)]
    for rx in rxs:  # one after another: the soak is about the steady state, not the opening rush
        await rx.connect(20.0)
    await asyncio.gather(*(rx.wait_media(20.0) for rx in rxs))
    await asyncio.sleep(1.0)  # settle
    for rx in rxs:
        rx.video.clear()
        rx.audio.clear()
        rx.events.clear()
    t0 = time.monotonic()
    talkers = [Talker(rx, say_every, offset=0.5 + i * say_every / sessions) for i, rx in enumerate(rxs)]
    periods = max(1, round(minutes * 60.0 / period_s))
    end = t0 + periods * period_s
    rows: list[dict[str, Any]] = []
    prev = sample_procs(server.pid)
    lost_at: dict[int, float] = {}
    print(
        f"{'min':>5} {'rss main':>8} {'workers':>8} {'n':>2} {'cpu main':>8} {'cpu wrk':>7} {'load':>5} "
        f"{'fps rx min':>10} {'worst 1s':>8} {'rendered':>8} {'err':>4} {'done':>4} {'skip':>4} "
        f"{'lag p50':>7} {'p99':>7}",
        flush=True,
    )
    next_row = t0 + period_s
    while len(rows) < periods and time.monotonic() < end + 30.0:
        await asyncio.sleep(0.1)
        for i, tk in enumerate(talkers):
            tk.step()
            if not tk.rx.is_open() and i not in lost_at:
                lost_at[i] = time.monotonic()
        if time.monotonic() < next_row:
            continue
        a, b = next_row - period_s, next_row
        next_row += period_s
        await asyncio.sleep(0.7)  # the observer reports every 0.5 s
        cur = sample_procs(server.pid)
        dt = max(1e-6, cur.t - prev.t)
        fps = [sum(1 for t in tk.frames if a <= t < b) / period_s for tk in talkers]
        worst = [worst_second_fps(tk.frames, a, b) for tk in talkers]
        rendered = [statistics.median([r for t, _, r in tk.stats if a <= t < b] or [0.0]) for tk in talkers]
        sent = [statistics.median([f for t, f, _ in tk.stats if a <= t < b] or [0.0]) for tk in talkers]
        errors = [code for tk in talkers for t, code in tk.errors if a <= t < b]
        lag = lag_stats(observer.health_between(a, b))
        row: dict[str, Any] = {
            "minute": len(rows) + 1,
            "t_s": b - t0,
            "rss_main_mb": cur.rss_main_mb,
            "rss_workers_mb": cur.rss_workers_mb,
            "rss_total_mb": cur.rss_total_mb,
            "worker_processes": cur.workers,
            "cpu_main_cores": (cur.cpu_main_s - prev.cpu_main_s) / dt,
            "cpu_workers_cores": (cur.cpu_workers_s - prev.cpu_workers_s) / dt,
            "load_average_1min": os.getloadavg()[0],
            "fps_received": fps,
            "fps_received_min": min(fps),
            "fps_worst_1s": min((w for w in worst if w is not None), default=None),
            "fps_rendered": rendered,
            "fps_rendered_min": min(rendered),
            "fps_sent_min": min(sent),
            "errors": len(errors),
            "error_codes": dict(collections.Counter(errors)),
            "utterances_done": sum(1 for tk in talkers for t in tk.done if a <= t < b),
            "said": sum(1 for tk in talkers for t in tk.said if a <= t < b),
            "skipped": sum(1 for tk in talkers for t in tk.skipped if a <= t < b),
            "sessions_lost": sum(1 for t in lost_at.values() if t < b),
            "lag": lag,
            "server_up": server.alive(),
        }
        rows.append(row)
        prev = cur
        for tk in talkers:  # keep only what a later period may still need
            tk.frames = [t for t in tk.frames if t >= b]
        print(
            f"{row['t_s'] / 60:>5.2f} {row['rss_main_mb']:>8.0f} {row['rss_workers_mb']:>8.0f} "
            f"{row['worker_processes']:>2} {row['cpu_main_cores']:>8.2f} {row['cpu_workers_cores']:>7.2f} "
            f"{row['load_average_1min']:>5.2f} {row['fps_received_min']:>10.1f} "
            f"{fmt_num(row['fps_worst_1s'], '.0f'):>8} {row['fps_rendered_min']:>8.1f} {row['errors']:>4} "
            f"{row['utterances_done']:>4} {row['skipped']:>4} {fmt_num(lag['p50_ms']):>7} "
            f"{fmt_num(lag['p99_ms']):>7}",
            flush=True,
        )
        if not server.alive():
            print("the server exited; stopping the soak", file=sys.stderr)
            break
    for rx in rxs:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(rx.close(), 5.0)
    return {"rows": rows, "summary": soak_summary(rows, server.alive())}


def soak_summary(rows: list[dict[str, Any]], server_up: bool) -> dict[str, Any]:
    if not rows:
        return {}
    first, last = rows[0], rows[-1]
    all_lag: list[float] = [r["lag"]["p99_ms"] for r in rows if r["lag"]["p99_ms"] is not None]
    growth_total = (last["rss_total_mb"] - first["rss_total_mb"]) / max(1e-9, first["rss_total_mb"])
    growth_main = (last["rss_main_mb"] - first["rss_main_mb"]) / max(1e-9, first["rss_main_mb"])
    fps_min = min(min(r["fps_received"]) for r in rows)
    errors = sum(r["errors"] for r in rows)
    codes: collections.Counter[str] = collections.Counter()
    for r in rows:
        codes.update(r["error_codes"])
    return {
        "rows": len(rows),
        "period_s": rows[0]["t_s"],
        "rss_total_mb_first_minute": first["rss_total_mb"],
        "rss_total_mb_last_minute": last["rss_total_mb"],
        "rss_growth_after_first_minute": growth_total if len(rows) > 1 else None,
        "rss_main_growth_after_first_minute": growth_main if len(rows) > 1 else None,
        "fps_received_min": fps_min,
        "fps_worst_1s": min((r["fps_worst_1s"] for r in rows if r["fps_worst_1s"] is not None), default=None),
        "fps_rendered_min": min(r["fps_rendered_min"] for r in rows),
        "errors": errors,
        "error_codes": dict(codes),
        "utterances_done": sum(r["utterances_done"] for r in rows),
        "said": sum(r["said"] for r in rows),
        "skipped": sum(r["skipped"] for r in rows),
        "sessions_lost": last["sessions_lost"],
        "lag_p99_ms_worst_minute": max(all_lag) if all_lag else None,
        "cpu_main_cores_mean": statistics.fmean(r["cpu_main_cores"] for r in rows),
        "cpu_workers_cores_mean": statistics.fmean(r["cpu_workers_cores"] for r in rows),
        "server_up": server_up,
        "pass": {
            "rss_growth_lt_5pct": None if len(rows) < 2 else growth_total < TARGET_RSS_GROWTH,
            "zero_errors": errors == 0 and last["sessions_lost"] == 0,
            "fps_ge_24": fps_min >= TARGET_FPS,
        },
    }


# ---- churn --------------------------------------------------------------------------------------------
async def run_churn(server: Server, n: int) -> dict[str, Any]:
    webrtc = {round(j * n / min(CHURN_WEBRTC, n)) for j in range(min(CHURN_WEBRTC, n))} if n else set()
    rows: list[dict[str, Any]] = []
    print(f"{'#':>4} {'kind':>6} {'open s':>6} {'rss main':>8} {'workers':>8} {'n':>2} {'ok':>3}", flush=True)
    for i in range(n):
        kind = "webrtc" if i in webrtc else "ws"
        t = time.monotonic()
        problem = None
        try:
            if kind == "webrtc":
                rx = auth_receiver(server.url(), keep_frames=False, token=server.token)
                try:
                    await rx.connect(20.0)
                    await rx.wait_media(20.0)
                finally:
                    await asyncio.wait_for(rx.close(), 10.0)
            else:
                from websockets.asyncio.client import connect

                async with connect(
                    server.url(),
                    additional_headers=auth_headers(server.token),
                    max_size=None,
                    proxy=None,
                    open_timeout=20,
                ) as ws:
                    first = json.loads(await asyncio.wait_for(ws.recv(), 20.0))
                    if first.get("type") != "session":
                        problem = f"first event {first.get('type')!r}: {first}"
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
        opened = time.monotonic() - t
        left = await wait_sessions(server.host, server.port, 0, 10.0)
        if left != 0 and problem is None:
            problem = f"/healthz still shows {left} sessions 10 s after the close"
        s = sample_procs(server.pid)
        rows.append(
            {
                "i": i + 1,
                "kind": kind,
                "seconds": opened,
                "rss_main_mb": s.rss_main_mb,
                "rss_workers_mb": s.rss_workers_mb,
                "worker_processes": s.workers,
                "ok": problem is None,
                "problem": problem,
            }
        )
        if i < 3 or i == n - 1 or (i + 1) % 25 == 0 or problem:
            print(
                f"{i + 1:>4} {kind:>6} {opened:>6.2f} {s.rss_main_mb:>8.0f} {s.rss_workers_mb:>8.0f} "
                f"{s.workers:>2} {'yes' if problem is None else 'NO':>3}"
                + (f"  {problem}" if problem else ""),
                flush=True,
            )
        if not server.alive():
            print("the server exited; stopping the churn", file=sys.stderr)
            break
    if not rows:
        return {"rows": rows}
    first, last = rows[0], rows[-1]
    ratio = last["rss_main_mb"] / max(1e-9, first["rss_main_mb"])
    return {
        "rows": rows,
        "summary": {
            "sessions": len(rows),
            "webrtc": sum(1 for r in rows if r["kind"] == "webrtc"),
            "failed": sum(1 for r in rows if not r["ok"]),
            "rss_main_mb_after_first": first["rss_main_mb"],
            "rss_main_mb_after_last": last["rss_main_mb"],
            "rss_main_ratio": ratio,
            "rss_workers_mb_after_first": first["rss_workers_mb"],
            "rss_workers_mb_after_last": last["rss_workers_mb"],
            "worker_processes_after_first": first["worker_processes"],
            "worker_processes_after_last": last["worker_processes"],
            "server_up": server.alive(),
            "pass": {"rss_within_5pct": ratio <= TARGET_CHURN_RATIO},
        },
    }


# ---- output ---------------------------------------------------------------------------------------
def plot(soak: dict[str, Any] | None, churn: dict[str, Any] | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (3 if soak and soak["rows"] else 0) + (1 if churn and churn["rows"] else 0)
    if not panels:
        return
    fig, axes = plt.subplots(1, panels, figsize=(4.8 * panels, 4), squeeze=False)
    ax_iter = iter(axes[0])
    if soak and soak["rows"]:
        rows = soak["rows"]
        m = [r["t_s"] / 60.0 for r in rows]
        ax = next(ax_iter)
        ax.plot(m, [r["rss_main_mb"] for r in rows], "o-", label="server")
        ax.plot(m, [r["rss_workers_mb"] for r in rows], "s-", label="render workers")
        ax.plot(m, [r["rss_total_mb"] for r in rows], "k^-", label="total")
        ax.axhline(rows[0]["rss_total_mb"] * (1 + TARGET_RSS_GROWTH), color="k", ls="--", lw=1, label="+5%")
        ax.set_title("RSS (MB)")
        ax.set_xlabel("minutes (end of row)")
        ax.legend(fontsize=8)
        ax = next(ax_iter)
        ax.plot(m, [r["fps_received_min"] for r in rows], "o-", label="received (min session)")
        ax.plot(m, [r["fps_worst_1s"] for r in rows], "v:", label="worst 1-s bin")
        ax.plot(m, [r["fps_rendered_min"] for r in rows], "s-", label="rendered (min session)")
        ax.axhline(TARGET_FPS, color="k", ls="--", lw=1)
        ax.set_ylim(0, 30)
        ax.set_title("fps")
        ax.set_xlabel("minutes (end of row)")
        ax.legend(fontsize=8)
        ax = next(ax_iter)
        ax.plot(m, [r["lag"]["p50_ms"] for r in rows], "o-", label="p50")
        ax.plot(m, [r["lag"]["p99_ms"] for r in rows], "s-", label="p99")
        ax.set_yscale("log")
        ax.set_title("/healthz round trip (ms)")
        ax.set_xlabel("minutes (end of row)")
        ax.legend(fontsize=8)
    if churn and churn["rows"]:
        rows = churn["rows"]
        ax = next(ax_iter)
        x = [r["i"] for r in rows]
        ax.plot(x, [r["rss_main_mb"] for r in rows], "-", label="server")
        ax.plot(x, [r["rss_workers_mb"] for r in rows], "-", label="render workers")
        rtc = [r for r in rows if r["kind"] == "webrtc"]
        ax.plot([r["i"] for r in rtc], [r["rss_main_mb"] for r in rtc], "o", ms=3, label="WebRTC session")
        ax.axhline(rows[0]["rss_main_mb"] * TARGET_CHURN_RATIO, color="k", ls="--", lw=1, label="+5%")
        ax.set_title("churn: RSS after each close (MB)")
        ax.set_xlabel("session")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.1f}%"


def _print_summary(soak: dict[str, Any] | None, churn: dict[str, Any] | None) -> None:
    if soak and soak.get("summary"):
        s = soak["summary"]
        print(
            f"soak: {s['rows']} rows of {s['period_s']:.0f} s; RSS server+workers at the end of the "
            f"first row {s['rss_total_mb_first_minute']:.0f} MB, at the end "
            f"{s['rss_total_mb_last_minute']:.0f} MB: "
            f"{_pct(s['rss_growth_after_first_minute'])} (target < +5%; server alone "
            f"{_pct(s['rss_main_growth_after_first_minute'])})"
        )
        print(
            f"  received fps min {s['fps_received_min']:.1f}, worst 1-s bin "
            f"{fmt_num(s['fps_worst_1s'], '.0f')} (target >= 24); rendered min {s['fps_rendered_min']:.1f}"
        )
        print(
            f"  errors {s['errors']}{' ' + str(s['error_codes']) if s['error_codes'] else ''} (target 0); "
            "sessions lost "
            f"{s['sessions_lost']}; utterances done {s['utterances_done']} of {s['said']} said "
            f"({s['skipped']} not said because two were still unfinished)"
        )
        print(
            f"  /healthz p99 of the worst minute {fmt_num(s['lag_p99_ms_worst_minute'])} ms; CPU server "
            f"{s['cpu_main_cores_mean']:.2f} + workers {s['cpu_workers_cores_mean']:.2f} cores"
        )
        print(f"  pass: {s['pass']}")
    if churn and churn.get("summary"):
        c = churn["summary"]
        print(
            f"churn: {c['sessions']} sessions ({c['webrtc']} WebRTC), {c['failed']} failed; server RSS "
            f"after the first {c['rss_main_mb_after_first']:.0f} MB, after the last "
            f"{c['rss_main_mb_after_last']:.0f} MB: ratio {c['rss_main_ratio']:.3f} "
            f"(target <= {TARGET_CHURN_RATIO})"
        )
        print(
            f"  workers {c['worker_processes_after_first']} -> {c['worker_processes_after_last']} "
            f"processes, {c['rss_workers_mb_after_first']:.0f} -> {c['rss_workers_mb_after_last']:.0f} MB"
        )
        print(f"  pass: {c['pass']}")


def add_rss_cap_argument(ap: argparse.ArgumentParser) -> None:
    """``--rss-cap-mb``, shared with hostile.py: a server past it is killed, not the machine."""
    ap.add_argument(
        "--rss-cap-mb",
        type=float,
        default=None,
        help="kill the server when its RSS (with workers) passes this (default: 1/4 of RAM, at most 8 GB)",
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=4, help="concurrent WebRTC sessions (default 4)")
    ap.add_argument("--minutes", type=float, default=30.0, help="soak length; 0 skips the soak (default 30)")
    ap.add_argument("--size", type=int, default=256, help="video height (default 256)")
    ap.add_argument("--say-every", type=float, default=3.0, help="seconds between sentences per session")
    ap.add_argument("--churn", type=int, default=0, help="sessions to open and close one by one (default 0)")
    ap.add_argument("--period-s", type=float, default=60.0, help="seconds per reported row (default 60)")
    ap.add_argument("--token", default=None, help="bearer token for the server and every socket")
    add_rss_cap_argument(ap)
    ap.add_argument("--out", default="soak", help="name of the JSON and PNG in benchmarks/results/")
    args = ap.parse_args()
    if args.sessions < 1 or args.minutes < 0 or args.churn < 0 or args.period_s < 5 or args.say_every <= 0:
        ap.error("need --sessions >= 1, --minutes >= 0, --churn >= 0, --period-s >= 5, --say-every > 0")
    RESULTS.mkdir(exist_ok=True)
    churn: dict[str, Any] | None = None
    soak: dict[str, Any] | None = None
    if args.churn:
        print(f"churn: {args.churn} sessions, {args.size} px ...", file=sys.stderr)
        server = Server(args.size, max_sessions=4, token=args.token, rss_cap_mb=args.rss_cap_mb)
        try:
            churn = asyncio.run(run_churn(server, args.churn))
            churn["server_killed_for_rss_mb"] = server.killed_for_rss and server.killed_for_rss[1]
        finally:
            server.stop()
    if args.minutes > 0:
        print(f"soak: {args.sessions} session(s) x {args.minutes:g} min, {args.size} px ...", file=sys.stderr)
        server = Server(
            args.size, max_sessions=args.sessions + 4, token=args.token, rss_cap_mb=args.rss_cap_mb
        )
        observer = Observer(ObserverConfig(server.host, server.port, max_s=args.minutes * 60 + 600))
        try:
            soak = asyncio.run(
                run_soak(server, observer, args.sessions, args.minutes, args.say_every, args.period_s)
            )
            soak["server_log_tail"] = [line for _, line in list(server.log)[-30:]]
            soak["server_killed_for_rss_mb"] = server.killed_for_rss and server.killed_for_rss[1]
        finally:
            observer.stop()
            server.stop()
    _print_summary(soak, churn)
    out = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "config": vars(args),
        "targets": {
            "rss_growth_after_first_minute": TARGET_RSS_GROWTH,
            "errors": 0,
            "fps_received_per_session": TARGET_FPS,
            "churn_rss_ratio_last_over_first": TARGET_CHURN_RATIO,
        },
        "soak": soak,
        "churn": churn,
        "command": " ".join(sys.argv),
    }
    (RESULTS / f"{args.out}.json").write_text(json.dumps(out, indent=2, default=_json_default))
    plot(soak, churn, RESULTS / f"{args.out}.png")
    print(f"wrote {RESULTS / (args.out + '.json')} and {args.out}.png", file=sys.stderr)
    return 0


def _json_default(obj: Any) -> Any:
    if isinstance(obj, ProcSample):
        return asdict(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON: {type(obj).__name__}")


if __name__ == "__main__":
    sys.exit(main())
