"""Train the motion network: clean past, noisy current frame, x0 prediction, temporal loss, CFG dropout.

    python -m training.motion.train --corpus training/data/dev --out training/runs/base --steps 3000
    python -m training.motion.train --corpus training/data/clips --init training/runs/base/last.pt \
        --out training/runs/ft --steps 300 --lr 1e-4 --mix training/data/dev

Every ``--ckpt-every`` steps ``last.pt`` (model, optimiser, step, normalisation, configs) is
written; running the same command again resumes from it. ``loss.png`` and ``log.jsonl`` hold the
loss curve. Threads are pinned with ``--threads`` (2 on this machine).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from training.corpus import Corpus, CorpusItem
from training.motion.model import ModelConfig, MotionTransformer
from vlogger.engines.motion.features import FeatureConfig, feature_dim, mel_filterbank, offline_features

__all__ = ["Batcher", "TrainConfig", "load_items", "loss_weights", "prepare_real", "train"]


@dataclass
class TrainConfig:
    """Training settings."""

    steps: int = 1500
    """Optimiser steps."""
    batch: int = 12
    """Sequences per step."""
    seq_len: int = 64
    """Frames per training sequence (every frame is a noisy example against its clean past)."""
    lr: float = 4e-4
    """Peak learning rate (AdamW, linear warm-up then cosine decay)."""
    warmup: int = 150
    """Warm-up steps."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    audio_drop: float = 0.2
    """Probability that a sequence's audio is dropped (classifier-free guidance)."""
    vel_weight: float = 1.0
    """Weight of the temporal loss (prediction minus the clean previous frame vs the target's)."""
    part_weights: dict = field(
        default_factory=lambda: {"mouth": 1.0, "eyes": 0.5, "brow": 0.5, "head": 1.0, "body": 0.3}
    )
    """x0 loss weight per part."""
    part_vel_weights: dict = field(
        default_factory=lambda: {"mouth": 1.0, "eyes": 0.5, "brow": 0.5, "head": 4.0, "body": 2.0}
    )
    """Temporal loss weight per part (smooth head, lively mouth)."""
    skip_first: int = 8
    """Frames at the start of a crop that are not scored (they miss their past), unless the crop
    starts the item."""
    augment: bool = True
    """Feature-space augmentation of log-mel (gain, noise floor, band limit)."""
    threads: int = 2
    """torch CPU threads."""
    seed: int = 0
    """Random seed."""
    ckpt_every: int = 250
    """Steps between checkpoints."""
    smooth_real: float = 0.0
    """Gaussian smoothing (sigma in frames) of the expression and head targets of the real clips
    (``clip:*`` items), whose landmark-fitted targets carry FaceMesh tracking noise; 0 = off."""
    real_weight: float = 1.0
    """Multiplier on the stored weight of the real clips' items."""
    center_real: bool = False
    """Move each real clip's expression and head targets onto the training data's mean (removes the
    person's resting face and the camera's head offset; keeps the clip's motion)."""
    real_clip_z: float = 0.0
    """Clip the real clips' targets to +-this many (training) standard deviations from the mean
    (0 = off): the landmark fits put large, audio-unrelated swings into channels the synthetic
    speech barely uses (smiles, lip raisers), which would otherwise swamp the fine-tuning loss."""
    real_mouth_only: bool = False
    """Supervise only the mouth channels (expression 0..8) of the real clips: their landmark fits
    of brows, eyes and head then do not enter the loss (the synthetic items keep every channel)."""
    weighted_loss: bool = True
    """Item weights scale the loss as well as the sampling; False: they only set how often an item
    is sampled (every sampled sequence then counts the same in the loss)."""


def loss_weights(parts: dict) -> np.ndarray:
    """(174,) weights from per-part weights (mouth = expr 0..8, eyes = blink + gaze, brows)."""
    w = np.zeros(174, np.float32)
    w[0:9] = parts["mouth"]
    w[[9, 10, 13, 14]] = parts["eyes"]
    w[[11, 12]] = parts["brow"]
    w[15:24] = parts["head"]
    w[24:] = parts["body"]
    return w


