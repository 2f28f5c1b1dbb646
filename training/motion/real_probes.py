"""Quick probes of the motion network on the real clips (the model card's sweep and lookahead notes).

    python -m training.motion.real_probes sweep [--model M.onnx | --loo DIR] [--engine '{"guidance": 3}' ...]
    python -m training.motion.real_probes lookahead [--lookaheads 2 5 8 12]
    python -m training.motion.real_probes loudness

``sweep``: mean mouth-opening r (best lag within +-3 frames) over seeds 0-2 and the 4 clips with
sound, for each ``NetworkConfig`` override given (streamed as in ``benchmarks/motion_network.py``).
``lookahead``: a ridge regression from the Whisper features at each lookahead to the real mouth
opening, trained on 3 clips and scored on the 4th (lag 0): how much the features alone carry.
``loudness``: the log RMS of the audio (80 ms) as a mouth-opening predictor, for scale.
Needs ``../shared/data`` and the clips corpus (``training/data/clips``) for the landmark cache.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from benchmarks import motion_network as mn
from benchmarks import teacher_lipsync as tl
from vlogger.engines.metrics import best_lag, mouth_openings, pearson

__all__ = ["main"]


def _clips(data: Path, clips: Path) -> dict[str, dict]:
    return {n: mn.load_clip(data, n, clips) for n in tl.CLIPS if (data / "video" / f"{n}.mp4").exists()}


def _on_video_clock(c: dict) -> np.ndarray:
    pcm, a0 = c["pcm"], c["a0"]
    if a0 >= 0:
        return np.concatenate([np.zeros(round(a0 * 16000), np.float32), pcm])
    return pcm[round(-a0 * 16000) :]


def sweep(clips: dict[str, dict], model: Path | None, engines: list[dict], loo: Path | None = None) -> None:
    rig = tl._load_rig()
    for cfg in engines:
        rs = []
        for seed in (0, 1, 2):
            for name, c in clips.items():
                lm = c["landmarks"]
                real = np.where(c["found"], mouth_openings(lm), np.nan)
                m = loo / f"loo_{name}.onnx" if loo else model
                frames, _ = mn.run_engine(m, c["pcm"], c["a0"], len(lm), seed, cfg)
                rs.append(best_lag(real, mouth_openings(mn.posed(frames, rig)), tl.MAX_LAG)[0])
        per_clip = np.asarray(rs).reshape(3, -1).mean(0)
        print(f"{json.dumps(cfg)}: mean r {np.mean(rs):.3f}, per clip {np.round(per_clip, 3)}", flush=True)


def lookahead(clips: dict[str, dict], lookaheads: list[int], lam: float = 100.0) -> None:
    from vlogger.engines.motion.features import FeatureConfig, offline_features

    for la in lookaheads:
        fc = FeatureConfig(kind="whisper", lookahead_frames=la)
        xs, ys = {}, {}
        for n, c in clips.items():
            ok = c["found"]
            f = offline_features(_on_video_clock(c), len(c["landmarks"]), fc)
            xs[n], ys[n] = f[ok], mouth_openings(c["landmarks"])[ok]
        rs = []
        for n in clips:
            xt = np.concatenate([xs[m] for m in clips if m != n])
            yt = np.concatenate([ys[m] for m in clips if m != n])
            mu, sd = xt.mean(0), xt.std(0) + 1e-6
            a = (xt - mu) / sd
            w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ (yt - yt.mean()))
            rs.append(pearson(((xs[n] - mu) / sd) @ w, ys[n]))
        print(f"lookahead {la}: leave-one-clip-out r {np.round(rs, 3)}, mean {np.mean(rs):.3f}", flush=True)


def loudness(clips: dict[str, dict], window_s: float = 0.08) -> None:
    rs = []
    for n, c in clips.items():
        pcm, k = _on_video_clock(c), round(window_s * 16000)
        centres = (np.arange(len(c["landmarks"])) + 0.5) / 25.0
        e = [pcm[max(0, round(t * 16000) - k // 2) : max(0, round(t * 16000) - k // 2) + k] for t in centres]
        le = np.log(np.array([np.sqrt(np.mean(w**2)) if len(w) else 0.0 for w in e]) + 1e-3)
        real = np.where(c["found"], mouth_openings(c["landmarks"]), np.nan)
        r, lag = best_lag(real, le, tl.MAX_LAG)
        rs.append(r)
        print(f"{n}: r {r:.3f} (lag {lag})")
    print(f"mean {np.mean(rs):.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("probe", choices=["sweep", "lookahead", "loudness"])
    ap.add_argument("--data", type=Path, default=tl._default_data())
    ap.add_argument("--clips", type=Path, default=Path("training/data/clips"))
    ap.add_argument("--model", type=Path, default=None, help="ONNX motion network (default: packaged)")
    ap.add_argument("--loo", type=Path, default=None, help="folder of loo_<clip>.onnx (sweep)")
    ap.add_argument("--engine", action="append", default=None, help="NetworkConfig overrides as JSON")
    ap.add_argument("--lookaheads", type=int, nargs="+", default=[2, 5, 8, 12])
    a = ap.parse_args(argv)
    if not (a.data / "video").is_dir():
        print(f"skipped: no real clips at {a.data / 'video'}")
        return 0
    clips = _clips(a.data, a.clips)
    if a.probe == "sweep":
        sweep(clips, a.model, [json.loads(e) for e in a.engine] if a.engine else [{}], a.loo)
    elif a.probe == "lookahead":
        lookahead(clips, a.lookaheads)
    else:
        loudness(clips)
    return 0


if __name__ == "__main__":
    sys.exit(main())
