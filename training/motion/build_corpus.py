"""Build the synthetic motion corpus: generated sentences spoken by piper and espeak-ng voices,
teacher motion targets, augmented 16 kHz audio, in shards (see :mod:`training.corpus`).

Per item ``i`` (its choices are deterministic from ``(seed, i)``; piper's own generator noise is
not seedable, so piper audio differs slightly between runs): a text of 1-2 generated sentences (or, rarely,
an idle item of near-silence); a voice: the packaged piper voice at a random ``length_scale``
(0.8-1.3), ``noise_scale``, ``noise_w_scale`` and sentence pause, or an espeak-ng English voice
with a variant, rate and pitch; silence before and after; optionally a tempo/speed change of the
clean audio (phoneme times scaled alike); teacher targets (``generate_motion`` with a per-item
seed) from the clean audio and phonemes; the audio resampled to 16 kHz; then a random subset of
length-preserving augmentations (pitch, reverb, noise, telephone band, gain/clipping, DC).

Usage (from the repository root; resumes: finished shards are skipped)::

    python -m training.motion.build_corpus --out training/data/synth --items 2000 --workers 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.corpus import (
    CORPUS_VERSION,
    FPS,
    MOTION_DIM,
    SAMPLE_RATE,
    CorpusItem,
    frames_for_samples,
    motion_from_frames,
    read_manifest,
    shard_path,
    write_manifest,
    write_shard,
)
from training.motion.augment import AugmentConfig, Augmenter
from training.motion.sentences import SentenceGenerator
from vlogger.engines.audio import resample
from vlogger.engines.types import AudioChunk, PhonemeTiming

if TYPE_CHECKING:
    from training.motion.espeak import Espeak
    from vlogger.engines.tts import PiperTTS

__all__ = ["BuildConfig", "ItemMaker", "build", "main"]


@dataclass(frozen=True)
class BuildConfig:
    """What the synthetic corpus is made of."""

    items: int = 2000
    """Number of items."""
    shard_size: int = 100
    """Items per shard."""
    seed: int = 0
    """Base seed: item i is drawn from (seed, i)."""
    espeak_share: float = 0.4
    """Share of items spoken by espeak-ng voices (the rest by piper); 0 when espeak is missing."""
    idle_share: float = 0.03
    """Share of idle items (near-silence, 2-8 s): the network must idle calmly."""
    max_sentences: int = 2
    """Most sentences per item."""
    length_scale: tuple[float, float] = (0.8, 1.3)
    """piper speaking slowness range."""
    noise_scale: tuple[float, float] = (0.33, 0.9)
    """piper generator noise range."""
    noise_w_scale: tuple[float, float] = (0.3, 1.1)
    """piper duration noise range."""
    sentence_silence: tuple[float, float] = (0.0, 0.45)
    """piper pause after each sentence (s)."""
    espeak_rate: tuple[int, int] = (120, 230)
    """espeak-ng words per minute."""
    espeak_pitch: tuple[int, int] = (20, 80)
    """espeak-ng base pitch (0-100)."""
    lead_silence: tuple[float, float] = (0.0, 0.7)
    """Silence before the speech (s)."""
    tail_silence: tuple[float, float] = (0.1, 0.9)
    """Silence after the speech (s)."""
    augment: bool = True
    """Apply augmentations (else the stored audio is the clean audio)."""
    augment_config: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    """Probabilities and ranges of the augmentations."""

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class ItemMaker:
    """Makes items in one process (holds the piper voice and the espeak engine, loaded lazily)."""

    def __init__(self, config: BuildConfig, use_espeak: bool = True) -> None:
        self.config = config
        self.sentences = SentenceGenerator()
        self.augmenter = Augmenter(config.augment_config, SAMPLE_RATE)
        self._piper: PiperTTS | None = None
        self._espeak: Espeak | None = None
        self.use_espeak = use_espeak
        if use_espeak:
            from training.motion.espeak import EspeakUnavailable, espeak_available

            if not espeak_available():
                print("warning: libespeak-ng not found: espeak voices skipped", file=sys.stderr)
                self.use_espeak = False
            else:
                try:
                    self._espeak_engine()
                except EspeakUnavailable as e:
                    print(f"warning: {e}: espeak voices skipped", file=sys.stderr)
                    self.use_espeak = False

    def _espeak_engine(self) -> Espeak:
        if self._espeak is None:
            from training.motion.espeak import Espeak

            self._espeak = Espeak()
        return self._espeak

    def _piper_tts(self) -> PiperTTS:
        if self._piper is None:
            from vlogger.engines.tts import PiperTTS, TTSConfig

            self._piper = PiperTTS(TTSConfig(threads=1))
        return self._piper

    # -- voices -------------------------------------------------------------------------------

    def _speak_piper(self, text: str, rng: np.random.Generator) -> tuple[np.ndarray, int, list, dict]:
        c = self.config
        tts = self._piper_tts()
        params = {
            "length_scale": round(float(rng.uniform(*c.length_scale)), 3),
            "noise_scale": round(float(rng.uniform(*c.noise_scale)), 3),
            "noise_w_scale": round(float(rng.uniform(*c.noise_w_scale)), 3),
            "sentence_silence": round(float(rng.uniform(*c.sentence_silence)), 3),
        }
        tts.config = dataclasses.replace(tts.config, **params)
        chunks = list(tts.synthesize(text, 0.0))
        pcm = np.concatenate([ch.pcm for ch in chunks]).astype(np.float32)
        phonemes = [p for ch in chunks for p in ch.phonemes]
        return pcm, tts.sample_rate, phonemes, {"voice": "piper", **params}

    def _speak_espeak(self, text: str, rng: np.random.Generator) -> tuple[np.ndarray, int, list, dict]:
        from training.motion.espeak import ENGLISH_VOICES, VARIANTS

        c = self.config
        eng = self._espeak_engine()
        voice = ENGLISH_VOICES[int(rng.integers(len(ENGLISH_VOICES)))]
        voice += VARIANTS[int(rng.integers(len(VARIANTS)))]
        params = {
            "rate": int(rng.integers(c.espeak_rate[0], c.espeak_rate[1] + 1)),
            "pitch": int(rng.integers(c.espeak_pitch[0], c.espeak_pitch[1] + 1)),
            "pitch_range": int(rng.integers(20, 90)),
        }
        u = eng.synthesize(text, voice, params["rate"], params["pitch"], params["pitch_range"])
        # espeak speaks quieter than piper's peak-normalised output: normalise the peak.
        peak = float(np.max(np.abs(u.pcm))) if u.pcm.size else 0.0
        pcm = u.pcm * (float(rng.uniform(0.6, 0.95)) / peak) if peak > 0 else u.pcm
        return pcm.astype(np.float32), u.sample_rate, u.phonemes, {"voice": f"espeak:{voice}", **params}

    # -- items --------------------------------------------------------------------------------

    def make(self, index: int, babble: list[np.ndarray] | None = None) -> tuple[CorpusItem, np.ndarray]:
        """Item ``index`` and its clean 16 kHz audio (for babble of later items)."""
        from vlogger.engines.motion.teacher import generate_motion

        c = self.config
        rng = np.random.default_rng([c.seed, index, 17])
        teacher_seed = int(rng.integers(0, 2**31 - 1))
        r = rng.random()
        info: dict = {}
        if r < c.idle_share:
            rate = 22_050
            n = int(rng.uniform(2.0, 8.0) * rate)
            level = 10.0 ** (float(rng.uniform(-75, -45)) / 20.0)
            pcm = (level * rng.standard_normal(n)).astype(np.float32)
            phonemes: list[PhonemeTiming] = []
            text, source = "", "idle"
            info = {"voice": "idle", "level_db": round(20 * math.log10(level), 1)}
        else:
            text = self.sentences.utterance(rng, c.max_sentences)
            if self.use_espeak and rng.random() < c.espeak_share:
                pcm, rate, phonemes, info = self._speak_espeak(text, rng)
            else:
                pcm, rate, phonemes, info = self._speak_piper(text, rng)
            source = info["voice"]
            lead = float(rng.uniform(*c.lead_silence))
            tail = float(rng.uniform(*c.tail_silence))
            n_lead, n_tail = round(lead * rate), round(tail * rate)
            pcm = np.concatenate([np.zeros(n_lead, np.float32), pcm, np.zeros(n_tail, np.float32)])
            shift = n_lead / rate
            phonemes = [
                PhonemeTiming(p.phoneme, p.start + shift, p.end + shift, p.alphabet) for p in phonemes
            ]
        steps: list[dict] = []
        if c.augment:
            tstep = self.augmenter.plan_time(rng)
            if tstep is not None:
                n0 = pcm.shape[0]
                pcm = self.augmenter.apply_time(pcm, tstep, rate)
                k = pcm.shape[0] / max(n0, 1)
                phonemes = [PhonemeTiming(p.phoneme, p.start * k, p.end * k, p.alphabet) for p in phonemes]
                steps.append(tstep)
        audio = resample(pcm, rate, SAMPLE_RATE)
        n_frames = frames_for_samples(audio.shape[0])
        chunk = AudioChunk(pcm=pcm, sample_rate=rate, pts=0.0, phonemes=phonemes, text=text)
        frames = generate_motion([chunk], n_frames=n_frames, fps=FPS, seed=teacher_seed)
        motion = motion_from_frames(frames)
        clean = audio
        if c.augment:
            post = self.augmenter.plan(rng)
            audio = self.augmenter.apply(audio, post, rng, babble or [])
            steps.extend(post)
        item = CorpusItem(
            audio16k=audio,
            motion=motion,
            source=source,
            text=text,
            weight=1.0,
            target_mask=np.ones(MOTION_DIM, np.float32),
            has_face=False,
            augment=json.dumps([{**info, "op": "voice", "teacher_seed": teacher_seed}, *steps]),
        )
        return item, clean


def _build_shard(out: str, shard: int, config: BuildConfig, use_espeak: bool) -> dict:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    maker = ItemMaker(config, use_espeak=use_espeak)
    lo = shard * config.shard_size
    hi = min(config.items, lo + config.shard_size)
    items: list[CorpusItem] = []
    pool: list[np.ndarray] = []
    for i in range(lo, hi):
        rng = np.random.default_rng([config.seed, i, 99])
        k = min(len(pool), int(rng.integers(3, 6)))
        babble = [pool[j] for j in rng.choice(len(pool), k, replace=False)] if k else []
        item, clean = maker.make(i, babble)
        items.append(item)
        if item.source != "idle":
            pool.append(clean)
            pool = pool[-12:]
    path = shard_path(out, shard)
    write_shard(path, items)
    sources: dict[str, int] = {}
    for it in items:
        key = it.source.split(":")[0]
        sources[key] = sources.get(key, 0) + 1
    return {
        "file": path.name,
        "index": shard,
        "items": len(items),
        "seconds_audio": round(sum(it.duration for it in items), 2),
        "frames": int(sum(it.n_frames for it in items)),
        "sources": sources,
        "build_seconds": round(time.perf_counter() - t0, 1),
        "augment": [json.loads(it.augment) for it in items],
    }


def build(out: str | Path, config: BuildConfig, workers: int = 2, use_espeak: bool = True) -> dict:
    """Build (or finish) the corpus in ``out``; returns the manifest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if use_espeak:
        from training.motion.espeak import espeak_available

        if not espeak_available():
            print("warning: libespeak-ng not found: espeak voices skipped", file=sys.stderr)
            use_espeak = False
    n_shards = math.ceil(config.items / config.shard_size)
    old = read_manifest(out)
    if old and old.get("config", {}).get("seed") not in (None, config.seed):
        raise SystemExit(f"{out} holds a corpus built with another seed; use a new folder")
    done = {s["file"]: s for s in old.get("shards", [])}
    # A shard file without a manifest entry (killed between the two writes) is rebuilt.
    todo = [
        s for s in range(n_shards) if not shard_path(out, s).exists() or shard_path(out, s).name not in done
    ]
    manifest = {
        "version": CORPUS_VERSION,
        "kind": "synthetic",
        "fps": FPS,
        "sample_rate": SAMPLE_RATE,
        "motion_dim": MOTION_DIM,
        "motion_layout": "15 expression (EXPRESSION_NAMES) + 9 head (6D rotation + translation) "
        "+ 150 body (75x2)",
        "espeak": use_espeak,
        "config": config.to_json(),
        "shards": [done[k] for k in sorted(done) if int(k[6:11]) < n_shards],
    }
    print(f"{n_shards - len(todo)} of {n_shards} shards already built; building {len(todo)}", flush=True)
    t0 = time.perf_counter()
    n_items = 0

    def record(entry: dict) -> None:
        nonlocal n_items
        manifest["shards"] = sorted(
            [s for s in manifest["shards"] if s["file"] != entry["file"]] + [entry], key=lambda s: s["file"]
        )
        _summarise(manifest)
        write_manifest(out, manifest)
        n_items += entry["items"]
        el = time.perf_counter() - t0
        print(
            f"shard {entry['index']:5d}: {entry['items']} items, "
            f"{entry['seconds_audio'] / 60:.1f} min audio, "
            f"{entry['build_seconds']:.0f} s | {len(manifest['shards'])}/{n_shards} shards, "
            f"{60 * n_items / max(el, 1e-9):.0f} items/min",
            flush=True,
        )

    if workers <= 1 or len(todo) <= 1:
        for s in todo:
            record(_build_shard(str(out), s, config, use_espeak))
    else:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            futs = [ex.submit(_build_shard, str(out), s, config, use_espeak) for s in todo]
            for f in as_completed(futs):
                record(f.result())
    _summarise(manifest)
    manifest["build_wall_seconds_last_run"] = round(time.perf_counter() - t0, 1)
    write_manifest(out, manifest)
    return manifest


