"""The runtime's motion engines (``teacher``, ``network``, ``hybrid``) on real speakers, per input kind.

Speech reaches a motion engine with phoneme timings (TTS; an audio file the aligner transcribed) or
without (an agent's PCM streamed into the server). For each real clip with sound in
``../shared/data/video`` and each engine:

- ``audio only``: the clip's audio streamed in 0.2 s chunks with no timings;
- ``aligned``: the whole audio in one chunk with whisper + pocketsphinx phone timings
  (``align_audio``), as ``vlogger render --audio`` does (the network ignores timings: not run).

Score: mouth opening of the rig-posed default avatar vs the real mouth (FaceMesh landmarks per frame,
``benchmarks/motion_network.py``'s loader), Pearson r at the best lag within +-3 frames, mean over
seeds 0-2 per clip, then over clips, with a 95% moving-block bootstrap interval of the seed-0 mean.
Cost: ms per frame of each engine on the streamed audio (one thread, all work in ``frames``).
Writes ``benchmarks/results/motion_engines.json`` and ``.png``::

    python benchmarks/motion_engines.py [--data ../shared/data] [--seeds 0 1 2] [--boot 500]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a script from benchmarks/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import motion_network as mn
from benchmarks import teacher_lipsync as tl
from vlogger.engines.audio import chunk_audio
from vlogger.engines.metrics import best_lag, mouth_openings
from vlogger.engines.motion.factory import make_motion_engine
from vlogger.engines.types import AudioChunk, MotionFrame

RESULTS = Path(__file__).with_name("results")
ENGINES = ("teacher", "network", "hybrid")
INPUTS = ("audio only", "aligned")


def drive(
    make: Callable[[], object], clip: dict, n: int, phonemes: list | None
) -> tuple[list[MotionFrame], float]:
    """Frames for the clip's audio (streamed without timings, or one chunk with them), ms/frame."""
    eng = make()
    pcm, a0 = clip["pcm"], clip["a0"]
    if a0 < 0:
        pcm, a0 = pcm[round(-a0 * 16000) :], 0.0
    chunks = (
        [AudioChunk(pcm=pcm, sample_rate=16000, pts=a0, phonemes=list(phonemes))]
        if phonemes is not None
        else list(chunk_audio(pcm, 16000, 0.2, start_pts=a0))
    )
    return mn.stream_frames(eng, chunks, n)


def run(data: Path, clips_dir: Path, seeds: list[int], n_boot: int) -> dict:
    from vlogger.engines.motion.align import align_audio

    rig = tl._load_rig()
    rng = np.random.default_rng(0)
    res: dict = {"seeds": seeds, "max_lag": tl.MAX_LAG, "clips": {}}
    boots: dict[str, list[np.ndarray]] = {}
    for name in tl.CLIPS:
        if not (data / "video" / f"{name}.mp4").exists():
            continue
        clip = mn.load_clip(data, name, clips_dir)
        real = np.where(clip["found"], mouth_openings(clip["landmarks"]), np.nan)
        n = len(real)
        ph = align_audio(clip["pcm"], 16000)
        ph = [type(p)(p.phoneme, p.start + clip["a0"], p.end + clip["a0"], p.alphabet) for p in ph]
        d: dict = {}
        for kind in INPUTS:
            for engine in ENGINES:
                if kind == "aligned" and engine == "network":
                    continue
                rs, ms = [], []
                for seed in seeds:
                    frames, cost = drive(
                        lambda e=engine, s=seed: make_motion_engine(e, seed=s),
                        clip,
                        n,
                        ph if kind == "aligned" else None,
                    )
                    pred = mouth_openings(mn.posed(frames, rig))
                    r, lag = best_lag(real, pred, tl.MAX_LAG)
                    rs.append(r)
                    ms.append(cost)
                    if seed == seeds[0]:
                        boots.setdefault(f"{kind}/{engine}", []).append(
                            tl.block_bootstrap(real, pred, lag, n_boot, rng)
                        )
                d[f"{kind}/{engine}"] = {
                    "r_seeds": [round(x, 4) for x in rs],
                    "r": round(float(np.mean(rs)), 4),
                    "ms_per_frame": round(float(np.median(ms)), 3),
                }
        res["clips"][name] = d
        print(name + ": " + ", ".join(f"{k} {v['r']:.3f}" for k, v in d.items()), flush=True)
    names = list(res["clips"])
    res["mean"] = {
        key: {
            "r": round(float(np.mean([res["clips"][c][key]["r"] for c in names])), 4),
            "ci95_seed0": tl._ci(np.nanmean(np.stack(boots[key]), axis=0)),
            "ms_per_frame": round(float(np.median([res["clips"][c][key]["ms_per_frame"] for c in names])), 3),
        }
        for key in boots
    }
    return res


def plot(res: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    keys = list(res["mean"])
    rs = [res["mean"][k]["r"] for k in keys]
    lo = [res["mean"][k]["r"] - res["mean"][k]["ci95_seed0"][0] for k in keys]
    hi = [res["mean"][k]["ci95_seed0"][1] - res["mean"][k]["r"] for k in keys]
    ax.bar(range(len(keys)), rs, yerr=[np.maximum(lo, 0), np.maximum(hi, 0)], capsize=3)
    ax.set_xticks(range(len(keys)), [k.replace("/", "\n") for k in keys], fontsize=8)
    ax.set_ylabel("mouth-opening r (real clips)")
    ax.axhline(0.5, color="k", lw=0.5)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=tl._default_data())
    ap.add_argument("--clips", type=Path, default=Path("training/data/clips"), help="landmark cache folder")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--boot", type=int, default=500)
    a = ap.parse_args(argv)
    if not (a.data / "video").is_dir():
        print(f"skipped: no real clips at {a.data / 'video'}")
        return 0
    import cv2

    cv2.setNumThreads(1)
    res = run(a.data, a.clips, a.seeds, a.boot)
    print(f"{'input / engine':<24}{'mean r':>8}{'95% CI (seed 0)':>18}{'ms/frame':>10}")
    for k, v in res["mean"].items():
        print(
            f"{k:<24}{v['r']:>8.3f}   [{v['ci95_seed0'][0]:.2f}, {v['ci95_seed0'][1]:.2f}]"
            f"{v['ms_per_frame']:>10.2f}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "motion_engines.json").write_text(json.dumps(res, indent=1))
    plot(res, RESULTS / "motion_engines.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
