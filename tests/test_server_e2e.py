"""End to end: the real engines (piper, phoneme motion, warp at 256 px) behind the server, a real
aiortc client on loopback; everything is measured on the received pixels and sound."""

from __future__ import annotations

import asyncio
import base64
import multiprocessing
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from fakes import run_async

import vlogger.engines.avatar
from benchmarks.receiver import Receiver, audio_envelope, av_offset, measure_faces
from vlogger.runtime.server import VloggerServer
from vlogger.runtime.server_config import ServerConfig

pytestmark = pytest.mark.slow
IDLE_S = 10.0


@run_async
async def test_real_session_idles_then_speaks_in_sync() -> None:
    os.environ.setdefault("GLOG_minloglevel", "2")
    from vlogger.runtime.config import VloggerConfig
    from vlogger.runtime.engine_factory import RealEngines

    config = VloggerConfig()
    config.output.height = 256
    server = VloggerServer(RealEngines(config), ServerConfig(port=0, loopback_ice=True))
    await server.start()
    rx = Receiver(f"ws://127.0.0.1:{server.port}/ws")
    try:
        await rx.connect()
        await rx.wait_media(10)
        t_idle0 = time.monotonic()
        await asyncio.sleep(IDLE_S)
        t_say = await rx.say("Hello! I am a talking avatar, made from one photo. Nice to meet you.", id="e1")
        t_started = await rx.wait_utterance("e1", "started", 5)
        t_done = await rx.wait_utterance("e1", "done", 20)
        await asyncio.sleep(0.4)
        stats = [e for _, e in rx.events if e["type"] == "stats"]
        # a photo without a face is refused by name; a real one is switched to, video running on
        n_events = len(rx.events)
        blank = cv2.imencode(".png", np.full((200, 300, 3), 90, np.uint8))[1].tobytes()
        await rx.send({"type": "avatar", "image": base64.b64encode(blank).decode()})
        err = await rx.wait_event(lambda e: e["type"] in ("error", "avatar"), 20, since=n_events)
        assert err["type"] == "error" and err["code"] == "bad_image" and "face" in err["message"]
        photo = (
            Path(vlogger.engines.avatar.__file__).parent / "assets" / "default_portrait.png"
        ).read_bytes()
        n_events = len(rx.events)
        await rx.send({"type": "avatar", "image": base64.b64encode(photo).decode()})
        ok = await rx.wait_event(lambda e: e["type"] in ("error", "avatar"), 20, since=n_events)
        assert ok == {"type": "avatar", "width": 256, "height": 256, "faces": 1}
        n_video = len(rx.video)
        await asyncio.sleep(0.5)
        assert len(rx.video) - n_video >= 8
    finally:
        await rx.close()
        t_closed = time.monotonic()  # the session (and its render process; the spare stays) is freed
        while server.sessions or len(multiprocessing.active_children()) > 1:
            if time.monotonic() - t_closed > 5:
                break
            await asyncio.sleep(0.02)
        freed_s = time.monotonic() - t_closed
        await server.stop()
    assert freed_s < 2.0, f"closing the client freed its session in {freed_s:.2f} s"
    # the spare render process is gone with the server
    deadline = time.monotonic() + 3
    while multiprocessing.active_children() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not multiprocessing.active_children(), "render processes outlived the server"

    faces = measure_faces(rx.video)
    assert len(faces.t) > 0.9 * len(rx.video), "mediapipe lost the face in the received video"

    # idle: frames keep coming, at least one blink, the head moves
    idle = (faces.t >= t_idle0) & (faces.t < t_say)
    assert rx.fps(t_idle0, t_say) >= 20
    eyes = faces.eyes[idle]
    assert eyes.min() < 0.6 * np.median(eyes), f"no blink in {IDLE_S} s idle (eyes {eyes.min():.3f})"
    nose = faces.nose[idle]
    assert np.ptp(nose, axis=0).max() > 1.0, "the head did not move while idling"
    baseline = float(np.median(faces.mouth[idle]))

    # speech: frame rate, time to the first open mouth, lips vs sound
    speaking = (faces.t >= t_started) & (faces.t <= t_done)
    assert rx.fps(t_started, t_done) >= 20
    opened = faces.t[(faces.t > t_say) & (faces.mouth > baseline + 0.04)]
    assert opened.size, "the mouth never opened"
    first_open = opened[0] - t_say
    assert first_open < 1.0, f"first open mouth {first_open * 1000:.0f} ms after say"
    assert faces.mouth[speaking].max() > baseline + 0.08
    at, rms = audio_envelope(rx.audio)
    window = (at >= t_say) & (at <= t_done + 0.3)
    vwin = (faces.t >= t_say) & (faces.t <= t_done + 0.3)
    offset = av_offset(faces.t[vwin], faces.mouth[vwin], at[window], rms[window])
    assert abs(offset) <= 0.12, f"A/V offset {offset * 1000:.0f} ms"
    assert any(s.get("say_to_first_frame_ms") for s in stats)
    print(
        f"\nfirst open mouth {first_open * 1000:.0f} ms, A/V offset {offset * 1000:+.0f} ms, "
        f"fps {rx.fps(t_started, t_done):.1f}"
    )
