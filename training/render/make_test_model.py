"""Make the shipped test renderer: tiny model, generated frames of the default portrait only.

    python -m training.render.make_test_model [--teacher-steps 1500] [--distill-steps 600]

1. build shards of the public-domain default portrait posed by the rig with random smooth motion
   and drawn by the warp renderer (4 x 400 train frames, 120 held-out frames with another seed);
2. train the ``tiny`` teacher (32 px, 68k parameters) on them; 3. distill it to 4, 2 and 1 steps
   (progressive distillation with the reconstruction term, ``data_weight`` 0.5);
4. export the teacher and the students with their metadata to
   ``engines/render/diffusion/assets/``: ``test_renderer.onnx`` (1 step, the default),
   ``test_renderer_2step.onnx``, ``test_renderer_4step.onnx`` and ``test_renderer_teacher.onnx``.

About 10 minutes on one CPU core. The result reproduces the warp renderer's look at 32 px inside
the face crop: it exists so the diffusion path runs end to end in CI, not for quality.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.render.dataset import build_generated
from training.render.distill import distill
from training.render.export import export_checkpoint
from training.render.train import train

ASSETS = Path(__file__).resolve().parents[2] / "engines" / "render" / "diffusion" / "assets"
LABEL = "TEST MODEL (tiny, 32 px): trained only on generated warp-renderer frames of the default portrait"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("training/data/render_gen32"))
    ap.add_argument("--runs", type=Path, default=Path("training/runs/render"))
    ap.add_argument("--teacher-steps", type=int, default=1500)
    ap.add_argument("--distill-steps", type=int, default=600)
    ap.add_argument("--data-weight", type=float, default=0.5)
    a = ap.parse_args(argv)
    if not any(a.data.glob("*.npz")):
        for seed in range(4):
            build_generated(a.data, frames=400, size=32, seed=seed)
        build_generated(a.data, frames=120, size=32, seed=100, split="test")
    ckpt = train([a.data], a.runs / "gen_teacher", "tiny", a.teacher_steps, resume=True)
    students = distill(
        ckpt, a.runs / "gen_distill", (4, 2, 1), a.distill_steps, data_weight=a.data_weight, resume=True
    )
    on = "generated frames of the default portrait (public domain), warp renderer targets"
    ASSETS.mkdir(parents=True, exist_ok=True)
    export_checkpoint(ckpt, ASSETS / "test_renderer_teacher.onnx", LABEL + " [teacher]", on)
    for k, path in students.items():
        name = "test_renderer.onnx" if k == 1 else f"test_renderer_{k}step.onnx"
        export_checkpoint(path, ASSETS / name, LABEL + f" [{k}-step student]", on)
    print(f"wrote the teacher and the {sorted(students)}-step students to {ASSETS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
