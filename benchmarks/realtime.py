"""Real-time serving: ``vlogger serve`` with 1, 2 and 4 concurrent sessions at 256 and 512 px.

The server runs as its own process (``python -m vlogger.runtime serve --loopback-ice``); this
process holds the receivers (aiortc clients on loopback, one per session). Per configuration every
session idles, then says ``--utterances`` sentences (all sessions at once, the worst case), and
we measure at the receivers, by network arrival time:

* sustained fps (frames received per second over the whole run; min and median over sessions)
  and the server's own count of newly rendered frames per second (``stats.fps_rendered``);
* the first frame with an open mouth after ``say`` (mediapipe FaceMesh on the received pixels,
  open = idle median + 0.04 of the mouth-opening ratio), median and p95, next to piper's own
  first-chunk latency for the same sentences measured in this process on an idle CPU;
* the A/V offset: best-correlating lag of the mouth-opening series behind the audio envelope
  (positive = video later), median over utterances, and the same lag of the motion model itself
  (rig landmarks vs audio on the stream clock, no transport): their difference is what serving adds;
* the server's CPU (user + system of the server process and its render processes, in cores)
  over the run, and the load average.

Prints a table, writes ``benchmarks/results/realtime.json`` and ``realtime.png``. Usage::

    python benchmarks/realtime.py [--sizes 256 512] [--sessions 1 2 4] [--utterances 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a script from benchmarks/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.receiver import Receiver, audio_envelope, av_offset, measure_faces

RESULTS = Path(__file__).with_name("results")
#: Each begins with an open-mouth sound, so "first open mouth" measures latency, not phonetics.
SENTENCES = (
    "Hello! It is really nice to meet you today.",
    "Alright, the weather is perfect for a long walk in the park.",
    "Hi there, could you tell me a little more about your project?",
    "Okay, I think we should try that again tomorrow morning.",
)
OPEN_DELTA = 0.04
TARGET_FPS = 25.0


def _cpu_seconds(pid: int, main_only: bool = False) -> float:
    """CPU seconds (user + system) of the server process and its live children (the render
    processes, one per session, and the fork server they come from); ``main_only``: the server
    process alone."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or (not main_only and int(fields[1]) in _family(pid)):
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _family(pid: int) -> set[int]:
    """The server and its children (render workers are the fork server's children)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
    family = {pid}
    for _ in range(3):
        family |= {p for p, pp in parents.items() if pp in family}
    return family


def start_server(
    size: int, motion: str | None = None, mouth: str | None = None
) -> tuple[subprocess.Popen[str], str]:
    cmd = (
        [
            sys.executable,
            "-m",
            "vlogger.runtime",
            "serve",
            "--port",
            "0",
            "--size",
            str(size),
            "--loopback-ice",
            "--max-sessions",
            "8",
            "--log-level",
            "warning",
        ]
        + (["--motion", motion] if motion else [])
        + (["--mouth", mouth] if mouth else [])
    )
    proc = subprocess.Popen(
        cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "GLOG_minloglevel": "2"}
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if m := re.search(r"open http://([\d.]+:\d+)/", line):
            return proc, f"ws://{m.group(1)}/ws"
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("the server did not start")


async def _session_run(rx: Receiver, utterances: int, idle_s: float, offset: int) -> dict[str, Any]:
    marks: list[dict[str, Any]] = []
    await asyncio.sleep(idle_s)
    for k in range(utterances):
        uid = f"b{k}"
        t_say = await rx.say(SENTENCES[(k + offset) % len(SENTENCES)], id=uid)
        t_start = await rx.wait_utterance(uid, "started", 15)
        t_done = await rx.wait_utterance(uid, "done", 30)
        marks.append({"say": t_say, "started": t_start, "done": t_done})
        await asyncio.sleep(0.8)
    return {"marks": marks}


async def run_config(url: str, pid: int, sessions: int, utterances: int) -> dict[str, Any]:
    rxs = [Receiver(url, keep_frames=False) for _ in range(sessions)]
    await asyncio.gather(*(r.connect() for r in rxs))
    await asyncio.gather(*(r.wait_media(15) for r in rxs))
    await asyncio.sleep(1.0)  # settle
    for r in rxs:
        r.keep_frames = True
    t0, cpu0, main0 = time.monotonic(), _cpu_seconds(pid), _cpu_seconds(pid, main_only=True)
    load0 = os.getloadavg()[0]
    runs = await asyncio.gather(*(_session_run(r, utterances, 1.5, i) for i, r in enumerate(rxs)))
    t1, cpu1, main1 = time.monotonic(), _cpu_seconds(pid), _cpu_seconds(pid, main_only=True)
    for r in rxs:
        await r.close()
    fps = [r.fps(t0, t1) for r in rxs]
    rendered = [
        statistics.median(
            [e["fps_rendered"] for t, e in r.events if e["type"] == "stats" and t0 + 1 <= t <= t1]
        )
        for r in rxs
    ]
    first_open, offsets = [], []
    for r, run in zip(rxs, runs, strict=True):
        frames = [v for v in r.video if t0 <= v.arrival <= t1]
        faces = measure_faces(frames)
        r.video.clear()
        first_say = run["marks"][0]["say"]
        idle = faces.mouth[faces.t < first_say]
        base = float(np.median(idle)) if idle.size else float(np.median(faces.mouth))
        at, rms = audio_envelope(r.audio)
        for m in run["marks"]:
            opened = faces.t[(faces.t > m["say"]) & (faces.mouth > base + OPEN_DELTA)]
            if opened.size:
                first_open.append((opened[0] - m["say"]) * 1000.0)
            win_v = (faces.t >= m["say"]) & (faces.t <= m["done"] + 0.3)
            win_a = (at >= m["say"]) & (at <= m["done"] + 0.3)
            offsets.append(av_offset(faces.t[win_v], faces.mouth[win_v], at[win_a], rms[win_a]) * 1000.0)
    return {
        "sessions": sessions,
        "fps_min": min(fps),
        "fps_median": statistics.median(fps),
        "fps_rendered_min": min(rendered),
        "first_open_ms_median": statistics.median(first_open) if first_open else float("nan"),
        "first_open_ms_p95": float(np.percentile(first_open, 95)) if first_open else float("nan"),
        "first_open_ms": first_open,
        "av_offset_ms_median": statistics.median(offsets) if offsets else float("nan"),
        "av_offset_ms": offsets,
        "server_cpu_cores": (cpu1 - cpu0) / (t1 - t0),
        "main_process_cpu_cores": (main1 - main0) / (t1 - t0),
        "load_average_1min_at_start": load0,
        "seconds": t1 - t0,
    }


def piper_first_chunk_ms() -> float:
    from vlogger.engines.tts import PiperTTS

    tts = PiperTTS()
    tts.warmup()
    times = []
    for _ in range(3):
        for s in SENTENCES:
            t = time.perf_counter()
            next(iter(tts.synthesize(s)))
            times.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(times)


def model_lag_ms(size: int, motion: str | None = None, mouth: str | None = None) -> float:
    """Lag of the motion model's mouth behind the audio, on the stream clock (no transport)."""
    from vlogger.engines.metrics import mouth_opening
    from vlogger.engines.tts import PiperTTS
    from vlogger.runtime.config import VloggerConfig
    from vlogger.runtime.engine_factory import RealEngines

    config = VloggerConfig()
    if motion:
        config.motion_engine = motion
    if mouth:
        config.mouth = mouth
    config.output.height = size
    engines = RealEngines(config)
    avatar = engines.load_avatar(None)
    tts = PiperTTS()
    lags = []
    for s in SENTENCES:
        motion = engines.make_motion(0)
        chunks = list(tts.synthesize(s, 1.0))
        for c in chunks:
            motion.push_audio(c)
        motion.end_of_input()
        frames = motion.frames(chunks[-1].end + 0.5)
        vt = np.array([f.pts for f in frames])
        mouth = np.array([mouth_opening(avatar.rig.pose(f).face) for f in frames])
        rate = chunks[0].sample_rate
        pcm = np.concatenate([np.zeros(rate, np.float32)] + [c.pcm for c in chunks])
        n = rate // 50
        k = pcm.size // n
        at = np.arange(k) * 0.02
        rms = np.sqrt((pcm[: k * n].reshape(k, n).astype(np.float64) ** 2).mean(axis=1))
        lags.append(av_offset(vt, mouth, at, rms) * 1000.0)
    return statistics.median(lags)


