"""A session's renderer in its own process.

The warp renderer runs many small numpy/OpenCV calls per frame and holds the GIL for most of
it; in one server process, several sessions then share one core however many the machine has
(measured at 256 px: the server stuck at ~1.15 cores, 4 sessions at 19 newly rendered fps).
Here each session renders in a worker process of its own: the render thread sends a
:class:`~vlogger.engines.avatar.types.PosedFrame` down a pipe and gets back the frame already
in ``yuv420p`` (the encoder's format), waiting with the GIL released.

A :class:`WorkerPool` keeps ``spare`` processes started ahead, so a new session does not wait for
Python to import numpy and OpenCV (about a second), and refills in the background.

The worker says :class:`Hello` once its imports are done, then speaks a strict request/response
protocol of typed (picklable) messages over a ``multiprocessing`` pipe::

    Build(RendererSpec)  -> Ok()               | Failed(message, code)
    Render(PosedFrame)   -> Frame(yuv, ms)     | Failed(message, code)
    Reset()              -> Ok()
    Stop()               -> (process exits)

``Failed.code`` is the ``InputError`` code when the input was at fault (a photo or model the
renderer cannot use), else None (a bug or a crash).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import av
import numpy as np

__all__ = [
    "Build",
    "Failed",
    "Frame",
    "Hello",
    "Ok",
    "ProcessRenderer",
    "Render",
    "RendererSpec",
    "Reset",
    "Stop",
    "WorkerError",
    "WorkerPool",
    "to_yuv420p",
    "yuv420p_frame",
]

_LOG = logging.getLogger(__name__)


class WorkerError(RuntimeError):
    """The render worker failed or died (the message says how)."""


@dataclass
class RendererSpec:
    """Everything a process needs to build a session's renderer (all picklable)."""

    name: str
    """Renderer engine: ``"warp"`` or ``"diffusion"``."""
    image: np.ndarray
    """The avatar photo, (H, W, 3) uint8 RGB."""
    fit: Any
    """Its :class:`~vlogger.engines.avatar.types.AvatarFit`."""
    warp: Any
    """``WarpConfig``."""
    diffusion: Any = None
    """``DiffusionConfig`` (for ``"diffusion"``)."""


@dataclass(frozen=True)
class Build:
    """Request: build the session's renderer."""

    spec: RendererSpec


@dataclass(frozen=True)
class Render:
    """Request: draw one posed frame."""

    posed: Any


@dataclass(frozen=True)
class Reset:
    """Request: forget the renderer's temporal state."""


@dataclass(frozen=True)
class Stop:
    """Request: exit."""


@dataclass(frozen=True)
class Hello:
    """Reply: imports done, ready for requests."""


@dataclass(frozen=True)
class Ok:
    """Reply: the request was carried out."""


@dataclass(frozen=True)
class Frame:
    """Reply: the frame in ``yuv420p`` (H * 3/2, W) and the milliseconds it took."""

    yuv: np.ndarray
    ms: float


@dataclass(frozen=True)
class Failed:
    """Reply: the request failed; ``code`` is the ``InputError`` code when the input was at fault."""

    message: str
    code: str | None = None


Request = Build | Render | Reset | Stop
Reply = Hello | Ok | Frame | Failed


def yuv420p_frame(rgb: np.ndarray) -> av.VideoFrame:
    """(H, W, 3) uint8 RGB -> a ``yuv420p`` video frame (the encoders' format)."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(format="yuv420p")


def to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB -> the (H * 3/2, W) planar ``yuv420p`` array (what a worker sends back)."""
    return np.asarray(yuv420p_frame(rgb).to_ndarray())


