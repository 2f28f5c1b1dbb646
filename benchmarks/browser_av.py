"""A/V offset at playout in headless Chromium, for ``vlogger serve`` and the pipecat example.

Both run as their own processes on 127.0.0.1 at 256 px; Playwright drives the system Chromium (no
browser download; the flags of ``tests/test_browser.py``). Per utterance it measures, as
``tests/test_pipecat_browser.py`` does, the lag of the avatar's mouth opening (face landmarker on
the frames drawn from the video element in ``requestVideoFrameCallback``) behind the received
voice's level (a WebAudio ``AnalyserNode`` on the element's stream), by cross-correlation
(:func:`benchmarks.receiver.av_offset`; negative: the mouth leads the voice). Alongside: Chromium's
``getStats`` every 0.5 s (audio and video jitter-buffer delay per emitted sample/frame over the
utterance, ``estimatedPlayoutTimestamp`` video minus audio), and each frame's own playout delay
(``expectedDisplayTime - receiveTime`` from the callback's metadata).

* ``serve``: ``vlogger serve --size 256``; the page's text box says a sentence, three times.
* ``pipecat``: ``examples/pipecat_avatar.py --size 256`` (echo brain); Chromium's fake microphone
  loops a sentence in the piper voice with 13 s of quiet, the avatar says it back three times.

    python benchmarks/browser_av.py            # -> benchmarks/results/browser_av.json
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import wave
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from test_browser import CHROMIUM, FLAGS  # noqa: E402

from benchmarks.receiver import ReceivedVideo, av_offset, measure_faces  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "browser_av.json"
SENTENCE = "Hello there, how are you today? I hope the weather is kind to you."
PIPECAT_SENTENCE = "Hello there, how are you today?"
UTTERANCES = 3
LOUD = 0.02
"""RMS above which the received voice counts as sounding (the idle avatar sends silence)."""

# Before the page's script: note every peer connection; errors.
INSTRUMENT = """(() => {
  const p = window.__probe = {pcs: [], errors: [], samples: [], shots: [], stats: [], frames: 0};
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); p.pcs.push(this); }
  };
  p.now = () => performance.now() / 1000;
  window.addEventListener('error', (e) => p.errors.push(String(e.message)));
})()"""

# Once the video plays: the remote stream's level every 20 ms, each drawn frame as a JPEG with the
# callback's metadata, and the inbound-rtp / playout stats every 0.5 s.
LISTEN = """(id) => {
  const p = window.__probe;
  const v = document.getElementById(id);
  p.ctx = new AudioContext();
  const mute = p.ctx.createGain();
  mute.gain.value = 0;
  mute.connect(p.ctx.destination);
  const a = p.ctx.createAnalyser();
  a.fftSize = 1024;
  p.ctx.createMediaStreamSource(v.srcObject).connect(a);
  a.connect(mute);
  const buf = new Float32Array(a.fftSize);
  const level = () => {
    a.getFloatTimeDomainData(buf);
    let s = 0;
    for (let i = 0; i < buf.length; i++) s += buf[i] * buf[i];
    return Math.sqrt(s / buf.length);
  };
  p.timer = setInterval(() => p.samples.push({t: p.now(), heard: level(), frames: p.frames}), 20);
  const c = document.createElement('canvas');
  const g = c.getContext('2d', {willReadFrequently: true});
  const frame = (now, m) => {
    p.frames++;
    if (p.shots.length < 3000) {
      c.width = v.videoWidth; c.height = v.videoHeight;
      g.drawImage(v, 0, 0);
      p.shots.push({t: p.now(), cb: now / 1000, show: m.expectedDisplayTime / 1000,
        recv: m.receiveTime !== undefined ? m.receiveTime / 1000 : null,
        rtp: m.rtpTimestamp !== undefined ? m.rtpTimestamp : null,
        url: c.toDataURL('image/jpeg', 0.92)});
    }
    if (p.listening) v.requestVideoFrameCallback(frame);
  };
  p.listening = true;
  v.requestVideoFrameCallback(frame);
  const pc = p.pcs[p.pcs.length - 1];
  const keep = ['kind', 'type', 'jitterBufferDelay', 'jitterBufferEmittedCount', 'jitterBufferTargetDelay',
    'jitterBufferMinimumDelay', 'estimatedPlayoutTimestamp', 'framesDecoded', 'framesReceived',
    'totalSamplesReceived', 'concealedSamples', 'packetsReceived', 'packetsLost', 'jitter',
    'totalPlayoutDelay', 'totalSamplesCount', 'synthesizedSamplesDuration', 'remoteTimestamp',
    'reportsSent', 'totalProcessingDelay', 'framesDropped', 'totalDecodeTime'];
  p.statTimer = setInterval(async () => {
    const t = p.now(), row = {t};
    (await pc.getStats()).forEach((s) => {
      let name = null;
      if (s.type === 'inbound-rtp' || s.type === 'remote-outbound-rtp') name = s.type + ':' + s.kind;
      else if (s.type === 'media-playout') name = 'media-playout';
      if (!name) return;
      const o = {};
      for (const k of keep) if (s[k] !== undefined) o[k] = s[k];
      row[name] = o;
    });
    p.stats.push(row);
  }, 500);
  return {state: p.ctx.state, baseLatency: p.ctx.baseLatency, outputLatency: p.ctx.outputLatency,
          audioTracks: v.srcObject.getAudioTracks().length, videoTracks: v.srcObject.getVideoTracks().length};
}"""

COLLECT = """(id) => {
  const p = window.__probe;
  p.listening = false;
  clearInterval(p.timer);
  clearInterval(p.statTimer);
  const pc = p.pcs[p.pcs.length - 1];
  const v = document.getElementById(id);
  return {samples: p.samples, shots: p.shots, stats: p.stats, errors: p.errors,
          answer: pc.remoteDescription.sdp, offer: pc.localDescription.sdp,
          outputLatency: p.ctx.outputLatency, w: v.videoWidth, h: v.videoHeight};
}"""

HEARD = "() => window.__probe.samples.map((x) => [x.t, x.heard])"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_wav(path: Path) -> None:
    """The pipecat sentence in the packaged piper voice at 48 kHz: 1 s quiet, the sentence, 13 s
    quiet (Chromium's fake device loops the file, so the user speaks every ~16 s)."""
    from vlogger.engines.audio import resample
    from vlogger.engines.tts import PiperTTS

    tts = PiperTTS()
    pcm = resample(np.concatenate([c.pcm for c in tts.synthesize(PIPECAT_SENTENCE)]), tts.sample_rate, 48000)
    x = np.concatenate([np.zeros(48000), 0.7 * pcm, np.zeros(13 * 48000)])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


def start(cmd: list[str], url: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ, GLOG_minloglevel="2", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[:2]} exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"{cmd[:2]} did not serve {url}: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def segments(t: np.ndarray, heard: np.ndarray, gap: float = 1.5) -> list[tuple[float, float]]:
    """Sounding spans of the received voice (loud samples closer than ``gap`` s joined)."""
    loud = t[heard > LOUD]
    out: list[tuple[float, float]] = []
    for x in loud:
        if out and x - out[-1][1] < gap:
            out[-1] = (out[-1][0], float(x))
        else:
            out.append((float(x), float(x)))
    return [s for s in out if s[1] - s[0] > 0.5]


def _image(url: str) -> np.ndarray:
    import cv2

    jpeg = np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8)
    return cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


