"""The flags ``vlogger render`` and ``vlogger serve`` share, and the one mapping of them onto
:class:`~vlogger.runtime.config.VloggerConfig` (each command keeps its own flags to itself).

Both commands accept the same values; a value out of range is an ``InputError`` (``error: ...``,
exit code 2) naming the flag and its range, the same in both:

* ``--size`` (video height) 64 to 2048 px. Below 64 the face is too small to fit. Above 2048
  neither command is of use: live, a session's cost grows with its pixels (2 cores at 512 px,
  about 22 at 2048: ``runtime/capacity.py``), and a render's frames would leave what common H.264
  decoders take (level 5.1/5.2: 36,864 macroblocks a frame; a 16:9 frame at 2048 px has 29,184,
  at 4096 px 116,736).
* ``--fps`` 1 to 60. Each frame gets ``1 / fps`` of a session's render budget (16.7 ms at 60 fps,
  40 ms at the default 25), browsers and most displays show at most 60, and the learned motion
  network runs at 25 fps only.
* ``--threads`` 1 to 256, per engine (voice, whisper, motion network, warp, H.264 encoder). More
  threads than cores only oversubscribe; the bound stops a typo from starting millions of threads.
* ``--seed`` 0 to 2**32 - 1 (numpy's seeds are non-negative).
* ``--renderer`` one of ``RENDERERS``; ``--diffusion-model`` an existing file.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from vlogger.engines.errors import InputError
from vlogger.engines.motion.factory import DEFAULT_MOTION_ENGINE, MOTION_ENGINES
from vlogger.engines.render.factory import RENDERERS
from vlogger.runtime.config import VloggerConfig

__all__ = [
    "FPS_RANGE",
    "SEED_RANGE",
    "SIZE_RANGE",
    "THREADS_RANGE",
    "add_config_flags",
    "config_from_flags",
]

#: ``--size``: video height in pixels, inclusive (see the module notes for why).
SIZE_RANGE = (64, 2048)
#: ``--fps``: frames per second, inclusive.
FPS_RANGE = (1.0, 60.0)
#: ``--threads``: inference threads per engine, inclusive.
THREADS_RANGE = (1, 256)
#: ``--seed``: inclusive.
SEED_RANGE = (0, 2**32 - 1)


def add_config_flags(parser: argparse.ArgumentParser, what: str = "video") -> None:
    """Add the shared flags to a command's parser (``what`` names its output in the help)."""
    defaults = VloggerConfig()
    lo, hi = SIZE_RANGE
    parser.add_argument(
        "--size",
        type=int,
        default=defaults.output.height,
        help=f"{what} height in pixels, {lo} to {hi} (default {defaults.output.height})",
    )
    lo_f, hi_f = FPS_RANGE
    parser.add_argument(
        "--fps",
        type=float,
        default=defaults.output.fps,
        help=f"{what} frames per second, {lo_f:g} to {hi_f:g} (default {defaults.output.fps:g})",
    )
    lo_s, hi_s = SEED_RANGE
    parser.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help=f"seed of blinks, gaze and head motion, {lo_s} to {hi_s} (default {defaults.seed})",
    )
    parser.add_argument(
        "--renderer",
        default=defaults.renderer,
        help=f"renderer engine: {', '.join(RENDERERS)} (default {defaults.renderer})",
    )
    parser.add_argument(
        "--diffusion-model",
        metavar="ONNX",
        help="diffusion renderer model (ONNX from training.render.export; default: the test model)",
    )
    parser.add_argument(
        "--motion",
        default=None,
        choices=MOTION_ENGINES,
        help=f"motion engine (default {DEFAULT_MOTION_ENGINE}: the learned mouth, the generator's head, eyes "
        "and body; teacher: phonemes/loudness only; network: the learned models only)",
    )
    parser.add_argument(
        "--mouth",
        default=None,
        choices=("learned", "phonemes"),
        help="the hybrid engine's mouth (default learned: trained on real speakers; phonemes: the "
        "phoneme-driven mouth where timings are known)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="inference threads per engine: voice, whisper, motion network, warp, encoder (default 1)",
    )


def _num(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _check_range(flag: str, value: float, bounds: tuple[float, float]) -> None:
    lo, hi = bounds
    if not (lo <= value <= hi):
        raise InputError(f"{flag} {_num(value)} is out of range ({_num(lo)} to {_num(hi)})")


def config_from_flags(args: argparse.Namespace) -> VloggerConfig:
    """The :class:`VloggerConfig` the shared flags describe (everything else at its default).

    Raises ``InputError`` for a value out of range, an unknown renderer or a missing model file.
    """
    _check_range("--size", args.size, SIZE_RANGE)
    _check_range("--fps", args.fps, FPS_RANGE)
    _check_range("--threads", args.threads, THREADS_RANGE)
    _check_range("--seed", args.seed, SEED_RANGE)
    if args.renderer not in RENDERERS:
        raise InputError(f"--renderer {args.renderer!r} is unknown (choose from {', '.join(RENDERERS)})")
    if args.diffusion_model is not None and not Path(args.diffusion_model).is_file():
        raise InputError(f"--diffusion-model not found: {args.diffusion_model}")
    config = VloggerConfig()
    config.seed = args.seed
    config.output.fps = float(args.fps)
    config.output.height = args.size
    config.renderer = args.renderer
    if args.diffusion_model is not None:
        config.diffusion = dataclasses.replace(config.diffusion, model=args.diffusion_model)
    if args.motion is not None:
        config.motion_engine = args.motion
    if args.mouth is not None:
        config.mouth = args.mouth
    threads = args.threads
    config.tts = dataclasses.replace(config.tts, threads=threads)
    config.asr = dataclasses.replace(config.asr, cpu_threads=threads)
    config.network = dataclasses.replace(config.network, threads=threads)
    config.warp = dataclasses.replace(config.warp, threads=threads)
    config.output.encoder_threads = threads
    return config
