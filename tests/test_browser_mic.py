"""The page's microphone in a real browser: Chromium's fake capture device plays a synthesised
wav; the server hears it (VAD + whisper), the transcript reaches the page, and the echo brain
says it back (real engines, 256 px)."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np
import pytest
from fakes import run_async
from test_browser import FLAGS, chromium_or_skip
from test_listen import wer

from vlogger.runtime.server import VloggerServer
from vlogger.runtime.server_config import ServerConfig

pytestmark = pytest.mark.slow
SPOKEN = "Good morning. Could you tell me about the weather today?"


def _write_wav(path: Path) -> None:
    from vlogger.engines.audio import resample
    from vlogger.engines.tts import PiperTTS

    chunks = list(PiperTTS().synthesize(SPOKEN, 0.0))
    pcm = resample(np.concatenate([c.pcm for c in chunks]), chunks[0].sample_rate, 48000)
    # 1 s of quiet, the sentence, then 10 s of quiet (the fake device loops the file)
    x = np.concatenate([np.zeros(48000), pcm * 0.8, np.zeros(480000)])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


@run_async
async def test_page_microphone_is_transcribed_and_said_back(tmp_path: Path) -> None:
    chromium = chromium_or_skip()
    from playwright.async_api import async_playwright

    os.environ.setdefault("GLOG_minloglevel", "2")
    from vlogger.runtime.config import VloggerConfig
    from vlogger.runtime.engine_factory import RealEngines

    wav = tmp_path / "mic.wav"
    _write_wav(wav)
    config = VloggerConfig()
    config.output.height = 256
    server = VloggerServer(RealEngines(config), ServerConfig(port=0, loopback_ice=True))
    await server.start()
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=chromium, args=[*FLAGS, f"--use-file-for-fake-audio-capture={wav}"]
            )
            page = await browser.new_page()
            await page.goto(server.url + "?mic=1")
            await page.wait_for_function("window.vlogger.connection === 'connected'", timeout=15000)
            await page.wait_for_function("window.vlogger.transcripts.length > 0", timeout=20000)
            heard = await page.evaluate("window.vlogger.transcripts[0]")
            await page.wait_for_function(
                "window.vlogger.utterances['r1'] === 'done' || window.vlogger.utterances['r2'] === 'started'",
                timeout=20000,
            )
            state = await page.evaluate("({utt: window.vlogger.utterances, errors: window.vlogger.errors})")
            shown = await page.inner_text("#heard")
            await browser.close()
    finally:
        await server.stop()
    assert wer(SPOKEN, heard) < 0.2, heard
    assert heard in shown
    assert state["utt"].get("r1") in ("started", "done"), state
    assert not state["errors"], state["errors"]
