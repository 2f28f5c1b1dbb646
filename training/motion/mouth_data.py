"""The real-clip mouth data set: per clip, the runtime's Whisper features and the rig's mouth targets.

Reads the corpus written by ``python -m training.motion.real_clips --out training/data/real`` (one
shard per clip with sound, the rig's expression + head targets fitted from the clip's own
FaceMesh landmarks, and ``<clip>.landmarks25.npz`` with the real mouth opening) and caches, per clip
and per lookahead, the Whisper encoder features exactly as
:class:`~vlogger.engines.motion.features.FeatureStream` yields them at run time
(``<out>/features_L<k>/<clip>.npy``). Resumable: a clip whose file exists is skipped.

Usage::

    python -m training.motion.mouth_data --corpus training/data/real --lookaheads 0 2 4 8
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.corpus import Corpus, read_manifest
from training.motion.real_clips import speaker_of
from vlogger.engines.motion.features import FeatureConfig, offline_features

__all__ = [
    "MOUTH_CHANNELS",
    "ClipData",
    "build_features",
    "feature_config",
    "load_clips",
    "main",
    "nonspeech_audio",
    "nonspeech_clips",
]

#: The expression channels the mouth read-out predicts (``EXPRESSION_NAMES[0:9]``).
MOUTH_CHANNELS = slice(0, 9)


def feature_config(lookahead_frames: int) -> FeatureConfig:
    """The runtime's Whisper features (as the motion network reads them) at a given lookahead."""
    return FeatureConfig(kind="whisper", lookahead_frames=lookahead_frames)


@dataclass
class ClipData:
    """One real clip: features, targets and the real mouth, all at 25 fps."""

    clip: str
    speaker: str
    audio16k: np.ndarray
    """(samples,) float32, on the video clock."""
    features: np.ndarray
    """(frames, 768) float32 Whisper features at the requested lookahead."""
    mouth: np.ndarray
    """(frames, 9) rig mouth coefficients fitted from the clip's landmarks."""
    expression: np.ndarray
    """(frames, 15) all fitted expression coefficients."""
    real_opening: np.ndarray
    """(frames,) FaceMesh (refine_landmarks=True) inner-lip gap / outer-eye-corner distance."""
    landmarks: np.ndarray
    """(frames, 478, 3) the clip's 25 fps landmarks in pixels."""
    size: tuple[int, int]
    lookahead: int
    """The features' lookahead in frames."""
    speech: bool = True
    """False for the generated non-speech clips (:func:`nonspeech_clips`): their target is a closed
    mouth, they are trained on and never scored."""


def _cache(corpus: Path, lookahead: int) -> Path:
    return corpus / f"features_L{lookahead}"


def build_features(corpus: Path, lookaheads: list[int], batch: int = 8) -> None:
    """Cache the features of every clip at every lookahead (skips what exists; prints progress)."""
    manifest = read_manifest(corpus)
    items = Corpus(corpus)
    total = len(manifest["shards"]) * len(lookaheads)
    done = 0
    t0 = time.perf_counter()
    for lookahead in lookaheads:
        folder = _cache(corpus, lookahead)
        folder.mkdir(parents=True, exist_ok=True)
        for k, shard in enumerate(manifest["shards"]):
            done += 1
            out = folder / f"{shard['clip']}.npy"
            if out.exists():
                continue
            item = items[k]
            feats = offline_features(item.audio16k, item.n_frames, feature_config(lookahead), batch=batch)
            tmp = out.with_suffix(".tmp.npy")
            np.save(tmp, feats.astype(np.float32))
            tmp.replace(out)
            print(
                f"[{done}/{total}] L={lookahead} {shard['clip']}: {item.n_frames} frames "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )


