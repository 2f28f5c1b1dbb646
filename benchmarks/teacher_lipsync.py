"""Lip sync of the phoneme-driven motion generator (the "teacher") against real mouths.

For each real talking-head clip with sound in ``../shared/data/video``: decode the video with PyAV,
run mediapipe FaceMesh (refine_landmarks=True, static_image_mode=False) on every frame and measure
the real mouth opening = inner-lip gap (landmarks 13-14) / outer-eye-corner distance (33-263); the
series is resampled to 25 fps BY TIMESTAMPS (linear interpolation; the clips run at 22.1, 25 and
30 fps). The clip's audio then drives the teacher twice: (a) with phoneme timings from
``vlogger.engines.motion.align.align_audio`` (whisper words + pocketsphinx phones) and (b) from
energy only. The teacher's mouth opening is measured the same way on the default avatar posed by
the rig (``Avatar.rig.pose``): the same landmark ratio; the linear coefficient proxy
``jaw_open + 0.5*lower_lip_down + 0.25*upper_lip_up - 0.5*lip_press`` is reported beside it.

Score: Pearson correlation with the real opening at the best lag within +-3 frames (lag > 0: the
teacher's mouth moves that many frames before the real one), with a 95% moving-block bootstrap
interval (blocks of 1 s over frames, lag fixed), per clip and the mean over clips. Prints a table,
writes ``benchmarks/results/teacher_lipsync.json`` and ``teacher_lipsync.png``. Usage::

    python benchmarks/teacher_lipsync.py [--data ../shared/data] [--boot 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from vlogger.engines.audio import load_audio

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a script from benchmarks/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vlogger.engines.metrics import best_lag, mouth_opening, pearson, shifted_pairs
from vlogger.engines.motion.teacher import TeacherConfig, generate_motion
from vlogger.engines.motion.visemes import mouth_opening_proxy
from vlogger.engines.types import AudioChunk, MotionFrame

RESULTS = Path(__file__).with_name("results")
CLIPS = ("interview_m1", "congress_m2", "bank_f3", "eu_f4")
FPS = 25.0
MAX_LAG = 3
#: (a) aligned phonemes only, (a') aligned phonemes with energy where they miss speech (the default
#: "auto" mode), (b) energy only.
MODES = ("phonemes", "auto", "energy")
BLOCK = 25
SEED = 0


def _default_data() -> Path:
    env = os.environ.get("VLOGGER_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def _start_seconds(stream: object) -> float:
    start, base = getattr(stream, "start_time", None), getattr(stream, "time_base", None)
    return float(start * base) if start is not None and base is not None else 0.0


def real_opening(path: Path) -> tuple[np.ndarray, float, float]:
    """Real mouth opening per 25 fps frame (NaN where no face), the video's start time and duration."""
    import av

    from training.reference_mesh import face_mesh

    times, values = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = _start_seconds(stream)
        with face_mesh(static=False) as mesh:
            for frame in container.decode(stream):
                img = frame.to_ndarray(format="rgb24")
                h, w = img.shape[:2]
                res = mesh.process(img)
                times.append(float(frame.time) - start)
                if not res.multi_face_landmarks:
                    values.append(np.nan)
                    continue
                lm = res.multi_face_landmarks[0].landmark
                values.append(mouth_opening(np.array([[q.x * w, q.y * h] for q in lm])))
    t, v = np.asarray(times), np.asarray(values)
    duration = float(t[-1] + (np.median(np.diff(t)) if len(t) > 1 else 1.0 / FPS))
    n = int(np.floor(duration * FPS + 1e-6))
    grid = np.arange(n) / FPS
    ok = np.isfinite(v)
    out = np.interp(grid, t[ok], v[ok])
    # Frames far from any measured frame stay unknown.
    nearest = np.abs(grid[:, None] - t[ok][None, :]).min(axis=1)
    out[nearest > 0.1] = np.nan
    return out, start, duration


def audio_start(path: Path, video_start: float) -> float:
    """Start of the audio on the video's clock (seconds)."""
    import av

    with av.open(str(path)) as container:
        s = container.streams.audio[0]
        a0 = _start_seconds(s)
    return a0 - video_start