def load_items(paths: list[str], exclude: tuple[str, ...] = (), limit: int | None = None) -> list[CorpusItem]:
    """Items of the corpora (the first ``limit`` of each), minus those whose source is in
    ``exclude`` (e.g. ``clip:eu_f4``)."""
    items: list[CorpusItem] = []
    for p in paths:
        c = Corpus(p)
        n = len(c) if limit is None else min(limit, len(c))
        items.extend(it for it in (c[i] for i in range(n)) if it.source not in exclude)
    return items


def prepare_real(items: list[CorpusItem], cfg: TrainConfig, mean: np.ndarray, std: np.ndarray) -> None:
    """The real clips' items in place: reweighted (``cfg.real_weight``), smoothed
    (``cfg.smooth_real``), centred (``cfg.center_real``) and clipped (``cfg.real_clip_z``) in their
    expression and head channels (0..23); ``mean``/``std`` are the training normalisation."""
    from scipy.ndimage import gaussian_filter1d

    for it in items:
        if not it.source.startswith("clip:"):
            continue
        it.weight = float(it.weight) * cfg.real_weight
        m = it.motion.astype(np.float32).copy()
        if cfg.smooth_real > 0:
            m[:, :24] = gaussian_filter1d(m[:, :24], cfg.smooth_real, axis=0, mode="nearest")
        if cfg.center_real:
            m[:, :24] += mean[:24] - m[:, :24].mean(0)
        if cfg.real_clip_z > 0:
            lim = cfg.real_clip_z * std[:24]
            m[:, :24] = np.clip(m[:, :24], mean[:24] - lim, mean[:24] + lim)
        it.motion = m
        if cfg.real_mouth_only:
            mask = np.zeros_like(np.asarray(it.target_mask, np.float32))
            mask[..., :9] = np.asarray(it.target_mask, np.float32)[..., :9]
            it.target_mask = mask


def _features_job(args: tuple) -> list[np.ndarray]:
    audios, frames, fdict = args
    fcfg = FeatureConfig(**fdict)
    return [offline_features(a, n, fcfg, batch=8) for a, n in zip(audios, frames, strict=True)]


