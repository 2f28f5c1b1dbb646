"""``vlogger export``: ONNX export of trained checkpoints and cached TensorRT engine builds.

vlogger export --model renderer --precision fp16                 # the shipped test model's engine
vlogger export --model renderer --checkpoint run/student2.pt --onnx renderer.onnx --precision fp16
vlogger export --model renderer --onnx renderer.onnx --check     # onnxruntime smoke run only
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_export_parser", "run_export"]


def add_export_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``export`` sub-command to a ``vlogger`` argparse sub-parser set."""
    e = subparsers.add_parser("export", help="export a model to ONNX and build its TensorRT engine")
    e.add_argument("--model", default="renderer", choices=("renderer", "motion"), help="which model")
    e.add_argument("--checkpoint", help="a torch checkpoint to export first (needs the train extra)")
    e.add_argument(
        "--onnx", help="the ONNX file (read, or written from --checkpoint); default: shipped model"
    )
    e.add_argument("--precision", default="fp16", choices=("fp16", "fp32"))
    e.add_argument("--window", type=int, default=8, help="frames per window (the engine's opt shape)")
    e.add_argument("--max-batch", type=int, default=2, help="largest batch in the shape profile")
    e.add_argument(
        "--cache-dir",
        help="engine cache folder (default: trt/ in the user cache: $VLOGGER_CACHE_DIR or ~/.cache/vlogger)",
    )
    e.add_argument("--check", action="store_true", help="only run the ONNX once on onnxruntime CPU")
    return e


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def run_export(args: argparse.Namespace) -> int:
    from vlogger.engines.backends import make_runner
    from vlogger.engines.errors import InputError
    from vlogger.engines.render.diffusion.renderer import TEST_MODEL, load_model_metadata
    from vlogger.export.renderer import RENDER_DENOISER, renderer_sizes

    if args.model != "renderer":
        raise InputError(
            "only --model renderer builds engines here so far (the motion model exports with "
            "training/motion/export.py)"
        )
    onnx = Path(args.onnx) if args.onnx else TEST_MODEL
    if args.checkpoint:
        if not args.onnx:
            raise InputError("--checkpoint needs --onnx (where to write the ONNX file)")
        try:
            from training.render.export import export_checkpoint
        except ImportError as e:
            raise InputError(
                f"exporting a checkpoint needs the train extra and the repository's training/ ({e})"
            ) from None
        export_checkpoint(Path(args.checkpoint), onnx)
        _log(f"wrote {onnx}")
    if not onnx.is_file():
        raise InputError(f"ONNX model not found: {onnx}")
    runner = make_runner(onnx)
    meta = load_model_metadata(runner)
    size, control = int(meta["model"]["size"]), int(meta["model"]["control_channels"])
    sizes = renderer_sizes(size, control)
    if args.window < 2 or args.max_batch < 1:
        raise InputError("--window must be >= 2 and --max-batch >= 1")
    ranges = {"batch": (1, 1, args.max_batch), "frames": (1, args.window, args.window)}
    profiles = RENDER_DENOISER.profiles(sizes, ranges)
    if args.check:
        import numpy as np

        feed = {
            s.name: np.zeros(
                RENDER_DENOISER.shape(s.name, {**sizes, "batch": 1, "frames": args.window}), np.float32
            )
            for s in RENDER_DENOISER.inputs
        }
        out = runner.infer(feed)["eps"]
        _log(f"{onnx}: onnxruntime ok, eps {out.shape}; profiles {json.dumps(profiles)}")
        return 0
    from vlogger.engines.backends import BackendUnavailable
    from vlogger.export.trt import build_engine

    try:
        path = build_engine(
            onnx, RENDER_DENOISER, profiles, args.precision, args.cache_dir, metadata=meta, log=_log
        )
    except BackendUnavailable as e:
        _log(f"error: {e}")
        return 3
    print(path)
    return 0