def teacher_frames(
    pcm: np.ndarray, rate: int, pts: float, n: int, phonemes: list | None, mode: str
) -> list[MotionFrame]:
    chunk = AudioChunk(pcm=pcm, sample_rate=rate, pts=pts, phonemes=list(phonemes or []))
    return generate_motion([chunk], n_frames=n, fps=FPS, seed=SEED, config=TeacherConfig(mode=mode))


def rig_opening(frames: list[MotionFrame], rig: object | None) -> np.ndarray | None:
    """The same landmark ratio on the default avatar posed by the rig (None without a rig)."""
    if rig is None:
        return None
    return np.asarray([mouth_opening(rig.pose(f).face) for f in frames])  # type: ignore[attr-defined]


def block_bootstrap(
    real: np.ndarray, pred: np.ndarray, lag: int, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Correlations of ``n_boot`` moving-block resamples of the frame pairs at a fixed lag."""
    r, p = shifted_pairs(real, pred, lag)
    n = len(r)
    block = min(BLOCK, max(1, n // 4))
    n_blocks = int(np.ceil(n / block))
    out = np.empty(n_boot)
    for k in range(n_boot):
        starts = rng.integers(0, n - block + 1, n_blocks)
        idx = (starts[:, None] + np.arange(block)[None, :]).reshape(-1)[:n]
        out[k] = pearson(r[idx], p[idx])
    return out


def _ci(boot: np.ndarray) -> list[float]:
    return [round(float(np.nanpercentile(boot, q)), 4) for q in (2.5, 97.5)]


def _load_rig() -> object | None:
    try:
        from vlogger.engines.avatar import load_avatar
    except ImportError:
        return None
    try:
        return load_avatar(None).rig
    except Exception as exc:  # the benchmark still reports the coefficient proxy
        print(f"(no rig: {exc})", file=sys.stderr)
        return None


def run(data: Path, n_boot: int) -> dict:
    from vlogger.engines.motion.align import align_audio

    rng = np.random.default_rng(0)
    rig = _load_rig()
    measures = ["rig", "proxy"] if rig is not None else ["proxy"]
    results: dict = {
        "fps": FPS,
        "max_lag": MAX_LAG,
        "bootstrap": {"resamples": n_boot, "block_frames": BLOCK},
        "measures": measures,
        "teacher_config": "TeacherConfig() defaults, seed 0",
        "clips": {},
    }
    traces: dict = {}
    for name in CLIPS:
        path = data / "video" / f"{name}.mp4"
        if not path.exists():
            print(f"skip {name}: {path} not found")
            continue
        t0 = time.perf_counter()
        real, v0, _ = real_opening(path)
        t_mesh = time.perf_counter() - t0
        pcm, rate = load_audio(path, target_rate=16000)
        a0 = audio_start(path, v0)
        t1 = time.perf_counter()
        phonemes = align_audio(pcm, rate)
        # Phone times are relative to the audio's first sample: move them to the video clock.
        phonemes = [type(p)(p.phoneme, p.start + a0, p.end + a0, p.alphabet) for p in phonemes]
        t_align = time.perf_counter() - t1
        n = len(real)
        clip: dict = {
            "frames": n,
            "face_found": float(np.mean(np.isfinite(real))),
            "phones": sum(1 for p in phonemes if p.phoneme != "SIL"),
            "seconds_facemesh": round(t_mesh, 2),
            "seconds_align": round(t_align, 2),
        }
        traces[name] = {"real": real}
        for mode in MODES:
            frames = teacher_frames(pcm, rate, a0, n, phonemes if mode != "energy" else None, mode)
            series = {"proxy": mouth_opening_proxy(np.array([f.expression for f in frames]))}
            if rig is not None:
                series["rig"] = rig_opening(frames, rig)
            for measure in measures:
                pred = series[measure]
                r, lag = best_lag(real, pred, MAX_LAG)
                boot = block_bootstrap(real, pred, lag, n_boot, rng)
                clip[f"{mode}/{measure}"] = {
                    "r": round(r, 4),
                    "lag": lag,
                    "r_lag0": round(pearson(*shifted_pairs(real, pred, 0)), 4),
                    "ci95": [
                        round(float(np.nanpercentile(boot, 2.5)), 4),
                        round(float(np.nanpercentile(boot, 97.5)), 4),
                    ],
                    "_boot": boot,
                }
            traces[name][mode] = series[measures[0]]
        results["clips"][name] = clip

    # Mean over clips, with the interval of the mean of the per-clip bootstrap replicates.
    names = list(results["clips"])
    summary = {}
    for mode in MODES:
        for measure in measures:
            key = f"{mode}/{measure}"
            if not names:
                continue
            rs = [results["clips"][c][key]["r"] for c in names]
            boots = np.nanmean(np.stack([results["clips"][c][key]["_boot"] for c in names]), axis=0)
            summary[key] = {
                "r": round(float(np.mean(rs)), 4),
                "ci95": [
                    round(float(np.nanpercentile(boots, 2.5)), 4),
                    round(float(np.nanpercentile(boots, 97.5)), 4),
                ],
            }
    results["mean"] = summary
    for c in names:
        for key in list(results["clips"][c]):
            if isinstance(results["clips"][c][key], dict):
                results["clips"][c][key].pop("_boot", None)
    results["_traces"] = traces
    return results


def print_table(results: dict) -> None:
    m = results["measures"][0]
    print(f"Pearson r with the real mouth opening (teacher measured by {m}), [95% block-bootstrap], best lag")
    head = f"{'clip':<14}{'frames':>7}{'phones':>7}"
    for mode in MODES:
        head += f"  {mode:>27}"
    print(head)
    for c, d in results["clips"].items():
        row = f"{c:<14}{d['frames']:>7}{d['phones']:>7}"
        for mode in MODES:
            x = d[f"{mode}/{m}"]
            row += f"  {x['r']:>6.3f} [{x['ci95'][0]:>5.2f},{x['ci95'][1]:>5.2f}] lag {x['lag']:+d}"
        print(row)
    row = f"{'mean':<14}{'':>14}"
    for mode in MODES:
        x = results["mean"][f"{mode}/{m}"]
        row += f"  {x['r']:>6.3f} [{x['ci95'][0]:>5.2f},{x['ci95'][1]:>5.2f}]       "
    print(row)


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traces = results["_traces"]
    fig, axes = plt.subplots(len(traces), 1, figsize=(11, 2.4 * max(1, len(traces))), squeeze=False)

    def z(x: np.ndarray) -> np.ndarray:
        return (x - np.nanmean(x)) / (np.nanstd(x) + 1e-9)

    for ax, (name, tr) in zip(axes[:, 0], traces.items(), strict=True):
        t = np.arange(len(tr["real"])) / FPS
        d = results["clips"][name]
        m = results["measures"][0]
        ax.plot(t, z(tr["real"]), "k-", lw=1.5, label="real (FaceMesh 13-14 / 33-263)")
        for mode, style in (("phonemes", "C0-"), ("auto", "C2:"), ("energy", "C1--")):
            r = d[f"{mode}/{m}"]["r"]
            ax.plot(t, z(tr[mode]), style, lw=1, label=f"teacher, {mode} (r={r:.2f})")
        ax.set_title(f"{name}: mouth opening (z-scored, teacher measured by {m})", fontsize=9)
        ax.set_xlabel("s")
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=_default_data(), help="the shared data folder")
    ap.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    args = ap.parse_args(argv)
    if not (args.data / "video").is_dir():
        print(f"skipped: no real clips at {args.data / 'video'} (set VLOGGER_SHARED_DATA or --data)")
        return 0
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
    t0 = time.perf_counter()
    results = run(args.data, args.boot)
    if not results["clips"]:
        print("skipped: none of the clips was found")
        return 0
    print_table(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(results, RESULTS / "teacher_lipsync.png")
    results.pop("_traces")
    results["seconds_total"] = round(time.perf_counter() - t0, 1)
    (RESULTS / "teacher_lipsync.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS / 'teacher_lipsync.json'} and .png ({results['seconds_total']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
