"""A small synthetic corpus made in-process (piper voice + the teacher), for development and tests.

Each item: one to three utterances of :class:`~training.motion.sentences.SentenceGenerator` text
spoken by the packaged piper voice at a random speed and noise, with random pauses before, between
and after, resampled to 16 kHz; targets from the teacher (``generate_motion`` with the piper
phonemes and a random seed). Written in the corpus format of :mod:`training.corpus`; shards that
exist are kept (resume). The full corpus builder (espeak voices, augmentation, real clips) is
``training/motion/build_corpus.py``; this one only needs piper.

    python -m training.motion.dev_corpus --out training/data/dev --items 200
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from training.corpus import (
    SAMPLE_RATE,
    CorpusItem,
    frames_for_samples,
    motion_from_frames,
    shard_path,
    write_manifest,
    write_shard,
)
from training.motion.sentences import SentenceGenerator
from vlogger.engines.audio import resample
from vlogger.engines.motion.teacher import generate_motion
from vlogger.engines.types import AudioChunk

__all__ = ["build_dev_corpus", "synth_item"]


def synth_item(tts_cache: dict, rng: np.random.Generator, seed: int) -> CorpusItem:
    from vlogger.engines.tts import PiperTTS, TTSConfig

    length = round(float(rng.uniform(0.75, 1.35)), 2)
    noise = round(float(rng.uniform(0.3, 0.9)), 2)
    noise_w = round(float(rng.uniform(0.4, 1.0)), 2)
    key = (length, noise, noise_w)
    if key not in tts_cache:
        if len(tts_cache) > 4:
            tts_cache.clear()
        tts_cache[key] = PiperTTS(TTSConfig(length_scale=length, noise_scale=noise, noise_w_scale=noise_w))
    tts = tts_cache[key]
    gen = SentenceGenerator()
    t = float(rng.uniform(0.1, 1.2))
    chunks: list[AudioChunk] = []
    texts = []
    for _ in range(int(rng.integers(1, 4))):
        text = gen.utterance(rng, max_sentences=2)
        texts.append(text)
        for c in tts.synthesize(text, start_pts=t):
            c.pcm = c.pcm * float(rng.uniform(0.3, 1.0))
            chunks.append(c)
            t = c.end
        t += float(rng.uniform(0.15, 1.2))
    rate = chunks[0].sample_rate
    total = round(t * rate)
    pcm = np.zeros(total, np.float32)
    for c in chunks:
        s = round(c.pts * rate)
        pcm[s : s + c.num_samples] = c.pcm[: total - s]
    a16 = resample(pcm, rate, SAMPLE_RATE)
    n = frames_for_samples(len(a16))
    frames = generate_motion(chunks, n, seed=seed)
    return CorpusItem(
        audio16k=a16,
        motion=motion_from_frames(frames),
        source="piper",
        text=" ".join(texts),
        weight=1.0,
        target_mask=np.ones(174, np.float32),
    )


def build_dev_corpus(out: Path, items: int, seed: int = 0, per_shard: int = 25) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    n_shards = -(-items // per_shard)
    shards = []
    cache: dict = {}
    t0 = time.perf_counter()
    for s in range(n_shards):
        path = shard_path(out, s)
        k = min(per_shard, items - s * per_shard)
        if not path.exists():
            rng = np.random.default_rng([seed, s])
            batch = [synth_item(cache, rng, seed * 100_000 + s * per_shard + j) for j in range(k)]
            write_shard(path, batch)
        shards.append({"file": path.name, "items": k})
        print(f"dev corpus: shard {s + 1}/{n_shards} ({time.perf_counter() - t0:.0f} s)", flush=True)
    write_manifest(
        out,
        {
            "version": 1,
            "fps": 25,
            "sample_rate": SAMPLE_RATE,
            "motion_dim": 174,
            "config": {"builder": "dev_corpus", "items": items, "seed": seed},
            "shards": shards,
        },
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("training/data/dev"))
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    build_dev_corpus(a.out, a.items, a.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