def _summarise(manifest: dict) -> None:
    shards = manifest["shards"]
    manifest["items"] = int(sum(s["items"] for s in shards))
    manifest["hours_audio"] = round(sum(s["seconds_audio"] for s in shards) / 3600.0, 3)
    manifest["frames"] = int(sum(s["frames"] for s in shards))
    src: dict[str, int] = {}
    for s in shards:
        for k, v in s["sources"].items():
            src[k] = src.get(k, 0) + v
    manifest["sources"] = src


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build the synthetic motion corpus (resumable).")
    ap.add_argument("--out", type=Path, default=Path("training/data/synth"), help="corpus folder")
    ap.add_argument("--items", type=int, default=2000, help="number of items")
    ap.add_argument("--shard-size", type=int, default=100, help="items per shard")
    ap.add_argument("--workers", type=int, default=2, help="worker processes")
    ap.add_argument("--seed", type=int, default=0, help="base seed")
    ap.add_argument("--espeak-share", type=float, default=0.4, help="share of espeak-ng items")
    ap.add_argument("--no-espeak", action="store_true", help="piper only")
    ap.add_argument("--no-augment", action="store_true", help="store the clean audio")
    args = ap.parse_args(argv)
    cfg = BuildConfig(
        items=args.items,
        shard_size=args.shard_size,
        seed=args.seed,
        espeak_share=args.espeak_share,
        augment=not args.no_augment,
    )
    t0 = time.perf_counter()
    m = build(args.out, cfg, workers=args.workers, use_espeak=not args.no_espeak)
    size = sum(p.stat().st_size for p in Path(args.out).glob("shard-*.npz"))
    print(
        f"corpus {args.out}: {m['items']} items, {m['hours_audio']:.2f} h audio, {m['frames']} frames, "
        f"{size / 1e6:.0f} MB, sources {m['sources']}, {time.perf_counter() - t0:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
