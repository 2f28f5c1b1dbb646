"""The pipecat browser example (``examples/pipecat_avatar.py`` over ``vlogger.integrations.pipecat_app``)
and the pipecat services over this package's engines (``vlogger.integrations.pipecat_services``).

Tested: the services alone in ``pipecat.tests.utils.run_test`` with the real models (whisper hears
piper's sentence at 16 and 8 kHz; piper speaks, and refuses empty, symbol-only and over-long text by
name without stopping); the echo brain; the example's flags and start-up errors; and the example's
real server on 127.0.0.1 with an aiortc peer (no ICE servers) whose microphone says a sentence: the
avatar says it back (heard again by whisper at the receiving end), its mouth moves while its voice
is loud and rests in silence, the server serves a second connection, every ICE candidate is a host
candidate on 127.0.0.1 and every datagram goes to 127.0.0.1. The openai brain (pipecat's context
aggregators and ``OpenAILLMService``) runs against a fake chat-completions server on 127.0.0.1.
Not tested: a real browser (the page's script), a real model server, barge-in over WebRTC (the echo
brain's interruption is tested in memory). Skipped where the pipecat extra is not installed.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pipecat", reason="the pipecat extra is not installed (pip install -e '.[pipecat]')")

import aiohttp
import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    ErrorFrame,
    InputAudioRawFrame,
    InterruptionFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    VADUserStartedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.tests.utils import SleepFrame, run_test

from benchmarks.receiver import Receiver, audio_envelope, av_offset, measure_faces
from examples.pipecat_avatar import main, parse_args
from vlogger.engines.audio import resample
from vlogger.integrations.pipecat_app import AppConfig, EchoBrain, PipecatAvatarApp, openai_brain
from vlogger.integrations.pipecat_services import (
    VloggerSTTService,
    VloggerTTSService,
    VloggerVADAnalyzer,
    int16_bytes,
)

SENTENCE = "Hello there, how are you today?"
LOUD = 0.02
"""Received RMS above which the avatar counts as speaking (its silence decodes to ~0)."""


def words(text: str) -> str:
    return re.sub(r"[^a-z ]", "", text.lower())


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    """The sentence in the packaged piper voice (float32 mono, 22,050 Hz)."""
    from vlogger.engines.tts import PiperTTS

    tts = PiperTTS()
    pcm = np.concatenate([c.pcm for c in tts.synthesize(SENTENCE)]).astype(np.float32)
    return pcm, tts.sample_rate


# -- the services alone ---------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [16000, 8000, 44100])
def test_vad_and_stt_transcribe_a_sentence(rate: int, speech: tuple[np.ndarray, int]) -> None:
    pcm, src = speech
    audio = np.concatenate([np.zeros(rate // 2), 0.7 * resample(pcm, src, rate), np.zeros(rate)])
    piece = rate // 50
    frames = [
        InputAudioRawFrame(audio=int16_bytes(audio[i : i + piece]), sample_rate=rate, num_channels=1)
        for i in range(0, audio.size - piece + 1, piece)
    ]
    pipeline = Pipeline([VADProcessor(vad_analyzer=VloggerVADAnalyzer()), VloggerSTTService()])
    down, _ = asyncio.run(
        run_test(
            pipeline,
            frames_to_send=frames,
            pipeline_params=PipelineParams(audio_in_sample_rate=rate),
            start_timeout=30.0,
        )
    )
    texts = [f.text for f in down if isinstance(f, TranscriptionFrame)]
    assert len(texts) == 1, texts
    assert "how are you" in words(texts[0])


def test_tts_speaks_and_refuses_bad_text_by_name() -> None:
    frames = [
        TTSSpeakFrame("!!! ???"),
        TTSSpeakFrame("word " * 5000),
        TTSSpeakFrame("Hello there."),
    ]
    tts = VloggerTTSService(sample_rate=24000)
    down, up = asyncio.run(run_test(tts, frames_to_send=frames, start_timeout=30.0))
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    errors = [f.error for f in up if isinstance(f, ErrorFrame)]
    assert any("nothing to speak" in e for e in errors), errors
    assert any("BadText" in e and "too long" in e for e in errors), errors
    assert audio and all(f.sample_rate == 24000 and f.num_channels == 1 for f in audio)
    seconds = sum(len(f.audio) for f in audio) / 2 / 24000
    assert 0.5 < seconds < 3.0, seconds


def test_echo_brain_says_transcripts_back_and_yields_to_the_user() -> None:
    frames = [
        VADUserStartedSpeakingFrame(),  # the avatar is quiet: nothing to interrupt
        TranscriptionFrame("  how are you  ", "user", "now"),
        TranscriptionFrame(" ", "user", "now"),
        BotStartedSpeakingFrame(),
        VADUserStartedSpeakingFrame(),  # barge-in
    ]
    down, up = asyncio.run(run_test(EchoBrain(), frames_to_send=frames))
    spoken = [f.text for f in down if isinstance(f, TTSSpeakFrame)]
    assert spoken == ["how are you"]
    assert sum(isinstance(f, TranscriptionFrame) for f in down) == 2
    kinds = [type(f) for f in down]
    assert kinds.count(InterruptionFrame) == 1
    assert kinds.index(InterruptionFrame) > kinds.index(BotStartedSpeakingFrame)
    assert sum(isinstance(f, InterruptionFrame) for f in up) == 1


def test_openai_brain_answers_through_a_local_server(speech: tuple[np.ndarray, int]) -> None:
    """Speech in -> our VAD/STT -> pipecat's context + OpenAILLMService on a fake 127.0.0.1 server
    -> our TTS: the server gets the transcript, its reply is spoken."""
    pcm, src = speech
    audio = np.concatenate([np.zeros(8000), 0.7 * resample(pcm, src, 16000), np.zeros(24000)])
    frames = [
        InputAudioRawFrame(audio=int16_bytes(audio[i : i + 320]), sample_rate=16000, num_channels=1)
        for i in range(0, audio.size - 319, 320)
    ]
    asked, spoken = asyncio.run(_openai_round_trip(frames))
    assert asked and "how are you" in words(asked[-1]), asked
    assert spoken > 0.5, f"{spoken:.2f} s of the reply was spoken"


async def _openai_round_trip(frames: list[Any]) -> tuple[list[str], float]:
    from aiohttp import web

    asked: list[str] = []

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        asked.append(str(body["messages"][-1]["content"]))
        r = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await r.prepare(request)
        for delta, stop in (({"role": "assistant", "content": "I am fine, thank you."}, None), ({}, "stop")):
            chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
            chunk["choices"] = [{"index": 0, "delta": delta, "finish_reason": stop}]
            await r.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await r.write(b"data: [DONE]\n\n")
        return r

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        before, after = openai_brain(f"http://127.0.0.1:{port}/v1", "m")
        listen = [VADProcessor(vad_analyzer=VloggerVADAnalyzer()), VloggerSTTService()]
        pipeline = Pipeline([*listen, *before, VloggerTTSService(), *after])
        frames = [*frames, SleepFrame(2.0)]
        down, _ = await run_test(pipeline, frames_to_send=frames, start_timeout=30.0)
    finally:
        await runner.cleanup()
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    return asked, sum(len(f.audio) for f in audio) / 2 / max(1, audio[0].sample_rate if audio else 1)


def test_flags_and_start_up_errors(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = parse_args(
        ["--port", "0", "--size", "256", "--brain", "openai", "--brain-url", "http://127.0.0.1:9/v1"]
    )
    assert (cfg.port, cfg.size, cfg.brain) == (0, 256, "openai")
    with pytest.raises(ValueError, match="brain-model"):
        cfg.check()
    before, after = openai_brain("http://127.0.0.1:9/v1/chat/completions", "m")  # built, never called
    assert len(before) == 2 and len(after) == 1
    assert main(["--image", str(tmp_path / "missing.png"), "--port", "0"]) == 2
    assert "image not found" in capsys.readouterr().err
    import cv2

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 90, np.uint8))
    assert main(["--image", str(blank), "--port", "0", "--size", "128"]) == 2
    assert "face" in capsys.readouterr().err


# -- the example on loopback ----------------------------------------------------------------------


class Microphone(MediaStreamTrack):
    """A microphone at 48 kHz in 20 ms frames, paced in real time: silence until :meth:`speak`,
    then the sentence once, then silence. Notes when the sentence starts and ends."""

    kind = "audio"

    def __init__(self, pcm48k: np.ndarray | None = None) -> None:
        super().__init__()
        self._speech = (np.clip(pcm48k, -1, 1) * 32767).astype(np.int16) if pcm48k is not None else None
        self._pos: int | None = None
        self._t0: float | None = None
        self._n = 0
        self.started: float | None = None
        self.ended: float | None = None

    def speak(self) -> None:
        self._pos = 0

    async def recv(self) -> av.AudioFrame:
        if self._t0 is None:
            self._t0 = time.monotonic()
        wait = self._t0 + self._n * 0.02 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        samples = np.zeros(960, np.int16)
        if self._speech is not None and self._pos is not None and self._pos < self._speech.size:
            piece = self._speech[self._pos : self._pos + 960]
            samples[: piece.size] = piece
            if self._pos == 0:
                self.started = time.monotonic()
            self._pos += 960
            if self._pos >= self._speech.size:
                self.ended = time.monotonic() + piece.size / 48000
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self._n * 960
        frame.time_base = Fraction(1, 48000)
        self._n += 1
        return frame


async def connect(url: str, mic: Microphone, sdps: list[str]) -> Receiver:
    """An aiortc peer (no ICE servers) on the example's page URL: sends ``mic``, records what it gets."""
    rx = Receiver(url)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    rx.pc = pc
    rx._watch_packets(pc.addTransceiver(mic, direction="sendrecv").receiver, "audio")
    rx._watch_packets(pc.addTransceiver("video", direction="recvonly").receiver, "video")

    @pc.on("track")
    def on_track(track: Any) -> None:
        rx._tasks.append(asyncio.ensure_future(rx._consume(track)))

    await pc.setLocalDescription(await pc.createOffer())
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + "api/offer", json={"sdp": pc.localDescription.sdp, "type": "offer"}) as r,
    ):
        answer = await r.json()
        assert r.status == 200, answer
    sdps += [pc.localDescription.sdp, answer["sdp"]]
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
    return rx


