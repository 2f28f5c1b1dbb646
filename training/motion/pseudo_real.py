"""Pseudo-labelled real speech: the teacher's motion on real voices that have no video.

The real recordings of ``../shared/data/audio`` (about 70 s of real male and female speech, no
faces) are cut into pieces of at most ``--piece`` seconds; each piece is aligned (whisper words +
pocketsphinx phones, :func:`vlogger.engines.motion.align.align_audio`) and the teacher generates
its targets from those phonemes (with its stochastic head, blink and gaze processes), so the
network sees real voices, recorded in real rooms, with plausible targets. None of these recordings
belongs to the clips that score the network (``benchmarks/motion_network.py``).

    python -m training.motion.pseudo_real --out training/data/pseudo
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from training.corpus import (
    FPS,
    MOTION_DIM,
    SAMPLE_RATE,
    CorpusItem,
    frames_for_samples,
    motion_from_frames,
    write_manifest,
    write_shard,
)

__all__ = ["build"]


def _default_audio_dir() -> Path:
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "audio"


def build(out: Path, audio_dir: Path, piece_s: float = 6.0, seed: int = 0, variants: int = 1) -> dict:
    """``variants`` versions of each piece: the clean one, then augmented ones (the corpus
    builder's time change before the targets, with the phonemes scaled alike, and its
    length-keeping augmentations after), each with its own teacher seed."""
    from training.motion.augment import Augmenter
    from vlogger.engines.audio import load_audio
    from vlogger.engines.motion.align import Aligner
    from vlogger.engines.motion.teacher import generate_motion
    from vlogger.engines.types import AudioChunk, PhonemeTiming

    aligner = Aligner()
    aug = Augmenter(rate=SAMPLE_RATE)
    items: list[CorpusItem] = []
    clean: list[np.ndarray] = []
    for k, path in enumerate(sorted(audio_dir.glob("*.wav"))):
        pcm, _ = load_audio(path, target_rate=SAMPLE_RATE)
        n = round(piece_s * SAMPLE_RATE)
        for j, off in enumerate(range(0, len(pcm), n)):
            piece = pcm[off : off + n].astype(np.float32)
            if len(piece) < SAMPLE_RATE:  # a tail under 1 s
                continue
            phonemes = aligner.align(piece, SAMPLE_RATE).phonemes
            clean.append(piece)
            for v in range(variants):
                rng = np.random.default_rng([seed, k, j, v])
                audio, ph, steps = piece, phonemes, []
                if v > 0:
                    tstep = aug.plan_time(rng)
                    if tstep is not None:
                        audio = aug.apply_time(piece, tstep, SAMPLE_RATE)
                        f = len(audio) / len(piece)
                        ph = [PhonemeTiming(p.phoneme, p.start * f, p.end * f, p.alphabet) for p in phonemes]
                        steps.append(tstep)
                n_frames = frames_for_samples(len(audio))
                chunk = AudioChunk(pcm=audio, sample_rate=SAMPLE_RATE, pts=0.0, phonemes=ph)
                frames = generate_motion(
                    [chunk], n_frames=n_frames, fps=FPS, seed=seed * 100000 + k * 1000 + j * 10 + v
                )
                if v > 0:
                    post = aug.plan(rng)
                    audio = aug.apply(audio, post, rng, clean[:-1])
                    steps.extend(post)
                items.append(
                    CorpusItem(
                        audio16k=np.asarray(audio, np.float32),
                        motion=motion_from_frames(frames),
                        source=f"pseudo:{path.stem}",
                        weight=1.0,
                        target_mask=np.ones(MOTION_DIM, np.float32),
                        augment=json.dumps(
                            [{"op": "pseudo", "file": path.name, "offset_s": off / SAMPLE_RATE}, *steps]
                        ),
                    )
                )
            print(f"{path.name} piece {j}: {len(phonemes)} phones", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    write_shard(out / "shard-00000.npz", items)
    manifest = {
        "version": 1,
        "fps": FPS,
        "sample_rate": SAMPLE_RATE,
        "motion_dim": MOTION_DIM,
        "config": {"audio_dir": str(audio_dir), "piece_s": piece_s, "seed": seed, "variants": variants},
        "shards": [{"file": "shard-00000.npz", "items": len(items)}],
    }
    write_manifest(out, manifest)
    print(f"{len(items)} items, {sum(it.n_frames for it in items) / FPS:.1f} s -> {out}")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("training/data/pseudo"))
    ap.add_argument("--audio", type=Path, default=_default_audio_dir())
    ap.add_argument("--piece", type=float, default=6.0)
    ap.add_argument("--variants", type=int, default=1, help="versions per piece (1 = clean only)")
    a = ap.parse_args(argv)
    if not a.audio.is_dir():
        print(f"skipped: no real audio at {a.audio}")
        return 0
    build(a.out, a.audio, a.piece, variants=a.variants)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