def plot(results: list[dict[str, Any]], piper_ms: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    labels = [f"{r['size']}px x{r['sessions']}" for r in results]
    x = np.arange(len(results))
    axes[0].bar(x - 0.2, [r["fps_min"] for r in results], 0.4, label="received (min session)")
    axes[0].bar(x + 0.2, [r["fps_rendered_min"] for r in results], 0.4, label="newly rendered (min)")
    axes[0].axhline(TARGET_FPS, color="k", ls="--", lw=1)
    axes[0].set_title("sustained fps")
    axes[1].bar(x - 0.2, [r["first_open_ms_median"] for r in results], 0.4, label="median")
    axes[1].bar(x + 0.2, [r["first_open_ms_p95"] for r in results], 0.4, label="p95")
    axes[1].axhline(piper_ms, color="g", ls=":", lw=1, label="piper first chunk")
    axes[1].axhline(piper_ms + 150, color="k", ls="--", lw=1, label="target (+150 ms)")
    axes[1].set_title("say -> first open mouth (ms)")
    axes[2].bar(x, [r["av_offset_ms_median"] for r in results])
    for y in (-40, 40):
        axes[2].axhline(y, color="k", ls="--", lw=1)
    axes[2].set_title("A/V offset, video behind audio (ms)")
    for ax in axes:
        ax.set_xticks(x, labels, rotation=30)
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--utterances", type=int, default=2)
    ap.add_argument("--motion", default=None, help="the server's --motion (default: its default engine)")
    ap.add_argument("--mouth", default=None, help="the server's --mouth (learned or phonemes)")
    ap.add_argument("--tag", default="", help="suffix of the result files (realtime<tag>.json)")
    args = ap.parse_args()
    os.environ.setdefault("GLOG_minloglevel", "2")
    RESULTS.mkdir(exist_ok=True)

    print("piper first-chunk latency ...", file=sys.stderr)
    piper_ms = piper_first_chunk_ms()
    lag_ms = model_lag_ms(256, args.motion, args.mouth)
    results: list[dict[str, Any]] = []
    for size in args.sizes:
        proc, url = start_server(size, args.motion, args.mouth)
        try:
            for n in args.sessions:
                print(f"{size} px, {n} session(s) ...", file=sys.stderr)
                r = asyncio.run(run_config(url, proc.pid, n, args.utterances))
                r["size"] = size
                results.append(r)
                time.sleep(1.0)
        finally:
            proc.terminate()
            proc.wait(15)

    hold = {
        s: max([r["sessions"] for r in results if r["size"] == s and r["fps_rendered_min"] >= 24.0] or [0])
        for s in args.sizes
    }
    head = (
        f"{'size':>5} {'sess':>4} {'fps min':>8} {'rendered':>8} {'open med':>8} {'open p95':>8} "
        f"{'A/V ms':>7} {'cpu':>5} {'main':>5} {'load':>5}"
    )
    print(head)
    for r in results:
        print(
            f"{r['size']:>5} {r['sessions']:>4} {r['fps_min']:>8.1f} {r['fps_rendered_min']:>8.1f} "
            f"{r['first_open_ms_median']:>8.0f} {r['first_open_ms_p95']:>8.0f} "
            f"{r['av_offset_ms_median']:>+7.0f} {r['server_cpu_cores']:>5.2f} "
            f"{r['main_process_cpu_cores']:>5.2f} "
            f"{r['load_average_1min_at_start']:>5.2f}"
        )
    print(
        f"piper first chunk (median): {piper_ms:.0f} ms; target first open mouth <= {piper_ms + 150:.0f} ms"
    )
    print(f"motion model's own lag (no transport): {lag_ms:+.0f} ms")
    print(
        "largest session count holding 25 fps (newly rendered >= 24): "
        + ", ".join(f"{s} px: {hold[s]}" for s in args.sizes)
        + f" (of those tried: {args.sessions})"
    )
    out = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "piper_first_chunk_ms": piper_ms,
        "motion_model_lag_ms": lag_ms,
        "max_sessions_at_25fps": hold,
        "results": results,
        "command": " ".join(sys.argv),
    }
    out["motion"] = args.motion or "server default"
    out["mouth"] = args.mouth or "server default"
    (RESULTS / f"realtime{args.tag}.json").write_text(json.dumps(out, indent=2))
    plot(results, piper_ms, RESULTS / f"realtime{args.tag}.png")
    print(f"wrote {RESULTS / f'realtime{args.tag}.json'} and realtime{args.tag}.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
