"""Progressive distillation (Salimans & Ho 2022) of the renderer teacher to 4, 2 and 1 steps.

    python -m training.render.distill --teacher training/runs/render/teacher/last.pt \
        --out training/runs/render/distill --rounds 4 2 1 --steps 1500 --data-weight 0.75

Each round trains a student (initialised from its teacher) so that ONE deterministic DDIM step of
the student matches TWO DDIM steps of the teacher, on exactly the timesteps the student's sampler
will use (``k`` evenly spaced steps from the start level). Known frames are handled as in
sampling (mask channel + replacement). The loss is on the x0 implied by the student's noise
prediction, weighted by max(SNR, 1): ``(1 - data_weight)`` times the distance to the teacher's
two-step target plus ``data_weight`` times the distance to the real frame (a reconstruction
term: the student then also corrects its teacher instead of only copying it; 0 = pure
progressive distillation). The learning rate decays on a cosine to 10% within each round. Each
round writes ``student{k}.pt``, a loss PNG and a grid.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

from training.render.common import (
    Windows,
    full_control,
    load_checkpoint,
    sample_window,
    save_checkpoint,
    torch_alpha_bar,
)
from training.render.dataset import load_shards
from training.render.model import TemporalUNet
from training.render.plots import loss_png, sample_grid
from vlogger.engines.diffusion import DDIMScheduler

__all__ = ["distill", "main", "schedule"]


def schedule(steps: int, start: int) -> list[int]:
    """The runtime scheduler's timesteps (``DDIMScheduler.set_timesteps``), plus the final 0."""
    return [*DDIMScheduler(1000).set_timesteps(steps, start), 0]


