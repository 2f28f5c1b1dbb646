"""Per-stage CPU cost of the offline pipeline: fit, TTS, motion, pose (controls), warp, encode.

Prints a table of median milliseconds per frame at each output size and writes
``benchmarks/results/render_cpu.json`` and ``render_cpu.png``. Every stage runs pinned to one
thread (the targets are per core). Usage::

    python benchmarks/render_cpu.py [--sizes 256 512] [--frames 100] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from vlogger.engines.avatar import load_avatar
from vlogger.engines.motion.teacher import PhonemeMotionEngine
from vlogger.engines.render.warp import WarpRenderer
from vlogger.engines.tts import PiperTTS
from vlogger.runtime.config import VloggerConfig
from vlogger.runtime.mp4 import Mp4Writer

RESULTS = Path(__file__).with_name("results")
TEXT = (
    "The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore, "
    "and the shells she sells are surely sea shells."
)
TARGET_WARP_MS_512 = 20.0
TARGET_FIT_S = 0.4  # issue #12: a photo fit in a fresh process


def _ms(samples: list[float]) -> float:
    return 1000.0 * statistics.median(samples)


_COLD_FIT = """
import time
t0 = time.perf_counter()
from vlogger.engines.avatar import load_avatar
t1 = time.perf_counter()
load_avatar(None, height={size}, cache=False)
print(time.perf_counter() - t1, t1 - t0)
"""


def cold_fit_seconds(size: int) -> tuple[float, float]:
    """Fit in a fresh process (mediapipe graphs created from scratch): (fit s, import s)."""
    out = subprocess.run(
        [sys.executable, "-c", _COLD_FIT.format(size=size)], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), float(out[1])


def bench(sizes: list[int], n_frames: int, runs: int) -> dict:
    cv2.setNumThreads(1)
    config = VloggerConfig()
    config.tts = replace(config.tts, threads=1)
    config.warp = replace(config.warp, threads=1)
    results: dict = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "frames": n_frames,
        "runs": runs,
        "sizes": {},
    }

    tts = PiperTTS(config.tts)
    first, rtf = [], []
    chunks = []
    for _ in range(runs):
        t0 = time.perf_counter()
        chunks = []
        for chunk in tts.synthesize(TEXT):
            if not chunks:
                first.append(time.perf_counter() - t0)
            chunks.append(chunk)
        total = time.perf_counter() - t0
        rtf.append(total / sum(c.duration for c in chunks))
    results["tts"] = {"first_chunk_ms": _ms(first), "real_time_factor": statistics.median(rtf)}
    speech_end = chunks[-1].end

    for size in sizes:
        row: dict[str, float] = {}
        fit_s = []
        for _ in range(runs):
            t0 = time.perf_counter()
            avatar = load_avatar(None, height=size, config=config.avatar, cache=False)
            fit_s.append(time.perf_counter() - t0)
        load_avatar(None, height=size, config=config.avatar, cache=True)  # fills the cache
        cached = []
        for _ in range(runs):
            t0 = time.perf_counter()
            load_avatar(None, height=size, config=config.avatar, cache=True)
            cached.append(time.perf_counter() - t0)
        row["fit_ms"] = _ms(fit_s)
        row["fit_cached_ms"] = _ms(cached)
        row["fit_cold_process_ms"] = _ms([cold_fit_seconds(size)[0] for _ in range(runs)])

        motion_ms, pose_ms, warp_ms, encode_ms = [], [], [], []
        for run in range(runs):
            engine = PhonemeMotionEngine(config.motion, fps=25.0, seed=run)
            t0 = time.perf_counter()
            for c in chunks:
                engine.push_audio(c)
            engine.end_of_input()
            frames = engine.frames(min(speech_end, n_frames / 25.0))
            frames += engine.frames(n_frames / 25.0 - 0.02)
            motion_ms.append((time.perf_counter() - t0) / len(frames))

            renderer = WarpRenderer(avatar.image, avatar.fit, config.warp)
            h, w = avatar.image.shape[:2]
            with tempfile.TemporaryDirectory() as tmp:
                writer = Mp4Writer(Path(tmp) / "b.mp4", w, h, 25.0, None, threads=1)
                for i, mf in enumerate(frames):
                    t0 = time.perf_counter()
                    posed = avatar.rig.pose(mf)
                    t1 = time.perf_counter()
                    rgb = renderer.render(posed)
                    t2 = time.perf_counter()
                    writer.write_frame(rgb)
                    t3 = time.perf_counter()
                    if i >= 5:  # warm-up
                        pose_ms.append(t1 - t0)
                        warp_ms.append(t2 - t1)
                        encode_ms.append(t3 - t2)
                writer.close()
        row["motion_ms"] = _ms(motion_ms)
        row["pose_ms"] = _ms(pose_ms)
        row["warp_ms"] = _ms(warp_ms)
        row["warp_p90_ms"] = 1000.0 * float(np.percentile(warp_ms, 90))
        row["encode_ms"] = _ms(encode_ms)
        row["total_per_frame_ms"] = row["motion_ms"] + row["pose_ms"] + row["warp_ms"] + row["encode_ms"]
        row["realtime_factor"] = row["total_per_frame_ms"] / 40.0
        results["sizes"][str(size)] = row
    w512 = results["sizes"].get("512", {}).get("warp_ms")
    results["targets"] = {
        "warp_512_ms": TARGET_WARP_MS_512,
        "warp_512_met": None if w512 is None else bool(w512 <= TARGET_WARP_MS_512),
        "fit_s": TARGET_FIT_S,
        "fit_met": bool(
            max(r["fit_cold_process_ms"] for r in results["sizes"].values()) / 1000 <= TARGET_FIT_S
        ),
    }
    return results


def report(results: dict) -> str:
    cols = [
        "fit_cold_process_ms",
        "fit_ms",
        "fit_cached_ms",
        "motion_ms",
        "pose_ms",
        "warp_ms",
        "warp_p90_ms",
        "encode_ms",
        "total_per_frame_ms",
        "realtime_factor",
    ]
    lines = [f"{'size':>6} " + " ".join(f"{c.removesuffix('_ms'):>13}" for c in cols)]
    for size, row in results["sizes"].items():
        lines.append(f"{size:>6} " + " ".join(f"{row[c]:>13.2f}" for c in cols))
    tts = results["tts"]
    lines.append(
        f"TTS: first chunk {tts['first_chunk_ms']:.0f} ms, real-time factor {tts['real_time_factor']:.3f}"
    )
    lines.append("(milliseconds; fit_* per photo, the rest per frame)")
    lines.append(f"targets: {results['targets']}")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = ["motion_ms", "pose_ms", "warp_ms", "encode_ms"]
    sizes = list(results["sizes"])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bottom = np.zeros(len(sizes))
    for stage in stages:
        vals = np.array([results["sizes"][s][stage] for s in sizes])
        ax.bar(sizes, vals, bottom=bottom, label=stage.removesuffix("_ms"))
        bottom += vals
    ax.axhline(40.0, color="k", ls="--", lw=1, label="25 fps budget")
    ax.set_xlabel("output height (px)")
    ax.set_ylabel("median ms per frame (1 thread)")
    ax.set_title("vlogger render: CPU cost per frame")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = bench(args.sizes, args.frames, args.runs)
    print(report(results))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "render_cpu.json").write_text(json.dumps(results, indent=2))
    plot(results, RESULTS / "render_cpu.png")
    print(f"wrote {RESULTS / 'render_cpu.json'} and render_cpu.png")


if __name__ == "__main__":
    main()
