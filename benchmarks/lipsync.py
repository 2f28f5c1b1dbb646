"""Lip sync on real speakers the model has never seen: the score every figure of issue #15 uses.

Data: the real talking clips with sound (``../shared/data/video`` and ``real/``: 34 clips, 27
speakers), turned into a corpus by ``python -m training.motion.real_clips --out training/data/real``
(FaceMesh ``refine_landmarks=True`` on every frame, 25 fps) and their Whisper features by
``python -m training.motion.mouth_data``; the read-out's held-out models by
``python -m training.motion.mouth`` (``training/runs/mouth/folds_L2/<speaker>.onnx``: each trained
without that speaker, settings chosen without it).

**Score**: the mouth opening (inner-lip gap 13-14 / outer-eye-corner distance 33-263) of the
motion's mouth vs the real clip's, Pearson r at the best lag within +-2 frames, per clip; averaged
per speaker; the mean over speakers with a 95% bootstrap interval over speakers (1000 resamples).
Two levels:

- **rig**: each engine's motion frames pose the default avatar (``rig.pose``), streamed audio in
  0.2 s chunks as at run time (the read-out runs inside ``NetworkMotionEngine`` with the held-out
  speaker's fold model);
- **rendered** (``--rendered``): the whole pipeline (``benchmarks/lipsync_render.py``): photo = a
  frame of the held-out clip, its audio through ``render_video``, landmarks read back from the
  rendered MP4 with FaceMesh; plus the renderer's fidelity (rendered vs commanded opening).

Engines (one row each): ``generator`` = the phoneme-driven teacher with timings aligned from the
clip's audio (``align_audio``: what ``vlogger render --audio`` and, for a real voice, a transcript
give; the stand-in for TTS speech, whose timings are exact), ``generator_energy`` = the teacher on
loudness alone (audio without timings), ``network_diffusion`` = the motion network's own mouth,
``readout`` = the read-out trained on real speakers (held out) inside the network engine,
``before`` = the default before the read-out (``hybrid`` with the generator's mouth where aligned
timings reach and the diffusion network's mouth elsewhere), ``hybrid`` = the read-out mouth on
every frame with the generator's head, eyes and body (the default after it). Also the lookahead
table (offline LOSO r at 0, 80, 160 and 320 ms of feature lookahead and the latency each adds
before a streamed frame can be made).

Usage::

    python benchmarks/lipsync.py [--rendered] [--rendered-seconds 20] [--boot 1000]

Writes ``benchmarks/results/lipsync.json`` and ``lipsync.png``; prints tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from benchmarks/
    sys.path.insert(0, str(ROOT))

from training.motion.mouth_data import ClipData, load_clips  # noqa: E402
from vlogger.engines.metrics import best_lag_r, mouth_opening  # noqa: E402
from vlogger.engines.types import AudioChunk, MotionFrame  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FPS = 25.0
CHUNK_S = 0.2
SEED = 0
ENGINES = ("generator", "generator_energy", "network_diffusion", "readout", "before", "hybrid")
LOOKAHEADS = (0, 2, 4, 8)


def _stream(engine: object, pcm: np.ndarray, n: int, phonemes: list | None = None) -> list[MotionFrame]:
    """Push ``pcm`` (16 kHz, video clock) in 0.2 s chunks and collect ``n`` frames, as a session does."""
    step = round(CHUNK_S * 16000)
    frames: list[MotionFrame] = []
    for a in range(0, len(pcm), step):
        piece = pcm[a : a + step]
        ph = [p for p in (phonemes or []) if a / 16000 <= p.start < (a + len(piece)) / 16000]
        engine.push_audio(AudioChunk(pcm=piece, sample_rate=16000, pts=a / 16000, phonemes=ph))  # type: ignore[attr-defined]
        frames += engine.frames(min(engine.ready_until(), n / FPS))  # type: ignore[attr-defined]
    engine.end_of_input()  # type: ignore[attr-defined]
    frames += engine.frames(n / FPS - 0.5 / FPS)  # type: ignore[attr-defined]
    return frames[:n]


def make_engine(name: str, fold_model: Path | None, models_cache: dict) -> object:
    """A fresh engine of the row ``name`` (the read-out with the held-out speaker's fold model)."""
    from dataclasses import replace

    from vlogger.engines.motion.hybrid import HybridConfig, HybridMotionEngine
    from vlogger.engines.motion.network import NetworkConfig, NetworkMotionEngine, load_motion_models
    from vlogger.engines.motion.teacher import PhonemeMotionEngine, TeacherConfig

    if name == "generator":
        return PhonemeMotionEngine(TeacherConfig(mode="auto"), fps=FPS, seed=SEED)
    if name == "generator_energy":
        return PhonemeMotionEngine(TeacherConfig(mode="energy"), fps=FPS, seed=SEED)
    if name in ("network_diffusion", "before"):
        cfg = NetworkConfig(mouth="network")
    else:
        cfg = NetworkConfig(mouth="readout", mouth_model_path=fold_model)
    key = (cfg.mouth, str(cfg.mouth_model_path))
    if key not in models_cache:
        models_cache[key] = load_motion_models(cfg)
    if name in ("hybrid", "before"):
        mouth = "phonemes" if name == "before" else "learned"
        hcfg = HybridConfig(network=replace(cfg, mouth="network") if name == "before" else cfg, mouth=mouth)
        return HybridMotionEngine(hcfg, fps=FPS, seed=SEED, models=models_cache[key])
    return NetworkMotionEngine(cfg, fps=FPS, seed=SEED, models=models_cache[key])


def rig_openings(frames: list[MotionFrame], rig: object) -> np.ndarray:
    return np.asarray([mouth_opening(rig.pose(f).face) for f in frames])  # type: ignore[attr-defined]


def aligned_phonemes(clip: ClipData) -> list:
    from vlogger.engines.motion.align import align_audio

    return align_audio(clip.audio16k, 16000)


def speaker_summary(per_clip: dict[str, float], speakers: dict[str, str], n_boot: int) -> dict:
    """Per-speaker means, their mean and a bootstrap interval over speakers."""
    per: dict[str, list[float]] = {}
    for clip, r in per_clip.items():
        per.setdefault(speakers[clip], []).append(r)
    sp = {s: float(np.mean(v)) for s, v in sorted(per.items())}
    vals = np.array(list(sp.values()))
    rng = np.random.default_rng(0)
    boot = [float(np.mean(rng.choice(vals, len(vals)))) for _ in range(n_boot)]
    return {
        "mean": round(float(vals.mean()), 4),
        "ci95": [round(float(np.percentile(boot, 2.5)), 4), round(float(np.percentile(boot, 97.5)), 4)],
        "speakers": {s: round(v, 4) for s, v in sp.items()},
    }


def rig_level(clips: list[ClipData], folds: Path, engines: tuple[str, ...], n_boot: int) -> dict:
    from vlogger.engines.avatar import load_avatar

    rig = load_avatar(None).rig
    models_cache: dict = {}
    per_clip: dict[str, dict[str, float]] = {e: {} for e in engines}
    lags: dict[str, dict[str, int]] = {e: {} for e in engines}
    traces: dict[str, dict[str, np.ndarray]] = {}
    t0 = time.perf_counter()
    for k, clip in enumerate(clips):
        n = len(clip.real_opening)
        phon = aligned_phonemes(clip) if {"generator", "before"} & set(engines) else []
        traces[clip.clip] = {"real": clip.real_opening}
        for e in engines:
            engine = make_engine(e, folds / f"{clip.speaker}.onnx", models_cache)
            timed = e in ("generator", "before")
            frames = _stream(engine, clip.audio16k, n, phon if timed else None)
            pred = rig_openings(frames, rig)
            r, lag = best_lag_r(clip.real_opening[: len(pred)], pred)
            per_clip[e][clip.clip] = r
            lags[e][clip.clip] = lag
            traces[clip.clip][e] = pred
        models_cache = {
            k2: v for k2, v in models_cache.items() if k2[1] == "None"
        }  # fold models: one speaker
        print(
            f"  [{k + 1}/{len(clips)}] {clip.clip} ({clip.speaker}): "
            + ", ".join(f"{e} {per_clip[e][clip.clip]:.2f}" for e in engines)
            + f"  {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    speakers = {c.clip: c.speaker for c in clips}
    out: dict = {"engines": {}}
    for e in engines:
        out["engines"][e] = speaker_summary(per_clip[e], speakers, n_boot)
        out["engines"][e]["clips"] = {c: round(v, 4) for c, v in per_clip[e].items()}
        out["engines"][e]["median_lag"] = float(np.median(list(lags[e].values())))
    if "generator" in engines:
        gen = out["engines"]["generator"]["speakers"]
        for e in engines:
            sp = out["engines"][e]["speakers"]
            out["engines"][e]["speakers_above_generator"] = sum(sp[s] > gen[s] for s in sp)
    out["_traces"] = traces
    return out


RENDERED_ENGINES = ("hybrid", "before")


def engine_config(name: str, fold_model: Path | None) -> object:
    """The ``VloggerConfig`` that renders with the row ``name`` (``vlogger render --motion ...``)."""
    from dataclasses import replace

    from vlogger.runtime.config import VloggerConfig

    cfg = VloggerConfig()
    cfg.seed = SEED
    if name in ("generator", "generator_energy"):
        cfg.motion_engine = "teacher"
        cfg.motion = replace(cfg.motion, mode="auto" if name == "generator" else "energy")
        return cfg
    cfg.motion_engine = "hybrid" if name.startswith("hybrid") else "network"
    cfg.mouth = "phonemes" if name == "before" else "learned"
    mouth = "network" if name in ("network_diffusion", "before") else "readout"
    cfg.network = replace(
        cfg.network, mouth=mouth, mouth_model_path=fold_model if mouth == "readout" else None
    )
    return cfg


def rendered_level(
    clips: list[ClipData], folds: Path, engines: tuple[str, ...], max_seconds: float, n_boot: int, work: Path
) -> dict:
    """The whole pipeline per clip: photo = the clip's most closed-mouth frame (the corpus' reference
    frame), audio = its first ``max_seconds``, rendered at 256 px by ``render_video``, FaceMesh on
    the MP4; r vs the real mouth, and the renderer's fidelity (rendered vs commanded opening)."""
    from benchmarks import lipsync_render as lr

    per: dict[str, dict[str, float]] = {e: {} for e in engines}
    cmd: dict[str, dict[str, float]] = {e: {} for e in engines}
    fid: dict[str, list[float]] = {e: [] for e in engines}
    ratio: dict[str, list[float]] = {e: [] for e in engines}
    t0 = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    for k, clip in enumerate(clips):
        frame = lr.reference_frame(clip.clip)
        photo = lr.clip_photo(lr.clip_path(clip.clip), frame)
        n = min(len(clip.real_opening), round(max_seconds * FPS))
        audio = clip.audio16k[: n * 640]
        for e in engines:
            rc = lr.render_clip(
                photo,
                audio,
                engine_config(e, folds / f"{clip.speaker}.onnx"),
                work,
                verify=False,
                av_check=False,
            )
            m = min(n, rc.n_frames)
            per[e][clip.clip] = lr.score(clip.real_opening[:m], rc.rendered[:m])[0]
            cmd[e][clip.clip] = lr.score(clip.real_opening[:m], rc.commanded[:m])[0]
            f = lr.fidelity(rc.rendered[:m], rc.commanded[:m])
            fid[e].append(f.r)
            ratio[e].append(f.std_ratio)
        print(
            f"  [{k + 1}/{len(clips)}] {clip.clip} (photo frame {frame}): "
            + ", ".join(f"{e} {per[e][clip.clip]:.2f} (commanded {cmd[e][clip.clip]:.2f})" for e in engines)
            + f"  {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    speakers = {c.clip: c.speaker for c in clips}
    out: dict = {
        "photo": "the clip's most closed-mouth frame",
        "max_seconds_per_clip": max_seconds,
        "engines": {},
    }
    for e in engines:
        out["engines"][e] = speaker_summary(per[e], speakers, n_boot)
        out["engines"][e]["commanded"] = speaker_summary(cmd[e], speakers, n_boot)["mean"]
        out["engines"][e]["fidelity_r_median"] = round(float(np.nanmedian(fid[e])), 4)
        out["engines"][e]["fidelity_std_ratio_median"] = round(float(np.nanmedian(ratio[e])), 4)
        out["engines"][e]["clips"] = {c: round(v, 4) for c, v in per[e].items()}
    return out


def open_mouth_level(clips: list[ClipData], folds: Path, engine: str, max_seconds: float, work: Path) -> dict:
    """Photos taken mid-speech: photo = the clip's frame with the widest real mouth; its audio (up
    to ``max_seconds``) then 2 s of silence, rendered. Rest: the rendered opening over the last
    second (the avatar has finished speaking) vs the real clip's closed mouth (5th percentile of
    its opening). Motion size: std of the rendered opening over the speech vs the real one's."""
    from benchmarks import lipsync_render as lr

    rows = {}
    work.mkdir(parents=True, exist_ok=True)
    for clip in clips:
        n = min(len(clip.real_opening), round(max_seconds * FPS))
        audio = np.concatenate([clip.audio16k[: n * 640], np.zeros(2 * 16000, np.float32)])
        frame = int(np.nanargmax(clip.real_opening))
        photo = lr.clip_photo(lr.clip_path(clip.clip), frame)
        rc = lr.render_clip(
            photo,
            audio,
            engine_config(engine, folds / f"{clip.speaker}.onnx"),
            work,
            verify=False,
            av_check=False,
        )
        real, rend = clip.real_opening[:n], rc.rendered[:n]
        rest = float(np.nanmedian(rc.rendered[-25:]))
        closed = float(np.nanpercentile(real, 5))
        rows[clip.clip] = {
            "photo_frame": frame,
            "photo_opening": round(float(clip.real_opening[frame]), 4),
            "rest_rendered": round(rest, 4),
            "real_closed": round(closed, 4),
            "rest_error": round(rest - closed, 4),
            "std_ratio": round(float(np.nanstd(rend) / np.nanstd(real)), 3),
            "r": round(lr.score(real, rend)[0], 4),
        }
        v = rows[clip.clip]
        print(
            f"  {clip.clip}: photo opening {v['photo_opening']:.3f}, rest {v['rest_rendered']:.3f} vs real "
            f"closed {v['real_closed']:.3f}, std ratio {v['std_ratio']:.2f}, r {v['r']:.2f}",
            flush=True,
        )
    errs = [abs(v["rest_error"]) for v in rows.values()]
    ratios = [v["std_ratio"] for v in rows.values()]
    return {
        "engine": engine,
        "clips": rows,
        "median_abs_rest_error": round(float(np.median(errs)), 4) if errs else None,
        "clips_rest_within_0.02": sum(e <= 0.02 for e in errs),
        "median_std_ratio": round(float(np.median(ratios)), 3) if ratios else None,
        "clips_std_ratio_in_0.8_1.25": sum(0.8 <= r <= 1.25 for r in ratios),
    }


def lookahead_latency(lookahead: int, whisper: object = None, piece_ms: int = 20) -> dict:
    """For audio streamed in real time (``piece_ms`` pieces, as an agent sends PCM): how long after
    a frame's own audio has fully arrived the runtime's feature stream can compute its feature (the
    wait for the lookahead and the encoder hop), mean and max over 64 frames, in ms. Measured on
    :class:`~vlogger.engines.motion.features.FeatureStream` (``frames_ready``; no encoder call)."""
    from training.motion.mouth_data import feature_config
    from vlogger.engines.motion.features import FeatureStream

    fs = FeatureStream(feature_config(lookahead), whisper=whisper)
    piece = 16 * piece_ms
    ready_at: dict[int, float] = {}
    pushed = 0
    while len(ready_at) < 64:
        fs.push(np.zeros(piece, np.float32))
        pushed += piece
        for i in range(fs.frames_ready()):
            ready_at.setdefault(i, pushed / 16.0)
    waits = [ready_at[i] - (i + 1) * 1000.0 / FPS for i in range(64)]
    return {"mean_ms": round(float(np.mean(waits)), 1), "max_ms": round(float(np.max(waits)), 1)}


def lookahead_table(runs: Path) -> dict:
    from training.motion.mouth_data import feature_config
    from vlogger.engines.motion.features import load_whisper_encoder

    whisper = load_whisper_encoder(feature_config(2))
    out = {}
    for la in LOOKAHEADS:
        p = runs / f"loso_L{la}.json"
        if not p.exists():
            continue
        rep = json.loads(p.read_text())
        out[str(la * 40)] = {
            "lookahead_frames": la,
            "loso_rig_r": rep["mean_r"],
            **lookahead_latency(la, whisper),
        }
    return out


def print_rig(res: dict) -> None:
    print("\n| engine (rig level) | mean r [95% CI] over speakers | above generator | median lag |")
    print("| --- | --- | --- | --- |")
    for e, v in res["engines"].items():
        above = v.get("speakers_above_generator", "-")
        n = len(v["speakers"])
        print(
            f"| {e} | {v['mean']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}] | {above}/{n} "
            f"| {v['median_lag']:+.0f} |"
        )


def plot(res: dict, out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rig = res["rig"]["engines"]
    speakers = sorted(next(iter(rig.values()))["speakers"])
    fig, ax = plt.subplots(figsize=(12, 4.5))
    w = 0.8 / len(rig)
    for k, (e, v) in enumerate(rig.items()):
        ax.bar(
            np.arange(len(speakers)) + k * w,
            [v["speakers"][s] for s in speakers],
            w,
            label=f"{e} ({v['mean']:.2f})",
        )
    ax.set_xticks(np.arange(len(speakers)) + 0.4, speakers, rotation=70, fontsize=7)
    ax.set_ylabel("r (best lag within ±2 frames)")
    ax.set_title("Lip sync on held-out real speakers (rig level)")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=ROOT / "training" / "data" / "real")
    ap.add_argument("--runs", type=Path, default=ROOT / "training" / "runs" / "mouth")
    ap.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    ap.add_argument(
        "--lookahead-runs",
        type=Path,
        default=ROOT / "training" / "runs" / "mouth_lookahead",
        help="python -m training.motion.mouth --small-grid --lookaheads 0 2 4 8 --out this",
    )
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--clips", nargs="*", help="only these clips (default all)")
    ap.add_argument("--out", type=Path, default=RESULTS / "lipsync.json")
    ap.add_argument("--rendered", action="store_true", help="also score the rendered pipeline")
    ap.add_argument("--rendered-engines", nargs="+", default=list(RENDERED_ENGINES), choices=ENGINES)
    ap.add_argument("--rendered-seconds", type=float, default=20.0, help="audio per clip rendered")
    ap.add_argument("--no-rig", action="store_true", help="skip the rig level (keep it from --out)")
    ap.add_argument("--open-mouth", action="store_true", help="also photos taken at the widest mouth")
    args = ap.parse_args(argv)
    if not (args.corpus / "manifest.json").exists():
        print(f"skipped: no real-clip corpus at {args.corpus} (see the module docstring)")
        return 0
    folds = args.runs / "folds_L2"
    clips = load_clips(args.corpus, 2)
    if args.clips:
        clips = [c for c in clips if c.clip in set(args.clips)]
    res: dict = {
        "score": "Pearson r of the mouth opening (13-14 / 33-263) vs the real clip's (FaceMesh refine), "
        "best lag within +-2 frames, mean per speaker, mean over speakers, 95% bootstrap over speakers",
        "clips": len(clips),
        "speakers": len({c.speaker for c in clips}),
        "seconds": round(sum(len(c.real_opening) for c in clips) / FPS, 1),
    }
    traces: dict = {}
    if args.no_rig and args.out.exists():
        res["rig"] = json.loads(args.out.read_text())["rig"]
    else:
        print(f"rig level: {res['clips']} clips, {res['speakers']} speakers, {res['seconds']} s")
        res["rig"] = rig_level(clips, folds, tuple(args.engines), args.boot)
        traces = res["rig"].pop("_traces")
    res["lookahead"] = lookahead_table(args.lookahead_runs)
    print_rig(res["rig"])
    if not args.rendered and args.out.exists() and "rendered" in json.loads(args.out.read_text()):
        res["rendered"] = json.loads(args.out.read_text())["rendered"]
    if args.rendered:
        print(f"rendered level: up to {args.rendered_seconds:g} s per clip")
        res["rendered"] = rendered_level(
            clips,
            folds,
            tuple(args.rendered_engines),
            args.rendered_seconds,
            args.boot,
            args.runs / "rendered",
        )
        print("\n| engine (rendered) | mean r [95% CI] | commanded r | fidelity r / std ratio (median) |")
        print("| --- | --- | --- | --- |")
        for e, v in res["rendered"]["engines"].items():
            print(
                f"| {e} | {v['mean']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}] | {v['commanded']:.3f} | "
                f"{v['fidelity_r_median']:.3f} / {v['fidelity_std_ratio_median']:.2f} |"
            )
    if res["lookahead"]:
        print("\n| feature lookahead | LOSO rig r (offline) | wait before a streamed frame: mean / max |")
        print("| --- | --- | --- |")
        for ms, v in res["lookahead"].items():
            print(f"| {ms} ms | {v['loso_rig_r']:.3f} | {v['mean_ms']:.0f} / {v['max_ms']:.0f} ms |")
    if args.open_mouth:
        print("open-mouth photos (the widest real mouth of each clip as the photo), engine hybrid:")
        res["open_mouth"] = open_mouth_level(
            clips, folds, "hybrid", args.rendered_seconds, args.runs / "open"
        )
        om = res["open_mouth"]
        print(
            f"rest error median {om['median_abs_rest_error']} "
            f"({om['clips_rest_within_0.02']}/{len(om['clips'])} within 0.02), std ratio median "
            f"{om['median_std_ratio']} ({om['clips_std_ratio_in_0.8_1.25']} in 0.8-1.25)"
        )
    elif args.no_rig and args.out.exists() and "open_mouth" in json.loads(args.out.read_text()):
        res["open_mouth"] = json.loads(args.out.read_text())["open_mouth"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    args.runs.mkdir(parents=True, exist_ok=True)
    if traces:
        np.savez_compressed(
            args.runs / "lipsync_traces.npz",
            **{f"{c}/{k}": v for c, d in traces.items() for k, v in d.items()},
        )
    plot(res, args.out.with_suffix(".png"))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