def load_clips(corpus: Path, lookahead: int) -> list[ClipData]:
    """Every clip of the corpus with its cached features at ``lookahead`` (run :func:`build_features`
    first)."""
    manifest = read_manifest(corpus)
    items = Corpus(corpus)
    out = []
    for k, shard in enumerate(manifest["shards"]):
        item = items[k]
        feats = np.load(_cache(corpus, lookahead) / f"{shard['clip']}.npy")
        with np.load(corpus / f"{shard['clip']}.landmarks25.npz") as z:
            real = z["real_mouth_opening"].astype(np.float64)
            lm = z["landmarks"]
            size = (int(z["width"]), int(z["height"]))
        n = min(len(feats), item.n_frames, len(real))
        out.append(
            ClipData(
                clip=shard["clip"],
                speaker=speaker_of(shard["clip"]),
                audio16k=item.audio16k,
                features=feats[:n],
                mouth=item.motion[:n, MOUTH_CHANNELS].astype(np.float64),
                expression=item.motion[:n, :15].astype(np.float64),
                real_opening=real[:n],
                landmarks=lm[:n],
                size=size,
                lookahead=lookahead,
            )
        )
    return out


def nonspeech_audio(seconds: float = 8.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Generated 16 kHz audio with no speech in it, for which the mouth must stay closed: digital
    silence, white and brown noise at several levels, mains hum, and synthetic music (random notes
    of random harmonic timbres, plucked and sustained). Seeded; none of it is a test signal."""
    rng = np.random.default_rng(seed)
    n = round(seconds * 16000)
    t = np.arange(n) / 16000
    out: dict[str, np.ndarray] = {"silence": np.zeros(n)}
    for db in (-70, -50, -35):
        out[f"white_{-db}dB"] = rng.standard_normal(n) * 10 ** (db / 20)
    brown = np.cumsum(rng.standard_normal(n))
    brown = brown - np.convolve(brown, np.ones(1601) / 1601, mode="same")
    out["brown_40dB"] = brown / (np.std(brown) + 1e-9) * 10 ** (-40 / 20)
    out["hum"] = 0.02 * (np.sin(2 * np.pi * 50 * t) + 0.5 * np.sin(2 * np.pi * 150 * t))
    for k, (rate, decay) in enumerate(((3.0, 6.0), (1.5, 1.0), (5.0, 10.0))):
        notes = np.zeros(n)
        step = round(16000 / rate)
        for a in range(0, n, step):
            f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
            seg = t[: min(step, n - a)]
            harm = rng.uniform(0.2, 1.0, 8) / np.arange(1, 9)
            tone = sum(h * np.sin(2 * np.pi * f0 * (j + 1) * seg) for j, h in enumerate(harm))
            notes[a : a + len(seg)] += tone * np.exp(-seg * decay)
        out[f"music_{k}"] = 0.1 * notes / (np.abs(notes).max() + 1e-9)
    return {k: v.astype(np.float32) for k, v in out.items()}


def nonspeech_clips(lookahead: int, seconds: float = 8.0) -> list[ClipData]:
    """:func:`nonspeech_audio` as training clips with closed-mouth targets (features computed here)."""
    out = []
    for name, pcm in nonspeech_audio(seconds).items():
        n = len(pcm) // 640
        feats = offline_features(pcm, n, feature_config(lookahead), batch=8)
        out.append(
            ClipData(
                clip=f"nonspeech_{name}",
                speaker="nonspeech",
                audio16k=pcm,
                features=feats,
                mouth=np.zeros((n, 9)),
                expression=np.zeros((n, 15)),
                real_opening=np.zeros(n),
                landmarks=np.zeros((n, 478, 3), np.float32),
                size=(0, 0),
                lookahead=lookahead,
                speech=False,
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Cache the runtime's Whisper features of the real clips.")
    ap.add_argument("--corpus", type=Path, default=Path("training/data/real"))
    ap.add_argument("--lookaheads", type=int, nargs="+", default=[0, 2, 4, 8])
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args(argv)
    build_features(args.corpus, args.lookaheads, args.batch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