def compute_features(
    items: list[CorpusItem], fcfg: FeatureConfig, workers: int = 2, cache: Path | None = None
) -> list[np.ndarray]:
    """Per-item features; Whisper in ``workers`` processes; cached in ``cache`` (an .npz keyed by
    the feature config and the items' lengths) when given."""
    import hashlib
    from concurrent.futures import ProcessPoolExecutor

    key = hashlib.sha1(
        json.dumps([asdict(fcfg), [len(it.audio16k) for it in items], [it.source for it in items]]).encode()
    ).hexdigest()[:16]
    path = cache / f"features-{fcfg.kind}-{key}.npz" if cache else None
    if path is not None and path.exists():
        with np.load(path) as z:
            off, allf = z["offsets"], z["feats"]  # read once (each z[...] re-reads the file)
        return [allf[off[i] : off[i + 1]] for i in range(len(items))]
    if fcfg.kind == "mel" or workers <= 1:
        feats = [offline_features(it.audio16k, it.n_frames, fcfg) for it in items]
    else:
        k = max(1, len(items) // (workers * 8))
        jobs = [
            (
                [it.audio16k for it in items[i : i + k]],
                [it.n_frames for it in items[i : i + k]],
                {**asdict(fcfg), "threads": 1},
            )
            for i in range(0, len(items), k)
        ]
        feats = []
        with ProcessPoolExecutor(workers) as ex:
            for j, part in enumerate(ex.map(_features_job, jobs)):
                feats.extend(part)
                print(f"features {min(len(items), (j + 1) * k)}/{len(items)}", flush=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        off = np.cumsum([0] + [len(f) for f in feats])
        np.savez(path, feats=np.concatenate(feats).astype(np.float32), offsets=off)
    return feats


def motion_stats(items: list[CorpusItem]) -> tuple[np.ndarray, np.ndarray]:
    """Per-dim mean and std over supervised frames (std floored; constant dims get std 1)."""
    s = np.zeros(174)
    s2 = np.zeros(174)
    n = np.zeros(174)
    for it in items:
        m = it.motion.astype(np.float64)
        k = it.target_mask.astype(np.float64)
        s += m.sum(0) * k
        s2 += (m * m).sum(0) * k
        n += len(m) * k
    n = np.maximum(n, 1)
    mean = s / n
    std = np.sqrt(np.maximum(s2 / n - mean**2, 0))
    std = np.where(std < 1e-6, 1.0, np.maximum(std, 1e-4))
    return mean.astype(np.float32), std.astype(np.float32)


class Batcher:
    """Random crops of (features, normalised motion, mask, weight) from items."""

    def __init__(
        self,
        items: list[CorpusItem],
        fcfg: FeatureConfig,
        mean: np.ndarray,
        std: np.ndarray,
        seq_len: int,
        augment: bool,
        seed: int,
        skip_first: int = 8,
        feats: list[np.ndarray] | None = None,
    ) -> None:
        self.items = items
        self.fcfg = fcfg
        self.seq_len = seq_len
        self.augment = augment and fcfg.kind == "mel"
        self.rng = np.random.default_rng(seed)
        self.skip_first = skip_first
        t0 = time.perf_counter()
        self.feats = feats if feats is not None else compute_features(items, fcfg)
        print(f"features of {len(items)} items in {time.perf_counter() - t0:.1f} s", flush=True)
        self.motion = [((it.motion - mean) / std).astype(np.float32) for it in items]
        w = np.array([it.weight * max(it.n_frames, 1) for it in items], np.float64)
        self.p = w / w.sum()
        fb = mel_filterbank(fcfg.n_mels, 512, 16000, fcfg.fmin, fcfg.fmax)
        self.band_hz = (fb * np.linspace(0, 8000, 257)[None]).sum(1) / np.maximum(fb.sum(1), 1e-9)

    def _augment(self, f: np.ndarray) -> np.ndarray:
        """Gain, a noise floor and telephone band-limiting applied to log10 mel power."""
        c = self.fcfg
        steps = f.shape[1] // c.n_mels
        x = f.reshape(len(f), steps, c.n_mels).astype(np.float64)
        p = np.maximum(10.0**x - c.log_floor, 0.0)
        r = self.rng
        p *= 10.0 ** r.uniform(-2.0, 0.6)  # gain -20 .. +6 dB
        if r.random() < 0.3:
            p += 10.0 ** r.uniform(-5.5, -2.5) * r.uniform(0.5, 1.5, c.n_mels)
        if r.random() < 0.15:
            cut = r.uniform(3000, 4000)
            p[..., self.band_hz > cut] *= 1e-4
            p[..., self.band_hz < 250] *= 1e-2
        return np.log10(p + c.log_floor).astype(np.float32).reshape(f.shape)

    def batch(self, b: int) -> dict[str, torch.Tensor]:
        n = self.seq_len
        fd = self.feats[0].shape[1]
        feats = np.zeros((b, n, fd), np.float32)
        mot = np.zeros((b, n, 174), np.float32)
        mask = np.zeros((b, n, 174), np.float32)
        wts = np.zeros(b, np.float32)
        for j in range(b):
            k = int(self.rng.choice(len(self.items), p=self.p))
            it = self.items[k]
            total = it.n_frames
            s = int(self.rng.integers(0, max(1, total - n + 1)))
            e = min(total, s + n)
            f = self.feats[k][s:e]
            feats[j, : e - s] = self._augment(f) if self.augment else f
            mot[j, : e - s] = self.motion[k][s:e]
            mask[j, : e - s] = it.target_mask[None]
            if s > 0:
                mask[j, : min(self.skip_first, e - s)] = 0.0
            wts[j] = it.weight
        return {
            "audio": torch.from_numpy(feats),
            "motion": torch.from_numpy(mot),
            "mask": torch.from_numpy(mask),
            "weight": torch.from_numpy(wts),
        }


def compute_loss(
    model: MotionTransformer, batch: dict[str, torch.Tensor], cfg: TrainConfig, gen: torch.Generator
) -> tuple[torch.Tensor, dict[str, float]]:
    x0 = batch["motion"]
    b, n, _ = x0.shape
    t = torch.randint(1, model.cfg.diffusion_steps + 1, (b, n), generator=gen)
    ab = model.alpha_bar[t][..., None]
    noise = torch.randn(x0.shape, generator=gen)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    keep = (torch.rand(b, generator=gen) >= cfg.audio_drop).float()
    pred = model(x0, xt, t, batch["audio"], keep)
    mask = batch["mask"] * batch["weight"][:, None, None] if cfg.weighted_loss else batch["mask"]
    w = torch.from_numpy(loss_weights(cfg.part_weights))
    wv = torch.from_numpy(loss_weights(cfg.part_vel_weights))
    denom = mask.sum() + 1e-6
    l_x0 = (((pred - x0) ** 2) * w * mask).sum() / denom / w.mean()
    # Temporal term: the prediction's step from the clean previous frame vs the target's.
    dp = pred[:, 1:] - x0[:, :-1]
    dt = x0[:, 1:] - x0[:, :-1]
    mv = mask[:, 1:] * (batch["mask"][:, :-1] > 0)
    l_vel = (((dp - dt) ** 2) * wv * mv).sum() / (mv.sum() + 1e-6) / wv.mean()
    loss = l_x0 + cfg.vel_weight * l_vel
    return loss, {"loss": loss.item(), "x0": l_x0.item(), "vel": l_vel.item()}


def _plot(log: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["step"] for r in log])
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for key in ("loss", "x0", "vel"):
        v = np.array([r[key] for r in log])
        k = max(1, len(v) // 50)
        sm = np.convolve(v, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1 :], sm, label=key)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend()
    ax.set_title("motion network training loss")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def train(
    corpora: list[str],
    out: Path,
    cfg: TrainConfig,
    mcfg: ModelConfig | None = None,
    fcfg: FeatureConfig | None = None,
    init: Path | None = None,
    mix: list[str] | None = None,
    mix_weight: float = 1.0,
    items: list[CorpusItem] | None = None,
    exclude: tuple[str, ...] = (),
    limit: int | None = None,
) -> Path:
    """Train (or resume) into ``out``; returns the path of ``last.pt``."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    fcfg = fcfg or FeatureConfig()
    ckpt_path = out / "last.pt"
    state = torch.load(ckpt_path, weights_only=False) if ckpt_path.exists() else None
    base = torch.load(init, weights_only=False) if (init and state is None) else None
    if state is not None:
        fcfg = FeatureConfig(**state["feature_config"])
    elif base is not None:
        fcfg = FeatureConfig(**base["feature_config"])
    if mcfg is None:
        src = state or base
        mcfg = ModelConfig(**src["model_config"]) if src else ModelConfig(audio_dim=feature_dim(fcfg))
    items = list(items) if items is not None else load_items(corpora, exclude, limit)
    cache = Path("training/data/feature_cache")
    feats = compute_features(items, fcfg, cfg.threads, cache)
    if mix:
        extra = load_items(mix, (), limit)
        for it in extra:
            it.weight *= mix_weight
        items += extra
        feats += compute_features(extra, fcfg, cfg.threads, cache)
    if state is not None:
        mean, std = np.asarray(state["mean"]), np.asarray(state["std"])
    elif base is not None:
        mean, std = np.asarray(base["mean"]), np.asarray(base["std"])
    else:
        mean, std = motion_stats(items)
    prepare_real(items, cfg, mean, std)
    model = MotionTransformer(mcfg)
    if base is not None:
        model.load_state_dict(base["model"])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, log = 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, log = state["step"], state["log"]
        print(f"resumed at step {step}", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"{len(items)} items, {sum(i.n_frames for i in items) / 25 / 60:.1f} min, "
        f"{n_params / 1e6:.2f} M params"
    )
    batcher = Batcher(
        items, fcfg, mean, std, cfg.seq_len, cfg.augment, cfg.seed + step, cfg.skip_first, feats
    )
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + step)

    def save() -> None:
        tmp = out / "last.pt.tmp"
        torch.save(
            {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "step": step,
                "log": log,
                "mean": mean,
                "std": std,
                "model_config": asdict(mcfg),
                "feature_config": asdict(fcfg),
                "train_config": asdict(cfg),
                "corpora": corpora,
                "mix": mix,
                "init": str(init),
            },
            tmp,
        )
        tmp.replace(ckpt_path)
        (out / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
        if log:
            _plot(log, out / "loss.png")

    model.train()
    t0 = time.perf_counter()
    first_step = step
    while step < cfg.steps:
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup)
        lr *= 0.5 * (1 + math.cos(math.pi * min(1.0, step / cfg.steps))) * 0.95 + 0.05
        for g in opt.param_groups:
            g["lr"] = lr
        loss, parts = compute_loss(model, batcher.batch(cfg.batch), cfg, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        log.append({"step": step, "lr": lr, **parts})
        if step % 25 == 0 or step == cfg.steps:
            el = time.perf_counter() - t0
            recent = np.mean([r["loss"] for r in log[-25:]])
            print(
                f"step {step}/{cfg.steps} loss {recent:.4f} ({el:.0f} s, "
                f"{el / max(step - first_step, 1):.2f} s/step)",
                flush=True,
            )
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save()
    save()
    return ckpt_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", action="append", required=True, help="corpus folder (repeatable)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=TrainConfig.steps)
    ap.add_argument("--batch", type=int, default=TrainConfig.batch)
    ap.add_argument("--seq-len", type=int, default=TrainConfig.seq_len)
    ap.add_argument("--lr", type=float, default=TrainConfig.lr)
    ap.add_argument("--warmup", type=int, default=TrainConfig.warmup)
    ap.add_argument("--threads", type=int, default=TrainConfig.threads)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--features", choices=["mel", "whisper"], default="mel")
    ap.add_argument("--lookahead", type=int, default=2, help="audio lookahead in frames")
    ap.add_argument("--init", type=Path, default=None, help="start from this checkpoint (fine-tuning)")
    ap.add_argument("--mix", action="append", default=None, help="extra corpus mixed in (fine-tuning)")
    ap.add_argument("--mix-weight", type=float, default=1.0)
    ap.add_argument(
        "--exclude", action="append", default=[], help="leave out items of this source (e.g. clip:eu_f4)"
    )
    ap.add_argument("--ckpt-every", type=int, default=TrainConfig.ckpt_every)
    ap.add_argument("--limit", type=int, default=None, help="use the first N items of each corpus")
    ap.add_argument("--smooth-real", type=float, default=0.0, help="sigma (frames) for the real targets")
    ap.add_argument("--real-weight", type=float, default=1.0, help="weight multiplier of the real clips")
    ap.add_argument("--vel-weight", type=float, default=TrainConfig.vel_weight)
    ap.add_argument("--center-real", action="store_true", help="centre each real clip's targets")
    ap.add_argument("--real-clip-z", type=float, default=0.0, help="clip real targets at +-Z train stds")
    ap.add_argument("--real-mouth-only", action="store_true", help="real clips supervise the mouth only")
    ap.add_argument(
        "--unweighted-loss", action="store_true", help="item weights set sampling only, not the loss"
    )
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    a = ap.parse_args(argv)
    cfg = TrainConfig(
        steps=a.steps,
        batch=a.batch,
        seq_len=a.seq_len,
        lr=a.lr,
        warmup=a.warmup,
        threads=a.threads,
        seed=a.seed,
        ckpt_every=a.ckpt_every,
        smooth_real=a.smooth_real,
        real_weight=a.real_weight,
        vel_weight=a.vel_weight,
        weighted_loss=not a.unweighted_loss,
        center_real=a.center_real,
        real_clip_z=a.real_clip_z,
        real_mouth_only=a.real_mouth_only,
    )
    fcfg = FeatureConfig(kind=a.features, lookahead_frames=a.lookahead)
    mcfg = None if a.init else ModelConfig(audio_dim=feature_dim(fcfg), width=a.width, layers=a.layers)
    train(
        a.corpus,
        a.out,
        cfg,
        mcfg,
        fcfg,
        init=a.init,
        mix=a.mix,
        mix_weight=a.mix_weight,
        exclude=tuple(a.exclude),
        limit=a.limit,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