async def wait_for(cond: Any, timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout} s")
        await asyncio.sleep(0.05)
    return time.monotonic()


def loud_after(rx: Receiver, t: float) -> float | None:
    return next((a.arrival for a in rx.audio if a.arrival > t and np.sqrt(np.mean(a.pcm**2)) > LOUD), None)


def quiet_since(rx: Receiver, t: float, hold: float) -> float | None:
    """End of the last loud packet after ``t`` once ``hold`` s of quiet followed it, else None."""
    loud = [a.arrival for a in rx.audio if a.arrival > t and np.sqrt(np.mean(a.pcm**2)) > LOUD]
    if loud and rx.audio and rx.audio[-1].arrival - loud[-1] >= hold:
        return loud[-1]
    return None


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """aioice offers 127.0.0.1 only; returns where every STUN/media datagram was sent."""
    import aioice.ice

    sent: list[str] = []
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    send_data, send_stun = aioice.ice.StunProtocol.send_data, aioice.ice.StunProtocol.send_stun

    async def data(self: Any, payload: bytes, addr: tuple[str, int]) -> None:
        sent.append(addr[0])
        await send_data(self, payload, addr)

    def stun(self: Any, message: Any, addr: tuple[str, int]) -> None:
        sent.append(addr[0])
        send_stun(self, message, addr)

    monkeypatch.setattr(aioice.ice.StunProtocol, "send_data", data)
    monkeypatch.setattr(aioice.ice.StunProtocol, "send_stun", stun)
    return sent


