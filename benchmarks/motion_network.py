"""The learned motion network on real speakers, side by side with the teacher, plus its speed.

For each real clip with sound in ``../shared/data/video``: FaceMesh landmarks per frame, resampled
to 25 fps by timestamps (``training.motion.real_clips.read_clip_landmarks``; cached in the clips
corpus as ``<clip>.landmarks25.npz`` when present). The clip's audio, placed on the video clock,
is STREAMED (0.2 s chunks) into :class:`NetworkMotionEngine`; its frames pose the default avatar
(``rig.pose``) and are measured like the real face:

- lip sync: Pearson r of mouth opening (13-14 gap / 33-263 distance) at the best lag in +-3
  frames (lag > 0: the prediction moves first), 95% moving-block bootstrap (1 s blocks);
- LME: mean distance of the 40 lip landmarks between prediction and real, each face aligned to
  its eye line (origin between the outer eye corners, unit = their distance) minus its own mean
  lip shape, at the best lag, in % of the eye distance;
- jitter: mean |third difference| of the face landmarks (image, unit = eye distance) per frame,
  generated / real;
- diversity: 5 seeds; per-frame std across seeds of the mouth coefficients and of head yaw/pitch
  (degrees), beside the std over time of the same quantities in the generated motion and in the
  clip's fitted targets (``training/data/clips``, when built);
- two seeds: mouth-opening r between seed 0 and seed 1, mean |yaw/pitch difference| in degrees.

Leave-one-clip-out: ``--loo DIR`` holds ``loo_<clip>.onnx`` (fine-tuned without that clip); each
clip is scored by its own LOO model, and by ``--model`` (default: the packaged one) when that
model never saw the clips. The teacher (auto mode, aligned phonemes) is measured the same way.
Speed: ms per streamed frame (all DDIM steps and guidance) on one thread, the ONNX call alone, and
the feature cost per frame (log-mel and Whisper). Writes ``benchmarks/results/motion_network.json``
and ``.png`` and prints a table::

    python benchmarks/motion_network.py [--model M.onnx] [--loo training/runs/loo] [--boot 500]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a script from benchmarks/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root (training/)
from benchmarks import teacher_lipsync as tl
from vlogger.engines.audio import chunk_audio, load_audio
from vlogger.engines.avatar.rig import rotation_from_6d
from vlogger.engines.metrics import best_lag, mouth_openings, pearson, shifted_pairs
from vlogger.engines.motion.network import NetworkConfig, NetworkMotionEngine
from vlogger.engines.types import AudioChunk, MotionFrame

RESULTS = Path(__file__).with_name("results")
FPS = 25.0
LIPS = sorted(
    {
        61,
        146,
        91,
        181,
        84,
        17,
        314,
        405,
        321,
        375,
        291,
        185,
        40,
        39,
        37,
        0,
        267,
        269,
        270,
        409,
        78,
        95,
        88,
        178,
        87,
        14,
        317,
        402,
        318,
        324,
        308,
        191,
        80,
        81,
        82,
        13,
        312,
        311,
        310,
        415,
    }
)
SEEDS = (0, 1, 2, 3, 4)


def aligned(face: np.ndarray) -> np.ndarray:
    """Landmarks (n, 478, 2) in each frame's eye frame: origin between 33 and 263, x along them,
    unit = their distance."""
    p = face[..., :2].astype(np.float64)
    a, b = p[:, 33], p[:, 263]
    c = 0.5 * (a + b)
    d = b - a
    s = np.linalg.norm(d, axis=1, keepdims=True)
    ex = d / s
    ey = np.stack([-ex[:, 1], ex[:, 0]], 1)
    q = p - c[:, None]
    return np.stack([(q * ex[:, None]).sum(-1), (q * ey[:, None]).sum(-1)], -1) / s[:, None]


def jerk(face: np.ndarray) -> float:
    p = face[..., :2] / np.linalg.norm(face[:, 33, :2] - face[:, 263, :2], axis=1)[:, None, None]
    return float(np.mean(np.linalg.norm(np.diff(p, n=3, axis=0), axis=-1)))


def yaw_pitch(frames: list[MotionFrame]) -> np.ndarray:
    out = []
    for f in frames:
        r = rotation_from_6d(f.head[:6])
        out.append(
            [math.degrees(math.atan2(r[2, 0], r[2, 2])), math.degrees(math.asin(np.clip(r[2, 1], -1, 1)))]
        )
    return np.asarray(out)


def lme(real_al: np.ndarray, pred_al: np.ndarray, lag: int, ok: np.ndarray) -> float:
    r = real_al[:, LIPS] - real_al[ok][:, LIPS].mean(0)
    p = pred_al[:, LIPS] - pred_al[:, LIPS].mean(0)
    if lag > 0:
        r, p, ok = r[lag:], p[:-lag], ok[lag:]
    elif lag < 0:
        r, p, ok = r[:lag], p[-lag:], ok[:lag]
    return float(np.mean(np.linalg.norm(r[ok] - p[ok], axis=-1)) * 100)


def stream_frames(eng: object, chunks: list[AudioChunk], n: int) -> tuple[list[MotionFrame], float]:
    """Push ``chunks`` into a motion engine, taking frames after each, then the rest up to n frames;
    returns the frames and the mean ms per frame spent in ``frames``."""
    frames: list[MotionFrame] = []
    t = 0.0
    for c in chunks:
        eng.push_audio(c)  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        frames += eng.frames(n / FPS)  # type: ignore[attr-defined]
        t += time.perf_counter() - t0
    eng.end_of_input()  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    frames += eng.frames(n / FPS - 0.5 / FPS)  # type: ignore[attr-defined]
    t += time.perf_counter() - t0
    return frames[:n], 1000 * t / max(1, len(frames))


def run_engine(
    model: Path | None, pcm: np.ndarray, a0: float, n: int, seed: int, cfg: dict | None = None
) -> tuple[list[MotionFrame], float]:
    """Stream the clip's audio (0.2 s chunks, pts on the video clock) and take n frames; returns
    the frames and the mean ms per frame."""
    eng = NetworkMotionEngine(NetworkConfig(model_path=model, **(cfg or {})), fps=FPS, seed=seed)
    if a0 < 0:
        pcm, a0 = pcm[round(-a0 * 16000) :], 0.0
    return stream_frames(eng, list(chunk_audio(pcm, 16000, 0.2, start_pts=a0)), n)


def posed(frames: list[MotionFrame], rig: object) -> np.ndarray:
    return np.stack([rig.pose(f).face[:, :2] for f in frames])  # type: ignore[attr-defined]


def load_clip(data: Path, name: str, clips_dir: Path) -> dict:
    cache = clips_dir / f"{name}.landmarks25.npz"
    if cache.exists():
        z = dict(np.load(cache))
        lm, found = z["landmarks"], z["found"].astype(bool)
        a0 = float(z["audio_start"]) if "audio_start" in z else None
    else:
        from training.motion.real_clips import read_clip_landmarks

        d = read_clip_landmarks(data / "video" / f"{name}.mp4")
        lm, found, a0 = d["landmarks"], d["found"], d["audio_start"]
    path = data / "video" / f"{name}.mp4"
    if a0 is None or not np.isfinite(a0):
        a0 = tl.audio_start(path, _video_start(path))
    pcm, _ = load_audio(path, target_rate=16000)
    return {"landmarks": lm, "found": found, "a0": float(a0), "pcm": pcm}


def _video_start(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        return tl._start_seconds(c.streams.video[0])


def clip_targets(clips_dir: Path) -> dict[str, np.ndarray]:
    """The fitted motion targets of each real clip (F1's clips corpus), if built."""
    try:
        from training.corpus import Corpus

        c = Corpus(clips_dir)
        return {it.source.split(":", 1)[1]: it.motion for it in c}
    except Exception:
        return {}


def score(
    real_open: np.ndarray,
    real_al: np.ndarray,
    ok: np.ndarray,
    frames: list[MotionFrame],
    rig: object,
    n_boot: int,
    rng: np.random.Generator,
    real_jerk: float,
) -> dict:
    face = posed(frames, rig)
    pred = mouth_openings(face)
    r, lag = best_lag(real_open, pred, tl.MAX_LAG)
    boot = tl.block_bootstrap(real_open, pred, lag, n_boot, rng)
    return {
        "r": round(r, 4),
        "lag": lag,
        "r_lag0": round(pearson(*shifted_pairs(real_open, pred, 0)), 4),
        "ci95": tl._ci(boot),
        "_boot": boot,
        "_trace": pred,
        "lme_pct_iod": round(lme(real_al, aligned(face), lag, ok), 3),
        "jitter": round(jerk(face), 5),
        "jitter_ratio": round(jerk(face) / real_jerk, 3),
    }


def diversity(
    model: Path | None, clip: dict, n: int, rig: object, cfg: dict | None, real_open: np.ndarray | None = None
) -> dict:
    runs = [run_engine(model, clip["pcm"], clip["a0"], n, s, cfg)[0] for s in SEEDS]
    mouth = np.stack([[f.expression[:9] for f in fr] for fr in runs])  # (seeds, n, 9)
    yp = np.stack([yaw_pitch(fr) for fr in runs])  # (seeds, n, 2)
    op = [mouth_openings(posed(fr, rig)) for fr in runs]
    extra = {}
    if real_open is not None:  # lip sync of every seed (seed 0 alone is a noisy estimate)
        rs = [best_lag(real_open, o, tl.MAX_LAG)[0] for o in op]
        extra = {"r_seeds": [round(float(r), 4) for r in rs], "r_seeds_mean": round(float(np.mean(rs)), 4)}
    return {
        **extra,
        "seed_std_mouth": round(float(mouth.std(0).mean()), 4),
        "seed_std_yaw_pitch_deg": [round(float(x), 3) for x in yp.std(0).mean(0)],
        "time_std_mouth": round(float(mouth.std(1).mean()), 4),
        "time_std_yaw_pitch_deg": [round(float(x), 3) for x in yp.std(1).mean(0)],
        "two_seed_mouth_r": round(pearson(op[0], op[1]), 4),
        "two_seed_yaw_pitch_diff_deg": round(float(np.abs(yp[0] - yp[1]).mean()), 3),
    }


def speed(model: Path | None, seconds: float = 12.0) -> dict:
    from vlogger.engines.motion.features import FeatureConfig, offline_features

    rng = np.random.default_rng(0)
    pcm = (0.1 * rng.standard_normal(round(seconds * 16000))).astype(np.float32)
    eng = NetworkMotionEngine(NetworkConfig(model_path=model), fps=FPS, seed=0)
    eng.push_audio(AudioChunk(pcm, 16000, 0.0))
    eng.end_of_input()
    eng.frames(1.0)
    per = []
    n = int(seconds * FPS) - 25
    for k in range(n):
        t0 = time.perf_counter()
        eng.frames((25 + k + 1) / FPS - 1e-6)
        per.append(time.perf_counter() - t0)
    out = {
        "ms_per_frame_median": round(1000 * float(np.median(per)), 3),
        "ms_per_frame_p10": round(1000 * float(np.percentile(per, 10)), 3),
        "ms_per_frame_p90": round(1000 * float(np.percentile(per, 90)), 3),
        "steps": eng.config.steps,
        "guidance": eng.config.guidance,
    }
    for kind in ("mel", "whisper"):
        cfg = FeatureConfig(kind=kind)
        t0 = time.perf_counter()
        offline_features(pcm, int(seconds * FPS), cfg)
        out[f"feature_ms_per_frame_{kind}"] = round(1000 * (time.perf_counter() - t0) / (seconds * FPS), 3)
    return out


def run(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(0)
    rig = tl._load_rig()
    targets = clip_targets(args.clips)
    cfg = json.loads(args.engine) if args.engine else None
    res: dict = {
        "fps": FPS,
        "max_lag": tl.MAX_LAG,
        "bootstrap": {"resamples": args.boot, "block_frames": tl.BLOCK},
        "model": str(args.model or "packaged"),
        "loo_dir": str(args.loo) if args.loo else None,
        "engine_config": cfg,
        "clips": {},
    }
    from vlogger.engines.motion.align import align_audio

    for name in tl.CLIPS:
        if not (args.data / "video" / f"{name}.mp4").exists():
            continue
        clip = load_clip(args.data, name, args.clips)
        lm, ok = clip["landmarks"], clip["found"]
        n = len(lm)
        real_open = np.where(ok, mouth_openings(lm), np.nan)
        real_al = aligned(lm)
        real_jerk = jerk(lm)
        d: dict = {"frames": n, "real_jitter": round(real_jerk, 5), "_real": real_open}
        models = {}
        if args.base:
            models["network"] = args.model
        if args.loo and (args.loo / f"loo_{name}.onnx").exists():
            models["network_loo"] = args.loo / f"loo_{name}.onnx"
        for key, mpath in models.items():
            frames, ms = run_engine(mpath, clip["pcm"], clip["a0"], n, 0, cfg)
            d[key] = score(real_open, real_al, ok, frames, rig, args.boot, rng, real_jerk)
            d[key]["ms_per_frame"] = round(ms, 3)
            d[key].update(diversity(mpath, clip, n, rig, cfg, real_open))
        ph = align_audio(clip["pcm"], 16000)
        ph = [type(p)(p.phoneme, p.start + clip["a0"], p.end + clip["a0"], p.alphabet) for p in ph]
        tf = tl.teacher_frames(clip["pcm"], 16000, clip["a0"], n, ph, "auto")
        d["teacher"] = score(real_open, real_al, ok, tf, rig, args.boot, rng, real_jerk)
        yp = yaw_pitch(tf)
        d["teacher"]["time_std_mouth"] = round(float(np.std([f.expression[:9] for f in tf], 0).mean()), 4)
        d["teacher"]["time_std_yaw_pitch_deg"] = [round(float(x), 3) for x in yp.std(0)]
        if name in targets:
            m = targets[name][:n]
            r6 = [
                MotionFrame(0, 0.0, m[i, :15], m[i, 15:24], np.zeros((75, 2), np.float32))
                for i in range(len(m))
            ]
            ypr = yaw_pitch(r6)
            d["real_fit"] = {
                "time_std_mouth": round(float(m[:, :9].std(0).mean()), 4),
                "time_std_yaw_pitch_deg": [round(float(x), 3) for x in ypr.std(0)],
            }
        res["clips"][name] = d
        print(
            f"{name}: "
            + ", ".join(f"{k} r={d[k]['r']:.3f}" for k in ("network", "network_loo", "teacher") if k in d),
            flush=True,
        )
    names = list(res["clips"])
    res["mean"] = {}
    for key in ("network", "network_loo", "teacher"):
        have = [c for c in names if key in res["clips"][c]]
        if not have:
            continue
        boots = np.nanmean(np.stack([res["clips"][c][key]["_boot"] for c in have]), axis=0)
        agg = {
            "r": round(float(np.mean([res["clips"][c][key]["r"] for c in have])), 4),
            "ci95": tl._ci(boots),
            "clips": len(have),
        }
        for metric in (
            "lme_pct_iod",
            "jitter_ratio",
            "two_seed_mouth_r",
            "two_seed_yaw_pitch_diff_deg",
            "ms_per_frame",
            "r_seeds_mean",
        ):
            vals = [res["clips"][c][key][metric] for c in have if metric in res["clips"][c][key]]
            if vals:
                agg[metric] = round(float(np.mean(vals)), 4)
        res["mean"][key] = agg
    res["speed"] = speed(args.model if args.base else None)
    return res


def print_table(res: dict) -> None:
    print(
        f"{'clip':<14}{'model':<13}{'r':>7}{'95% CI':>16}{'lag':>5}{'LME%':>7}{'jit/real':>9}"
        f"{'2seed r':>8}{'2seed deg':>10}"
    )
    for c, d in res["clips"].items():
        for k in ("network", "network_loo", "teacher"):
            if k not in d:
                continue
            x = d[k]
            print(
                f"{c:<14}{k:<13}{x['r']:>7.3f}  [{x['ci95'][0]:>5.2f},{x['ci95'][1]:>5.2f}]{x['lag']:>+5d}"
                f"{x['lme_pct_iod']:>7.2f}{x['jitter_ratio']:>9.2f}"
                f"{x.get('two_seed_mouth_r', float('nan')):>8.2f}"
                f"{x.get('two_seed_yaw_pitch_diff_deg', float('nan')):>10.2f}"
            )
    for k, x in res["mean"].items():
        print(f"{'mean':<14}{k:<13}{x['r']:>7.3f}  [{x['ci95'][0]:>5.2f},{x['ci95'][1]:>5.2f}]")
    print("speed:", json.dumps(res["speed"]))


def plot(res: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(res["clips"])
    fig, axes = plt.subplots(len(names) + 1, 1, figsize=(11, 2.3 * (len(names) + 1)), squeeze=False)
    ax = axes[0, 0]
    keys = [k for k in ("network", "network_loo", "teacher") if any(k in res["clips"][c] for c in names)]
    for j, k in enumerate(keys):
        xs = [i + 0.25 * j for i, c in enumerate(names) if k in res["clips"][c]]
        rs = [res["clips"][c][k]["r"] for c in names if k in res["clips"][c]]
        lo = [res["clips"][c][k]["r"] - res["clips"][c][k]["ci95"][0] for c in names if k in res["clips"][c]]
        hi = [res["clips"][c][k]["ci95"][1] - res["clips"][c][k]["r"] for c in names if k in res["clips"][c]]
        ax.bar(xs, rs, width=0.25, yerr=[lo, hi], label=k, capsize=3)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("mouth-opening r")
    ax.legend(fontsize=7)

    def z(x: np.ndarray) -> np.ndarray:
        return (x - np.nanmean(x)) / (np.nanstd(x) + 1e-9)

    for ax, c in zip(axes[1:, 0], names, strict=True):
        d = res["clips"][c]
        t = np.arange(len(d["_real"])) / FPS
        ax.plot(t, z(d["_real"]), "k-", lw=1.5, label="real")
        for k, st in (("network", "C0-"), ("network_loo", "C1-"), ("teacher", "C2:")):
            if k in d:
                ax.plot(t, z(d[k]["_trace"]), st, lw=1, label=f"{k} r={d[k]['r']:.2f}")
        ax.set_title(f"{c}: mouth opening (z-scored)", fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=tl._default_data())
    ap.add_argument(
        "--clips",
        type=Path,
        default=Path("training/data/clips"),
        help="the clips corpus (targets, landmarks)",
    )
    ap.add_argument("--model", type=Path, default=None, help="ONNX motion network (default: packaged)")
    ap.add_argument("--no-base", dest="base", action="store_false", help="only the LOO models")
    ap.add_argument("--loo", type=Path, default=None, help="folder with loo_<clip>.onnx")
    ap.add_argument("--engine", default=None, help='NetworkConfig overrides as JSON, e.g. {"guidance": 3}')
    ap.add_argument("--boot", type=int, default=500)
    ap.add_argument("--name", default="motion_network")
    args = ap.parse_args(argv)
    if not (args.data / "video").is_dir():
        print(f"skipped: no real clips at {args.data / 'video'}")
        return 0
    import cv2

    cv2.setNumThreads(1)
    t0 = time.perf_counter()
    res = run(args)
    print_table(res)
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(res, RESULTS / f"{args.name}.png")
    for d in res["clips"].values():
        d.pop("_real", None)
        for k in ("network", "network_loo", "teacher"):
            if k in d:
                d[k].pop("_boot", None)
                d[k].pop("_trace", None)
    res["seconds_total"] = round(time.perf_counter() - t0, 1)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {RESULTS / (args.name + '.json')} and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
