"""Train the renderer teacher (noise prediction, cosine schedule) on dataset shards.

    python -m training.render.train --data training/data/render_gen --size tiny --steps 2000 \
        --out training/runs/render/teacher

Checkpoints (``last.pt``, every ``--save-every`` steps; ``--resume`` continues), a loss-curve PNG
and a sample grid PNG (rows: target, warp partial view, generated) go to ``--out``. The windows
mix 0, N/2 and N-1 known frames so one model serves the first window, the 50% outpainting and
the causal streaming mode. ``--freeze-base`` trains only the ControlNet branch (a pretrained base).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from training.render.common import (
    Windows,
    full_control,
    load_checkpoint,
    sample_window,
    save_checkpoint,
    torch_alpha_bar,
)
from training.render.dataset import load_shards
from training.render.model import TemporalUNet, model_config
from training.render.plots import loss_png, sample_grid

__all__ = ["diffusion_loss", "main", "train"]


def diffusion_loss(
    model: TemporalUNet, batch, ab: torch.Tensor, t_max: int, gen: torch.Generator
) -> torch.Tensor:
    """Noise-prediction MSE on the unknown frames of a window batch."""
    bs = batch.x0.shape[0]
    dev = batch.x0.device
    t = torch.randint(1, t_max + 1, (bs,), generator=gen).to(dev)
    a = ab.to(dev)[t].view(bs, 1, 1, 1, 1)
    noise = torch.randn(batch.x0.shape, generator=gen).to(dev)
    xt = a.sqrt() * batch.x0 + (1 - a).sqrt() * noise
    eps = model(xt, t.float(), batch.ref, full_control(batch))
    k = batch.known
    return F.mse_loss(eps[:, k:], noise[:, k:])


def train(
    data: list[Path],
    out: Path,
    size: str = "tiny",
    steps: int = 2000,
    batch: int = 4,
    lr: float = 2e-3,
    window: int = 8,
    start: float = 0.8,
    resume: bool = False,
    freeze_base: bool = False,
    save_every: int = 250,
    seed: int = 0,
    device: str = "cpu",
    max_minutes: float | None = None,
) -> Path:
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    shards = [p for d in data for p in (sorted(d.glob("*.npz")) if d.is_dir() else [d])]
    train_w = Windows(load_shards(shards, "train"), window, seed)
    test_shards = load_shards(shards, "test")
    ckpt = out / "last.pt"
    if resume and ckpt.is_file():
        model, ck = load_checkpoint(ckpt)
        first, losses = int(ck["step"]), list(ck["losses"])
    else:
        model = TemporalUNet(model_config(size))
        model.copy_base_to_control()
        first, losses, ck = 0, [], None
    model.to(device)
    params = [
        p
        for p in model.parameters()
        if not freeze_base or id(p) not in {id(q) for q in model.base_parameters()}
    ]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    if ck is not None and ck.get("opt"):
        opt.load_state_dict(ck["opt"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * max(0.1, 1 - s / max(steps, 1))
    )
    for _ in range(first):
        sched.step()
    ab = torch_alpha_bar()
    t_max = round(start * 1000)
    gen = torch.Generator().manual_seed(seed + first)
    t0 = time.perf_counter()
    model.train()
    for step in range(first, steps):
        loss = diffusion_loss(model, train_w.batch(batch).to(device), ab, t_max, gen)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss))
        if (step + 1) % 50 == 0:
            rate = (step + 1 - first) / (time.perf_counter() - t0)
            print(
                f"step {step + 1}/{steps} loss {np.mean(losses[-50:]):.4f} ({rate:.1f} steps/s)",
                file=sys.stderr,
            )
        out_of_time = max_minutes is not None and time.perf_counter() - t0 > 60.0 * max_minutes
        if (step + 1) % save_every == 0 or step + 1 == steps or out_of_time:
            save_checkpoint(
                ckpt,
                model,
                opt,
                step + 1,
                losses,
                {"start": start, "window": window, "data": [str(d) for d in data]},
            )
        if out_of_time:
            print(f"stopped at step {step + 1}: --max-minutes {max_minutes} reached", file=sys.stderr)
            break
    model.eval().cpu()
    loss_png(out / "loss.png", losses, "teacher noise-prediction loss")
    held = Windows(test_shards, window, seed) if test_shards else train_w
    x, c, r = held.get(0, 0)
    gen_x = sample_window(model, c, r, None, 8, t_max)
    sample_grid(out / "samples.png", [x, c[:, -3:], gen_x], ["target", "warp partial view", "teacher DDIM 8"])
    return ckpt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, nargs="+", required=True, help="shard folders or files")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", default="tiny", help="model size: tiny, small, base, large")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=4, help="windows per batch")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument(
        "--start", type=float, default=0.8, help="highest noise level trained and sampled (share of 1000)"
    )
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--freeze-base", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")
    ap.add_argument(
        "--max-minutes", type=float, default=None, help="stop (and save) after this much wall time"
    )
    a = ap.parse_args(argv)
    train(
        a.data,
        a.out,
        a.size,
        a.steps,
        a.batch,
        a.lr,
        a.window,
        a.start,
        a.resume,
        a.freeze_base,
        seed=a.seed,
        device=a.device,
        max_minutes=a.max_minutes,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