def test_browser_example_on_loopback_echoes_with_a_moving_mouth(
    speech: tuple[np.ndarray, int], loopback_only: list[str]
) -> None:
    pcm, src = speech
    asyncio.run(_echo_round_trip(0.7 * resample(pcm, src, 48000), loopback_only))


async def _echo_round_trip(pcm48k: np.ndarray, sent: list[str]) -> None:
    from vlogger.engines.asr import WhisperASR

    app = PipecatAvatarApp(parse_args(["--port", "0", "--size", "256"]))
    sdps: list[str] = []
    await app.start()
    try:
        assert isinstance(app.config, AppConfig) and app.size == (256, 256)
        mic = Microphone(pcm48k)
        rx = await connect(app.url, mic, sdps)
        try:
            await rx.wait_media(20)
            t_idle = time.monotonic()
            await asyncio.sleep(1.5)
            mic.speak()
            t_end = await wait_for(lambda: mic.ended is not None, 10, "the sentence was not sent")
            t_end = float(mic.ended or t_end)
            t_first = loud_after(rx, t_end) or await wait_for(
                lambda: loud_after(rx, t_end) is not None, 20, "the avatar did not answer"
            )
            t_first = float(loud_after(rx, t_end) or t_first)
            await wait_for(lambda: quiet_since(rx, t_first, 1.0) is not None, 15, "the answer did not end")
            t_last = float(quiet_since(rx, t_first, 1.0) or 0.0)
        finally:
            await rx.close()
        await wait_for(lambda: app.connections == 0, 10, "the first connection's pipeline did not stop")
        # the server keeps serving: a second connection gets the idling avatar
        rx2 = await connect(app.url, Microphone(), sdps)
        try:
            await rx2.wait_media(20)
            t2 = time.monotonic()
            await asyncio.sleep(1.5)
            fps2 = rx2.fps(t2, time.monotonic())
        finally:
            await rx2.close()
        await wait_for(lambda: app.connections == 0, 10, "the second connection's pipeline did not stop")
    finally:
        await app.stop()

    # no traffic beyond 127.0.0.1: host candidates only, every datagram to loopback
    candidates = [line for sdp in sdps for line in sdp.splitlines() if line.startswith("a=candidate:")]
    assert candidates and all(" 127.0.0.1 " in c and " typ host" in c for c in candidates), candidates
    assert sent and set(sent) == {"127.0.0.1"}, set(sent)
    assert fps2 >= 20, f"second connection: {fps2:.1f} fps"

    # the avatar was silent while the user spoke, then answered with speech
    at, rms = audio_envelope(rx.audio)
    assert rms[(at > t_idle) & (at < t_end + 0.3)].max() < LOUD, "the avatar spoke before the user finished"
    latency = t_first - t_end
    assert latency < 6.0, f"user speech end -> first avatar audio {latency:.2f} s"
    answer = (at >= t_first) & (at <= t_last)
    assert t_last - t_first > 1.0, f"the answer lasted {t_last - t_first:.2f} s"
    assert rms[answer].std() / rms[answer].mean() > 0.3, "the answer's loudness does not vary like speech"
    heard = np.concatenate([a.pcm for a in rx.audio if t_first - 0.3 <= a.arrival <= t_last + 0.3])
    text = WhisperASR().text(resample(heard, rx.audio[0].rate, 16000))
    assert "how are you" in words(text), f"the avatar said {text!r}"

    # the mouth moves while the voice is loud and rests in silence
    window = [v for v in rx.video if t_idle <= v.arrival <= t_last + 1.0]
    faces = measure_faces(window[::2], static=False)
    assert len(faces.t) > 0.9 * len(window[::2]), "the face was lost in the received video"
    env = np.interp(faces.t, at, np.convolve(rms, np.ones(5) / 5, mode="same"))
    talking, silent = (
        env > 2 * LOUD,
        (env < LOUD / 2) & ((faces.t < t_first - 0.3) | (faces.t > t_last + 0.3)),
    )
    rest = float(np.median(faces.mouth[silent]))
    talk = float(np.median(faces.mouth[talking]))
    assert faces.mouth[talking].max() > rest + 0.06, "the mouth never opened while the avatar spoke"
    assert talk > rest + 0.05, "the mouth did not open with the voice"
    # idle motion and landmark jitter move a resting mouth by a few hundredths; speech by a tenth
    assert np.percentile(faces.mouth[silent], 90) < (rest + talk) / 2, "the mouth moved in silence"
    span = (faces.t >= t_first - 0.5) & (faces.t <= t_last + 0.5)
    wide = (at >= t_first - 0.5) & (at <= t_last + 0.5)
    offset = av_offset(faces.t[span], faces.mouth[span], at[wide], rms[wide])
    assert abs(offset) <= 0.2, f"A/V offset {offset * 1000:.0f} ms"
    print(
        f"\nuser speech end -> avatar audio {latency * 1000:.0f} ms, answer {t_last - t_first:.2f} s, "
        f"heard {text!r}, A/V offset {offset * 1000:+.0f} ms, second connection {fps2:.1f} fps, mouth "
        f"rest {rest:.3f} talking median {talk:.3f} max {faces.mouth[talking].max():.3f} "
        f"silent p90 {np.percentile(faces.mouth[silent], 90):.3f} ({talking.sum()}/{silent.sum()} frames)"
    )