async def drive_serve(pw: Any, chromium: str, url: str) -> dict[str, Any]:
    browser = await pw.chromium.launch(executable_path=chromium, args=FLAGS)
    try:
        page = await browser.new_page()
        await page.add_init_script(INSTRUMENT)
        await page.goto(url)
        await page.wait_for_function(
            "document.getElementById('video').videoWidth > 0 && window.vlogger.connection === 'connected'"
            " && document.getElementById('video').srcObject.getAudioTracks().length > 0",
            timeout=20000,
        )
        await page.wait_for_timeout(1500)
        info = await page.evaluate(LISTEN, "video")
        await page.wait_for_timeout(1500)
        sends = []
        for i in range(1, UTTERANCES + 1):
            await page.fill("#text", SENTENCE)
            sends.append(await page.evaluate("window.__probe.now()"))
            await page.click("#send")
            await page.wait_for_function(f"window.vlogger.utterances['u{i}'] === 'done'", timeout=30000)
            await page.wait_for_timeout(2000)
        got = await page.evaluate(COLLECT, "video")
        got["errors"] += [str(e) for e in await page.evaluate("window.vlogger.errors")]
    finally:
        await browser.close()
    got["info"], got["sends"] = info, sends
    return got


async def drive_pipecat(pw: Any, chromium: str, url: str, wav: Path) -> dict[str, Any]:
    browser = await pw.chromium.launch(
        executable_path=chromium, args=[*FLAGS, f"--use-file-for-fake-audio-capture={wav}"]
    )
    try:
        page = await browser.new_page()
        await page.add_init_script(INSTRUMENT)
        await page.goto(url)
        await page.click("#connect")
        await page.wait_for_function(
            """() => { const v = document.getElementById('avatar'), p = window.__probe;
              const pc = p.pcs[p.pcs.length - 1];
              return v.videoWidth > 0 && v.currentTime > 0 && !!pc && pc.connectionState === 'connected'
                && v.srcObject.getAudioTracks().length > 0; }""",
            timeout=20000,
        )
        info = await page.evaluate(LISTEN, "avatar")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            await asyncio.sleep(2)
            s = np.array(await page.evaluate(HEARD))
            if len(s) and len(done := segments(s[:, 0], s[:, 1])) >= UTTERANCES:
                if s[-1, 0] - done[UTTERANCES - 1][1] > 1.5:
                    break
        got = await page.evaluate(COLLECT, "avatar")
        await page.click("#hangup")
    finally:
        await browser.close()
    got["info"], got["sends"] = info, []
    return got


