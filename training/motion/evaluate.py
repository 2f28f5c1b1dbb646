"""Held-out check of a motion network against its teacher targets (synthetic corpus items).

The model (ONNX, through the streaming runtime engine) is driven by each item's audio and compared
with the item's targets: mouth-opening proxy r (``visemes.mouth_opening_proxy``) at lag 0, mean
absolute error of the mouth coefficients, the std over time of mouth / head yaw-pitch relative to
the targets', and blinks per minute (network eyes). Used to pick sampler settings (steps,
guidance) WITHOUT looking at the real clips, which are kept for the final measurement
(``benchmarks/motion_network.py``).

    python -m training.motion.evaluate --model engines/motion/assets/motion_network.onnx \
        --corpus training/data/synth --start 400 --items 24 --grid
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from training.corpus import Corpus
from vlogger.engines.audio import chunk_audio
from vlogger.engines.avatar.rig import rotation_from_6d
from vlogger.engines.metrics import pearson
from vlogger.engines.motion.network import NetworkConfig, NetworkMotionEngine
from vlogger.engines.motion.visemes import mouth_opening_proxy

__all__ = ["evaluate"]


def _yaw_pitch(head: np.ndarray) -> np.ndarray:
    out = []
    for h in head:
        r = rotation_from_6d(h[:6])
        out.append(
            [math.degrees(math.atan2(r[2, 0], r[2, 2])), math.degrees(math.asin(np.clip(r[2, 1], -1, 1)))]
        )
    return np.asarray(out)


def evaluate(model: Path | None, corpus: Path, start: int, items: int, engine: dict | None = None) -> dict:
    c = Corpus(corpus)
    idx = [i for i in range(start, min(len(c), start + items))]
    rs, maes, mstd, hstd, blinks, minutes = [], [], [], [], 0, 0.0
    for i in idx:
        it = c[i]
        eng = NetworkMotionEngine(NetworkConfig(model_path=model, eyes="network", **(engine or {})), seed=i)
        frames = []
        for ch in chunk_audio(it.audio16k, 16000, 0.5):
            eng.push_audio(ch)
            frames += eng.frames(math.inf)
        eng.end_of_input()
        frames += eng.frames(it.n_frames / 25 - 0.02)
        pred = np.stack([np.concatenate([f.expression, f.head]) for f in frames[: it.n_frames]])
        tgt = it.motion[: len(pred), :24]
        a, b = mouth_opening_proxy(pred[:, :15]), mouth_opening_proxy(tgt[:, :15])
        if not np.isnan(r := pearson(a, b)):
            rs.append(r)
        maes.append(float(np.abs(pred[:, :9] - tgt[:, :9]).mean()))
        mstd.append(float(pred[:, :9].std(0).mean() / max(tgt[:, :9].std(0).mean(), 1e-6)))
        hp, ht = _yaw_pitch(pred[:, 15:]), _yaw_pitch(tgt[:, 15:])
        hstd.append(float(hp.std(0).mean() / max(ht.std(0).mean(), 1e-6)))
        bl = pred[:, 9] > 0.5
        blinks += int(np.sum(bl[1:] & ~bl[:-1]))
        minutes += len(pred) / 25 / 60
    return {
        "items": len(idx),
        "mouth_proxy_r": round(float(np.mean(rs)), 4),
        "mouth_mae": round(float(np.mean(maes)), 4),
        "mouth_std_ratio": round(float(np.mean(mstd)), 3),
        "head_yaw_pitch_std_ratio": round(float(np.mean(hstd)), 3),
        "network_blinks_per_min": round(blinks / max(minutes, 1e-9), 1),
        "engine": engine or {},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--corpus", type=Path, default=Path("training/data/synth"))
    ap.add_argument("--start", type=int, default=400, help="first item (items before it were trained on)")
    ap.add_argument("--items", type=int, default=24)
    ap.add_argument("--engine", default=None, help="NetworkConfig overrides as JSON")
    ap.add_argument("--grid", action="store_true", help="try steps x guidance")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    a = ap.parse_args(argv)
    settings = [json.loads(a.engine)] if a.engine else [{}]
    if a.grid:
        settings = [{"steps": s, "guidance": g} for s in (2, 4) for g in (1.0, 2.0, 3.5, 5.0)]
    results = []
    for e in settings:
        r = evaluate(a.model, a.corpus, a.start, a.items, e)
        print(json.dumps(r), flush=True)
        results.append(r)
    if a.out:
        a.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
