"""Export a renderer checkpoint (teacher or distilled student) to ONNX with its metadata.

    python -m training.render.export --checkpoint training/runs/render/distill/student2.pt \
        --onnx renderer.onnx [--label "..."] [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.render.common import load_checkpoint
from vlogger.export.renderer import export_denoiser, parity

__all__ = ["export_checkpoint", "main"]


def export_checkpoint(
    ckpt: Path, onnx: Path, label: str = "", trained_on: str = "", check: bool = True
) -> Path:
    model, ck = load_checkpoint(ckpt)
    k = ck.get("distilled_steps")
    meta = {
        "model": model.cfg.to_dict(),
        "crop": {"mode": "face", "scale": 4.0, "drop": 0.6},
        "sampler": {
            "train_steps": 1000,
            "start": float(ck.get("start", 0.8)),
            "steps": int(k or 4),
            "distilled": k is not None,
            "prediction": "eps",
            "schedule": "cosine",
        },
        "window": int(ck.get("window", 8)),
        "label": label or "renderer model",
        "trained_on": trained_on or ", ".join(ck.get("data", [])),
        "train_steps_done": int(ck.get("step", 0)),
    }
    export_denoiser(model, onnx, meta, frames=meta["window"])
    if check:
        err = parity(model, onnx)
        if err > 1e-3:
            raise RuntimeError(f"ONNX parity failed: max |torch - onnxruntime| = {err:.2e}")
    return onnx


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--onnx", type=Path, required=True)
    ap.add_argument("--label", default="")
    ap.add_argument("--trained-on", default="")
    a = ap.parse_args(argv)
    export_checkpoint(a.checkpoint, a.onnx, a.label, a.trained_on)
    print(a.onnx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