def _delta(a: dict, b: dict, num: str, den: str) -> float | None:
    if not a or not b or num not in a or num not in b:
        return None
    n = b[den] - a[den]
    return 1000 * (b[num] - a[num]) / n if n > 0 else None


def analyse(got: dict[str, Any]) -> dict[str, Any]:
    s = got["samples"]
    t = np.array([x["t"] for x in s])
    heard = np.array([x["heard"] for x in s])
    shots = got["shots"]
    faces = measure_faces(
        [ReceivedVideo(x["t"], i, _image(x["url"])) for i, x in enumerate(shots)], static=False
    )
    show = {x["t"]: x["show"] for x in shots}
    face_show = np.array([show[v] for v in faces.t])
    spans = segments(t, heard)
    if got["sends"]:  # serve: the first sounding span after each send
        spans = [next(sp for sp in spans if sp[0] > t0) for t0 in got["sends"]]
    stats = got["stats"]
    out = []
    for t_first, t_last in spans[:UTTERANCES]:
        wide = (t >= t_first - 0.6) & (t <= t_last + 0.6)
        near = (faces.t >= t_first - 0.6) & (faces.t <= t_last + 0.6)
        offset = av_offset(faces.t[near], faces.mouth[near], t[wide], heard[wide], max_lag=0.5)
        offset_show = av_offset(face_show[near], faces.mouth[near], t[wide], heard[wide], max_lag=0.5)
        during = [x for x in stats if t_first - 0.5 <= x["t"] <= t_last + 0.5]
        a, b = (during[0], during[-1]) if len(during) > 1 else ({}, {})
        aa, ab = a.get("inbound-rtp:audio", {}), b.get("inbound-rtp:audio", {})
        va, vb = a.get("inbound-rtp:video", {}), b.get("inbound-rtp:video", {})
        est = [
            x["inbound-rtp:video"]["estimatedPlayoutTimestamp"]
            - x["inbound-rtp:audio"]["estimatedPlayoutTimestamp"]
            for x in during
            if "estimatedPlayoutTimestamp" in x.get("inbound-rtp:video", {})
            and "estimatedPlayoutTimestamp" in x.get("inbound-rtp:audio", {})
        ]
        frames = [x for x in shots if t_first - 0.6 <= x["t"] <= t_last + 0.6 and x["recv"] is not None]
        playout = [1000 * (x["show"] - x["recv"]) for x in frames]
        out.append(
            {
                "t_first": t_first,
                "t_last": t_last,
                "av_offset_ms": 1000 * offset,
                "av_offset_display_time_ms": 1000 * offset_show,
                "faces": int(near.sum()),
                "audio_jitter_buffer_ms": _delta(aa, ab, "jitterBufferDelay", "jitterBufferEmittedCount"),
                "audio_jitter_target_ms": _delta(
                    aa, ab, "jitterBufferTargetDelay", "jitterBufferEmittedCount"
                ),
                "video_jitter_buffer_ms": _delta(va, vb, "jitterBufferDelay", "jitterBufferEmittedCount"),
                "video_jitter_target_ms": _delta(
                    va, vb, "jitterBufferTargetDelay", "jitterBufferEmittedCount"
                ),
                "video_receive_to_display_ms": float(np.median(playout)) if playout else None,
                "estimated_playout_video_minus_audio_ms": float(np.median(est)) if est else None,
                "audio_playout_delay_ms": _delta(
                    a.get("media-playout", {}),
                    b.get("media-playout", {}),
                    "totalPlayoutDelay",
                    "totalSamplesCount",
                ),
            }
        )
    msid = [line for line in got["answer"].splitlines() if line.startswith(("a=msid:", "m="))]
    last = stats[-1] if stats else {}
    return {
        "utterances": out,
        "answer_msid": msid,
        "remote_outbound_rtp": {k: v for k, v in last.items() if k.startswith("remote-outbound")},
        "last_stats": last,
        "fps": (s[-1]["frames"] - s[0]["frames"]) / (t[-1] - t[0]),
        "frames_shot": len(shots),
        "faces_found": len(faces.t),
        "audio_context": got["info"],
        "errors": got["errors"],
        "size": [got["w"], got["h"]],
        "samples": {"t": t.tolist(), "heard": heard.tolist()},
        "mouth": {"t": faces.t.tolist(), "display_t": face_show.tolist(), "mouth": faces.mouth.tolist()},
        "frames": [{k: x[k] for k in ("t", "cb", "show", "recv", "rtp")} for x in shots],
        "stats": stats,
    }


