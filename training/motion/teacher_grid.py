"""Leave-one-clip-out grid over the teacher's coarticulation settings on the real clips.

    python -m training.motion.teacher_grid [--data ../shared/data]

For every setting (anticipation, carry-over, jaw dominance of the non-labial consonants, dominance
fall-off power) the teacher is driven by each clip's audio with whisper + pocketsphinx timings and
scored like ``benchmarks/teacher_lipsync.py`` (mouth-opening r at the best lag within +-3 frames).
Then, for each clip, the setting best on the other 3 clips scores it: the mean of those 4 scores
says whether tuning the teacher would generalise (model card: 0.460 vs the defaults' 0.459).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from pathlib import Path

import numpy as np

from benchmarks import motion_network as mn
from benchmarks import teacher_lipsync as tl
from vlogger.engines.metrics import best_lag, mouth_openings
from vlogger.engines.motion import visemes
from vlogger.engines.motion.align import align_audio
from vlogger.engines.motion.teacher import TeacherConfig, generate_motion
from vlogger.engines.types import AudioChunk

__all__ = ["main"]

CONSONANTS = ("DD", "KK", "SS", "TH", "HH", "YY", "RR", "CH")
GRID = {
    "anticipation_s": (0.14, 0.2, 0.25, 0.3),
    "carryover_s": (0.1, 0.15, 0.2, 0.25),
    "consonant_dominance": (1.0, 0.5, 0.3),
    "dominance_power": (2.0, 1.0),
}


def _score(
    clips: dict,
    anticipation_s: float,
    carryover_s: float,
    consonant_dominance: float,
    dominance_power: float,
    rig: object,
) -> list[float]:
    original = dict(visemes.VISEMES)
    try:
        for k in CONSONANTS:  # the table is module state: patched for this call only
            visemes.VISEMES[k] = dataclasses.replace(
                original[k], dominance=original[k].dominance * consonant_dominance
            )
        cfg = TeacherConfig(
            anticipation_s=anticipation_s, carryover_s=carryover_s, dominance_power=dominance_power
        )
        rs = []
        for c in clips.values():
            chunk = AudioChunk(pcm=c["pcm"], sample_rate=16000, pts=c["a0"], phonemes=list(c["phonemes"]))
            frames = generate_motion([chunk], n_frames=len(c["real"]), fps=25.0, seed=0, config=cfg)
            rs.append(best_lag(c["real"], tl.rig_opening(frames, rig), tl.MAX_LAG)[0])
        return rs
    finally:
        visemes.VISEMES.clear()
        visemes.VISEMES.update(original)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=tl._default_data())
    ap.add_argument("--clips", type=Path, default=Path("training/data/clips"), help="landmark cache folder")
    a = ap.parse_args(argv)
    if not (a.data / "video").is_dir():
        print(f"skipped: no real clips at {a.data / 'video'}")
        return 0
    clips = {}
    for n in tl.CLIPS:
        c = mn.load_clip(a.data, n, a.clips)
        ph = align_audio(c["pcm"], 16000)
        c["phonemes"] = [type(p)(p.phoneme, p.start + c["a0"], p.end + c["a0"], p.alphabet) for p in ph]
        c["real"] = np.where(c["found"], mouth_openings(c["landmarks"]), np.nan)
        clips[n] = c
    rig = tl._load_rig()
    names = list(clips)
    res = {}
    for values in itertools.product(*GRID.values()):
        setting = dict(zip(GRID, values, strict=True))
        res[values] = _score(clips, **setting, rig=rig)
        print(setting, np.round(res[values], 3), f"mean {np.mean(res[values]):.3f}", flush=True)
    loo = []
    for i, n in enumerate(names):
        best = max(res, key=lambda k: np.mean([res[k][j] for j in range(len(names)) if j != i]))
        loo.append(res[best][i])
        print(f"{n}: best on the others {dict(zip(GRID, best, strict=True))} -> {res[best][i]:.3f}")
    default = res[(0.14, 0.1, 1.0, 2.0)]
    print(
        f"leave-one-clip-out mean {np.mean(loo):.3f}; defaults {np.mean(default):.3f}; "
        f"best in-sample {max(np.mean(v) for v in res.values()):.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