def _worker_main(conn: Connection, threads: int) -> None:  # pragma: no cover - runs in the child
    import vlogger.engines.render.warp  # noqa: F401  (import now, so a spare is ready when taken)
    from vlogger.engines.errors import InputError
    from vlogger.engines.render.factory import make_renderer
    from vlogger.engines.threads import pin_native_threads

    pin_native_threads(threads)
    renderer: Any = None
    try:
        conn.send(Hello())
    except (BrokenPipeError, OSError):
        return
    while True:
        try:
            request: Request = conn.recv()
        except (EOFError, OSError):
            return  # the server went away
        if isinstance(request, Stop):
            return
        reply: Reply
        try:
            if isinstance(request, Build):
                spec = request.spec
                renderer = make_renderer(spec.name, spec.image, spec.fit, spec.warp, spec.diffusion)
                reply = Ok()
            elif isinstance(request, Render):
                if renderer is None:
                    raise RuntimeError("render before the renderer was built")
                t0 = time.perf_counter()
                yuv = to_yuv420p(renderer.render(request.posed))
                reply = Frame(yuv, (time.perf_counter() - t0) * 1000.0)
            elif isinstance(request, Reset):
                if renderer is not None:
                    renderer.reset()
                reply = Ok()
            else:
                reply = Failed(f"unknown request {type(request).__name__}")
        except InputError as exc:
            reply = Failed(str(exc), exc.code)
        except Exception as exc:
            reply = Failed(f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


#: Modules the fork server imports once, so that its workers start with them loaded.
_PRELOAD = ("vlogger.runtime.render_worker", "vlogger.engines.render.factory", "vlogger.engines.render.warp")


class _Worker:
    """One started process and the parent's end of its pipe."""

    def __init__(self, ctx: Any, threads: int) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_worker_main, args=(child, threads), name="vlogger-render", daemon=True
        )
        self.process.start()
        child.close()
        self.hello = False
        """Whether the process said it finished importing (its first message)."""
        self._stop_lock = threading.Lock()
        self._stopped = False

    def recv(self, timeout: float) -> Reply:
        """The process's next message (``WorkerError`` if it dies, goes away or takes too long)."""
        deadline = time.monotonic() + timeout
        while not self.conn.poll(0.05):
            if not self.process.is_alive():
                raise WorkerError(f"the render worker died (exit code {self.process.exitcode})")
            if time.monotonic() > deadline:
                raise WorkerError(f"the render worker did not answer within {timeout:g} s")
        try:
            reply: Reply = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise WorkerError(f"the render worker went away: {exc}") from exc
        return reply

    def wait_hello(self, timeout: float) -> None:
        """Wait for the process's first message, sent once its imports are done."""
        if self.hello:
            return
        reply = self.recv(timeout)
        if not isinstance(reply, Hello):
            raise WorkerError(f"the render worker said {reply!r} before hello")
        self.hello = True

    def stop(self, timeout: float) -> None:
        """Stop the process; safe to call twice and from two threads (the pool closing while
        its filler thread gives up on the same starting worker)."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        try:
            self.conn.send(Stop())
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(0.5)
        self.conn.close()


class WorkerPool:
    """Starts render processes, keeping ``spare`` of them ready ahead of the next session."""

    def __init__(self, spare: int = 1, threads: int = 1, start_method: str | None = None) -> None:
        """``start_method``: ``None`` = ``forkserver`` where there is one (a server process that
        imported the renderer once forks each worker: ~30 ms and no CPU per worker instead of
        ~0.5 s and ~0.85 CPU-seconds of imports, which starved the other sessions' renders when
        sessions opened in bursts), else ``spawn``."""
        self.spare = max(0, int(spare))
        self.threads = max(1, int(threads))
        if start_method is None:
            start_method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        self._ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            self._ctx.set_forkserver_preload(list(_PRELOAD))
        self._ready: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        self._filling = False
        self._starting: _Worker | None = None

    def fill(self) -> None:
        """Start processes until ``spare`` are ready, waiting for their imports (call off the
        event loop; about a second each)."""
        with self._lock:
            if self._filling:
                return
            self._filling = True
        try:
            while True:
                with self._lock:
                    if self._closed or len(self._ready) >= self.spare:
                        return
                worker = _Worker(self._ctx, self.threads)
                with self._lock:
                    self._starting = worker
                try:
                    worker.wait_hello(60.0)  # a spare is only useful once its imports are done
                except WorkerError:
                    if self._closed:  # the pool closed under it: expected
                        _LOG.debug("a spare render process was stopped while starting")
                    else:
                        _LOG.exception("a spare render process did not start")
                    worker.stop(0.5)
                    return
                with self._lock:
                    self._starting = None
                    if self._closed:
                        worker.stop(0.5)
                        return
                    self._ready.append(worker)
        finally:
            with self._lock:
                self._filling = False

    def take(self) -> _Worker:
        """A started worker (a spare if there is one), then refill in the background."""
        with self._lock:
            if self._closed:
                raise WorkerError("the render worker pool is closed")
            worker = self._ready.pop() if self._ready else None
        if worker is None or not worker.process.is_alive():
            worker = _Worker(self._ctx, self.threads)
        if self.spare:
            threading.Thread(target=self.fill, name="vlogger-render-spare", daemon=True).start()
        return worker

    def close(self, timeout: float = 2.0) -> None:
        """Stop the spare processes (sessions stop their own)."""
        with self._lock:
            self._closed = True
            ready, self._ready = self._ready, []
            if self._starting is not None:
                ready.append(self._starting)
                self._starting = None
        for worker in ready:
            worker.stop(timeout)


class ProcessRenderer:
    """A renderer in a worker process, with the pipeline's ``render(posed)`` / ``reset()`` shape.

    ``render`` returns an ``av.VideoFrame`` in ``yuv420p``; not thread-safe (one render thread).
    """

    def __init__(self, pool: WorkerPool, spec: RendererSpec, timeout_s: float = 30.0) -> None:
        self.name = spec.name
        self.timeout_s = float(timeout_s)
        self.last_ms = 0.0
        """Milliseconds the worker spent on the latest frame (render + colour conversion)."""
        self._worker = pool.take()
        self._closed = False
        self._lock = threading.Lock()
        self._ready = False
        self._worker.conn.send(Build(spec))

    def wait_ready(self) -> None:
        """Wait until the worker built the renderer; ``InputError``/``WorkerError`` if it could not."""
        with self._lock:
            self._wait_ready_locked()

    def _wait_ready_locked(self) -> None:
        if self._ready:
            return
        if self._closed:
            raise WorkerError("the renderer is closed")
        self._worker.wait_hello(self.timeout_s)
        reply = self._worker.recv(self.timeout_s)
        if isinstance(reply, Failed):
            message = f"could not build the {self.name} renderer: {reply.message}"
            if reply.code is not None:  # the photo or the model was at fault
                from vlogger.engines.errors import InputError

                error = InputError(message)
                error.code = reply.code
                raise error
            raise WorkerError(message)
        if not isinstance(reply, Ok):
            raise WorkerError(f"the render worker answered {type(reply).__name__} to a build")
        self._ready = True

    def render(self, posed: Any) -> av.VideoFrame:
        with self._lock:
            self._wait_ready_locked()
            try:
                self._worker.conn.send(Render(posed))
            except (BrokenPipeError, OSError) as exc:
                raise WorkerError(f"the render worker went away: {exc}") from exc
            reply = self._worker.recv(self.timeout_s)
        if not isinstance(reply, Frame):
            detail = reply.message if isinstance(reply, Failed) else type(reply).__name__
            raise WorkerError(f"the render worker failed: {detail}")
        self.last_ms = reply.ms
        return av.VideoFrame.from_ndarray(reply.yuv, format="yuv420p")

    def push(self, posed: Any) -> list[av.VideoFrame]:
        """Frame at a time (the server renders causally): ``[render(posed)]``."""
        return [self.render(posed)]

    def flush(self) -> list[av.VideoFrame]:
        return []

    def reset(self) -> None:
        with self._lock:
            self._wait_ready_locked()
            self._worker.conn.send(Reset())
            self._worker.recv(self.timeout_s)

    def close(self, timeout: float = 1.0) -> None:
        """Stop the worker process (waits up to ``timeout``, then kills it). Call after the
        render thread stopped; a render still waiting then fails with ``WorkerError``."""
        if self._closed:
            return
        self._closed = True
        self._worker.stop(timeout)
