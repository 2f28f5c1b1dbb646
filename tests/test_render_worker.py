"""Render worker processes: same pixels as rendering in-thread, clear errors, nothing left running."""

from __future__ import annotations

import time

import numpy as np
import pytest
from warp_inputs import default_fit, open_jaw, posed

from vlogger.engines.errors import InputError
from vlogger.engines.render.warp import WarpConfig, WarpRenderer
from vlogger.runtime.render_worker import (
    ProcessRenderer,
    RendererSpec,
    WorkerError,
    WorkerPool,
    to_yuv420p,
)


@pytest.fixture(scope="module")
def scene():
    image, fit = default_fit()
    return image, fit


@pytest.fixture
def pool():
    p = WorkerPool(spare=1)
    yield p
    p.close()


def test_process_renderer_draws_the_same_frames_as_the_thread(scene, pool) -> None:
    image, fit = scene
    local = WarpRenderer(image, fit, WarpConfig())
    remote = ProcessRenderer(pool, RendererSpec("warp", image, fit, WarpConfig()))
    try:
        remote.wait_ready()
        for amount in (0.0, 0.08, 0.15):
            frame = remote.render(posed(fit, face=open_jaw(fit.face[:, :2], amount)))
            assert frame.format.name == "yuv420p" and (frame.width, frame.height) == (
                image.shape[1],
                image.shape[0],
            )
            want = to_yuv420p(local.render(posed(fit, face=open_jaw(fit.face[:, :2], amount))))
            np.testing.assert_array_equal(frame.to_ndarray(), want)
        assert remote.last_ms > 0
        # the open jaw really reached the pixels (not a constant frame)
        closed = remote.render(posed(fit, face=open_jaw(fit.face[:, :2], 0.0))).to_ndarray()
        opened = remote.render(posed(fit, face=open_jaw(fit.face[:, :2], 0.15))).to_ndarray()
        assert np.abs(closed.astype(int) - opened.astype(int)).max() > 50
    finally:
        remote.close()
    assert not remote._worker.process.is_alive()


def test_a_renderer_that_cannot_be_built_is_named(scene, pool) -> None:
    image, fit = scene
    r = ProcessRenderer(pool, RendererSpec("marble", image, fit, WarpConfig()))
    try:
        with pytest.raises(InputError, match="marble"):
            r.wait_ready()
    finally:
        r.close()


def test_a_dead_worker_fails_the_render_clearly(scene, pool) -> None:
    image, fit = scene
    r = ProcessRenderer(pool, RendererSpec("warp", image, fit, WarpConfig()), timeout_s=5)
    try:
        r.wait_ready()
        r._worker.process.kill()
        r._worker.process.join(2)
        t0 = time.monotonic()
        with pytest.raises(WorkerError, match=r"died|went away"):
            r.render(posed(fit))
        assert time.monotonic() - t0 < 1.0
    finally:
        r.close()


def test_pool_keeps_a_spare_started_and_closes_it(pool) -> None:
    pool.fill()
    assert len(pool._ready) == 1
    spare = pool._ready[0]
    worker = pool.take()
    assert worker is spare and worker.process.is_alive()
    deadline = time.monotonic() + 5
    while len(pool._ready) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(pool._ready) == 1 and pool._ready[0] is not worker  # refilled behind it
    refill = pool._ready[0]
    worker.stop(1.0)
    pool.close()
    assert not worker.process.is_alive() and not refill.process.is_alive()
    with pytest.raises(WorkerError, match="closed"):
        pool.take()


def test_stopping_a_worker_twice_from_two_threads_is_safe() -> None:
    import threading

    from vlogger.runtime.render_worker import _Worker

    pool = WorkerPool(spare=0)
    worker = _Worker(pool._ctx, 1)
    worker.wait_hello(60.0)
    errors: list[BaseException] = []

    def stop() -> None:
        try:
            worker.stop(2.0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=stop) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not worker.process.is_alive()
    pool.close()