async def run_one(name: str, chromium: str, tmp: Path) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    if name == "serve":
        vlogger = shutil.which("vlogger", path=str(Path(sys.executable).parent)) or "vlogger"
        cmd = [vlogger, "serve", "--host", "127.0.0.1", "--port", str(port), "--size", "256"]
    else:
        cmd = [sys.executable, "examples/pipecat_avatar.py", "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--size", "256"]
    load_before = os.getloadavg()
    proc = start(cmd, url, tmp / f"{name}.log")
    try:
        await asyncio.sleep(3)  # let the process settle
        load_start = os.getloadavg()
        async with async_playwright() as pw:
            if name == "serve":
                got = await drive_serve(pw, chromium, url)
            else:
                wav = tmp / "mic.wav"
                write_wav(wav)
                got = await drive_pipecat(pw, chromium, url, wav)
        load_end = os.getloadavg()
    finally:
        stop(proc)
    result = analyse(got)
    result["load"] = {"before_start": load_before, "at_browser": load_start, "at_end": load_end}
    result["command"] = " ".join(cmd[1:])
    return result


def main() -> int:
    os.environ.setdefault("GLOG_minloglevel", "2")
    chromium = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if chromium is None:
        print("no system chromium", file=sys.stderr)
        return 2
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} CPUs)")
    which = sys.argv[1:] or ["serve", "pipecat"]
    results: dict[str, Any] = {"load_at_start": load, "cpus": os.cpu_count(), "chromium": chromium}
    with tempfile.TemporaryDirectory() as d:
        for name in which:
            while os.getloadavg()[0] > 1.5:  # a quiet machine for each run
                time.sleep(5)
            results[name] = asyncio.run(run_one(name, chromium, Path(d)))
            r = results[name]
            print(f"{name}: load {r['load']}, fps {r['fps']:.1f}, msid {r['answer_msid']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, separators=(",", ":")))  # every sample: kept compact

    def f(x: float | None) -> str:
        return "    -" if x is None or x != x else f"{x:+5.0f}"

    print(
        "\nrun      utt  A/V(now)  A/V(disp)  audioJB  audioJBtgt  videoJB  vid recv->disp  est V-A"
        "  load1 (start/end)"
    )
    for name in which:
        r = results[name]
        for i, u in enumerate(r["utterances"], 1):
            print(
                f"{name:8s} {i:3d}  {f(u['av_offset_ms'])}     {f(u['av_offset_display_time_ms'])}      "
                f"{f(u['audio_jitter_buffer_ms'])}    {f(u['audio_jitter_target_ms'])}      "
                f"{f(u['video_jitter_buffer_ms'])}    {f(u['video_receive_to_display_ms'])}        "
                f"{f(u['estimated_playout_video_minus_audio_ms'])}  "
                f"{r['load']['at_browser'][0]:.2f}/{r['load']['at_end'][0]:.2f}"
            )
        med = np.nanmedian([u["av_offset_ms"] for u in r["utterances"]]) if r["utterances"] else float("nan")
        print(f"{name:8s} median A/V offset {med:+.0f} ms (negative: mouth ahead of the voice)")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