def _x0(model: TemporalUNet, z, t, ref, control, ab):
    a = ab[t].view(-1, 1, 1, 1, 1)
    eps = model(z, t.float(), ref, control)
    return ((z - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)


def _ddim(z, x0, t, t_next, ab):
    a, an = ab[t].view(-1, 1, 1, 1, 1), ab[t_next].view(-1, 1, 1, 1, 1)
    eps = (z - a.sqrt() * x0) / (1 - a).sqrt()
    return an.sqrt() * x0 + (1 - an).sqrt() * eps


def distill_round(
    teacher: TemporalUNet,
    windows: Windows,
    k: int,
    start: int,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    data_weight: float = 0.75,
    device: str = "cpu",
):
    """Train a k-step student from a 2k-step teacher; returns (student, losses)."""
    teacher.to(device).eval()
    student = copy.deepcopy(teacher).train()
    ab = torch_alpha_bar().to(device)
    s_sched, t_sched = schedule(k, start), schedule(2 * k, start)
    opt = torch.optim.AdamW(student.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.1 + 0.45 * (1 + np.cos(np.pi * min(s, steps) / max(steps, 1)))
    )
    gen = torch.Generator().manual_seed(seed)
    losses = []
    t0 = time.perf_counter()
    for step in range(steps):
        b = windows.batch(batch).to(device)
        bs = b.x0.shape[0]
        i = int(torch.randint(0, k, (1,), generator=gen))
        t = torch.full((bs,), s_sched[i], dtype=torch.long, device=device)
        tm = torch.full((bs,), t_sched[2 * i + 1], dtype=torch.long, device=device)
        tn = torch.full((bs,), s_sched[i + 1], dtype=torch.long, device=device)
        noise = torch.randn(b.x0.shape, generator=gen).to(device)
        a = ab[t].view(-1, 1, 1, 1, 1)
        # sampling starts from the noised partial view at the first step, from a noised target after
        x_start = b.controls[:, :, -3:] if i == 0 else b.x0
        if b.known:
            x_start = x_start.clone()
            x_start[:, : b.known] = b.x0[:, : b.known]
        z = a.sqrt() * x_start + (1 - a).sqrt() * noise
        ctrl = full_control(b)
        kk = b.known
        with torch.no_grad():
            x1 = _x0(teacher, z, t, b.ref, ctrl, ab)
            zm = _ddim(z, x1, t, tm, ab)
            if kk:
                am = ab[tm].view(-1, 1, 1, 1, 1)
                zm[:, :kk] = am.sqrt() * b.x0[:, :kk] + (1 - am).sqrt() * noise[:, :kk]
            x2 = _x0(teacher, zm, tm, b.ref, ctrl, ab)
            zn = _ddim(zm, x2, tm, tn, ab)
            an = ab[tn].view(-1, 1, 1, 1, 1)
            ratio = (1 - an).sqrt() / (1 - a).sqrt()
            target = (zn - ratio * z) / (an.sqrt() - ratio * a.sqrt())
        xs = _x0(student, z, t, b.ref, ctrl, ab)
        w = (a / (1 - a)).clamp(min=1.0)
        err = (1 - data_weight) * (xs - target.clamp(-1, 1)) ** 2 + data_weight * (xs - b.x0) ** 2
        loss = (w * err)[:, kk:].mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 50 == 0:
            rate = (step + 1) / (time.perf_counter() - t0)
            print(
                f"[{k} steps] {step + 1}/{steps} loss {np.mean(losses[-50:]):.4f} ({rate:.1f}/s)",
                file=sys.stderr,
            )
    teacher.cpu()
    return student.eval().cpu(), losses


def distill(
    teacher_ckpt: Path,
    out: Path,
    rounds: tuple[int, ...] = (4, 2, 1),
    steps: int = 1500,
    batch: int = 4,
    lr: float = 5e-4,
    seed: int = 0,
    data_weight: float = 0.75,
    resume: bool = False,
    device: str = "cpu",
) -> dict[int, Path]:
    """Run the rounds in order, each student teaching the next; with ``resume`` a round whose
    ``student{k}.pt`` already exists (same steps and data weight) is loaded instead of retrained."""
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    teacher, ck = load_checkpoint(teacher_ckpt)
    start = round(float(ck.get("start", 0.8)) * 1000)
    window = int(ck.get("window", 8))
    data = [Path(d) for d in ck["data"]]
    shards = [p for d in data for p in (sorted(d.glob("*.npz")) if d.is_dir() else [d])]
    windows = Windows(load_shards(shards, "train"), window, seed)
    held = Windows(load_shards(shards, "test") or load_shards(shards, "train"), window, seed)
    x, c, r = held.get(0, 0)
    paths = {}
    for k in rounds:
        path = out / f"student{k}.pt"
        if resume and path.is_file():
            done, dck = load_checkpoint(path)
            if (dck.get("distilled_steps"), dck.get("step"), dck.get("data_weight")) == (
                k,
                steps,
                data_weight,
            ):
                print(f"[{k} steps] done before, resuming from {path}", file=sys.stderr)
                paths[k], teacher = path, done.eval()
                continue
        student, losses = distill_round(
            teacher, windows, k, start, steps, batch, lr, seed + k, data_weight, device=device
        )
        save_checkpoint(
            path,
            student,
            None,
            steps,
            losses,
            {
                "start": ck.get("start", 0.8),
                "window": window,
                "data": ck["data"],
                "distilled_steps": k,
                "data_weight": data_weight,
            },
        )
        loss_png(out / f"loss_student{k}.png", losses, f"progressive distillation to {k} steps")
        rows = [
            x,
            c[:, -3:],
            sample_window(teacher, c, r, None, k, start),
            sample_window(student, c, r, None, k, start),
        ]
        sample_grid(
            out / f"samples_student{k}.png",
            rows,
            ["target", "warp", f"teacher {k} steps", f"student {k} steps"],
        )
        paths[k] = path
        teacher = student
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rounds", type=int, nargs="+", default=[4, 2, 1])
    ap.add_argument("--steps", type=int, default=1500, help="training steps per round")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument(
        "--data-weight", type=float, default=0.75, help="share of the loss on the real frame (0 = pure)"
    )
    ap.add_argument("--resume", action="store_true", help="skip rounds whose student is already saved")
    ap.add_argument("--device", default="cpu", help="torch device: cpu, cuda, ...")
    a = ap.parse_args(argv)
    distill(
        a.teacher,
        a.out,
        tuple(a.rounds),
        a.steps,
        a.batch,
        a.lr,
        data_weight=a.data_weight,
        resume=a.resume,
        device=a.device,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
