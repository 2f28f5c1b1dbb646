"""How many avatars one process holds at 25 fps: the in-process hosts (``vlogger livekit-worker``,
``examples/pipecat_avatar.py``, an agent with ``QueueAudioOutput``) run every session's motion,
renderer and colour conversion in their own process, unlike ``vlogger serve`` (render processes).

Per configuration (``--size``, ``--sessions``): N ``VloggerVideoGenerator`` s built as the worker
builds them (shared motion models, native pools pinned to one thread), each forwarded by LiveKit's
real ``rtc.AVSynchronizer`` into an ``rtc.AudioSource`` / ``rtc.VideoSource`` (100 ms queues, the
runner's wiring; no room), all speaking the same piper sentences back to back for ``--seconds``.
Measured: video frames the sources received per second (worst and median session), frames that
were drawn while speaking per second (the speech must not fall behind), and the process's CPU
(user + system, all threads) per wall second. A session "holds" when its worst second-half frame
rate is >= 24 fps.

Needs the ``livekit`` extra. Prints a table, writes ``benchmarks/results/worker_capacity.json``::

    python benchmarks/worker_capacity.py [--size 256] [--sessions 1 2 3] [--seconds 12]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FPS = 25.0
SENTENCES = (
    "Hello there, and welcome. I am the avatar of this worker.",
    "Every session in this process speaks at once, to see what one process can hold.",
)


def speech_frames(rate: int = 24000) -> list[Any]:
    from livekit import rtc

    from vlogger.engines.audio import resample
    from vlogger.engines.tts import PiperTTS
    from vlogger.runtime.config import VloggerConfig

    tts = PiperTTS(VloggerConfig().tts)
    pcm = np.concatenate([c.pcm for s in SENTENCES for c in tts.synthesize(s, 0.0)])
    i16 = np.clip(np.round(resample(pcm, tts.sample_rate, rate) * 32767), -32768, 32767).astype(np.int16)
    step = rate // 50
    return [
        rtc.AudioFrame(i16[a : a + step].tobytes(), rate, 1, i16[a : a + step].size)
        for a in range(0, i16.size, step)
    ]


async def one_config(size: int, sessions: int, seconds: float, frames: list[Any]) -> dict[str, Any]:
    from livekit import rtc
    from livekit.agents.voice.avatar import AudioSegmentEnd

    from vlogger.integrations.livekit import VloggerVideoGenerator
    from vlogger.runtime.config import VloggerConfig

    config = VloggerConfig()
    config.output.height = size
    models = await asyncio.to_thread(config.load_motion_models)
    gens = [await VloggerVideoGenerator.create(config, seed=i, models=models) for i in range(sessions)]
    shown: list[list[float]] = [[] for _ in gens]
    speaking: list[list[float]] = [[] for _ in gens]
    stop = asyncio.Event()

    async def feed(gen: VloggerVideoGenerator) -> None:
        while not stop.is_set():
            for f in frames:
                await gen.push_audio(f)
            await gen.push_audio(AudioSegmentEnd())
            await asyncio.sleep(0.5)

    async def forward(i: int, gen: VloggerVideoGenerator) -> None:
        audio = rtc.AudioSource(gen.audio_sample_rate, 1, queue_size_ms=100)
        video = rtc.VideoSource(gen.width, gen.height)
        sync = rtc.AVSynchronizer(
            audio_source=audio, video_source=video, video_fps=FPS, video_queue_size_ms=100
        )
        capture = video.capture_frame

        def counted(frame: Any, *a: Any, **kw: Any) -> None:
            shown[i].append(time.monotonic())
            capture(frame, *a, **kw)

        video.capture_frame = counted  # type: ignore[method-assign]
        gen.on_frame = lambda f: speaking[i].append(time.monotonic()) if f.motion.speaking else None
        try:
            async for item in gen:
                if stop.is_set():
                    break
                if not isinstance(item, AudioSegmentEnd):
                    await sync.push(item)
        finally:
            await sync.aclose()
            await audio.aclose()
            await video.aclose()

    tasks = [asyncio.create_task(feed(g)) for g in gens]
    tasks += [asyncio.create_task(forward(i, g)) for i, g in enumerate(gens)]
    await asyncio.sleep(2.0)  # warm-up
    t0, cpu0, load0 = time.monotonic(), time.process_time(), os.getloadavg()[0]
    await asyncio.sleep(seconds)
    t1, cpu1 = time.monotonic(), time.process_time()
    stop.set()
    for g in gens:
        g.clear_buffer()
    await asyncio.wait(tasks, timeout=10.0)
    for t in tasks:
        t.cancel()
    for g in gens:
        await g.aclose()

    def rate(times: list[float], a: float, b: float) -> float:
        return sum(a <= t < b for t in times) / (b - a)

    half = (t0 + t1) / 2
    fps = [rate(s, t0, t1) for s in shown]
    fps_late = [rate(s, half, t1) for s in shown]
    return {
        "size": size,
        "sessions": sessions,
        "fps_min": min(fps),
        "fps_median": statistics.median(fps),
        "fps_second_half_min": min(fps_late),
        "speaking_fps_median": statistics.median(rate(s, t0, t1) for s in speaking),
        "process_cpu_cores": (cpu1 - cpu0) / (t1 - t0),
        "load_average_1min_at_start": load0,
        "seconds": t1 - t0,
        "holds_25fps": min(fps_late) >= 24.0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size", type=int, nargs="+", default=[256])
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--out", type=Path, default=RESULTS / "worker_capacity.json")
    args = ap.parse_args(argv)
    try:
        import livekit.agents  # noqa: F401
    except ImportError:
        print("the livekit extra is not installed (pip install -e '.[livekit]')", file=sys.stderr)
        return 2
    from vlogger.engines.threads import pin_native_threads

    pin_native_threads(1)
    frames = speech_frames()
    results = []
    for size in args.size:
        for n in args.sessions:
            print(
                f"[{time.strftime('%H:%M:%S')}] {n} session(s) at {size} px ...", file=sys.stderr, flush=True
            )
            r = asyncio.run(one_config(size, n, args.seconds, frames))
            results.append(r)
            print(
                f"  fps worst {r['fps_min']:.1f} (second half {r['fps_second_half_min']:.1f}), median "
                f"{r['fps_median']:.1f}; speaking frames/s {r['speaking_fps_median']:.1f}; "
                f"{r['process_cpu_cores']:.2f} cores; load {r['load_average_1min_at_start']:.2f}",
                file=sys.stderr,
                flush=True,
            )
    print(f"\n{'size':>5} {'sessions':>8} {'fps worst':>9} {'2nd half':>8} {'cores':>6} {'holds':>6}")
    for r in results:
        print(
            f"{r['size']:>5} {r['sessions']:>8} {r['fps_min']:>9.1f} {r['fps_second_half_min']:>8.1f} "
            f"{r['process_cpu_cores']:>6.2f} {'yes' if r['holds_25fps'] else 'no':>6}"
        )
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "date": time.strftime("%Y-%m-%d"),
        "command": "python benchmarks/worker_capacity.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
