"""The ``vlogger`` command line (argparse lives only here)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from vlogger.engines.motion.factory import DEFAULT_MOTION_ENGINE, MOTION_ENGINES

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from vlogger.runtime import __version__

    parser = argparse.ArgumentParser(prog="vlogger", description="A talking avatar from one photo.")
    parser.add_argument("--version", action="version", version=f"vlogger-runtime {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    r = sub.add_parser("render", help="render a talking-avatar MP4 from a photo and text or speech")
    r.add_argument("--image", help="the photo (default: the shipped public-domain portrait)")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="what the avatar says (up to 20,000 characters)")
    src.add_argument("--audio", help="speech to lip-sync: wav/mp3/m4a/..., any rate, mono or stereo")
    r.add_argument("--out", required=True, help="the MP4 to write")
    r.add_argument("--seed", type=int, default=0, help="seed of blinks, gaze and head motion")
    r.add_argument("--fps", type=float, default=25.0, help="frames per second (default 25)")
    r.add_argument("--size", type=int, default=512, help="output height in pixels (default 512)")
    r.add_argument("--renderer", default="warp", help="renderer engine (default warp)")
    r.add_argument(
        "--diffusion-model",
        metavar="ONNX",
        help="diffusion renderer model (ONNX from training.render.export; default: the test model)",
    )
    r.add_argument(
        "--motion",
        default=None,
        choices=MOTION_ENGINES,
        help=f"motion engine (default {DEFAULT_MOTION_ENGINE}: the learned mouth, the generator's head, eyes "
        "and body; teacher: phonemes/loudness only; network: the learned models only)",
    )
    r.add_argument(
        "--mouth",
        default=None,
        choices=("learned", "phonemes"),
        help="the hybrid engine's mouth (default learned: trained on real speakers; phonemes: the "
        "phoneme-driven mouth where timings are known)",
    )
    r.add_argument("--threads", type=int, default=1, help="inference threads per engine (default 1)")
    r.add_argument("--quiet", action="store_true", help="print only warnings and errors")

    f = sub.add_parser("fit", help="fit a photo and write a debug view (mesh and keypoints)")
    f.add_argument("--image", help="the photo (default: the shipped portrait)")
    f.add_argument("--out", required=True, help="PNG to write")
    from vlogger.runtime.serve_cli import add_serve_parser, run_serve

    add_serve_parser(sub).set_defaults(run=run_serve)
    from vlogger.export.cli import add_export_parser, run_export

    add_export_parser(sub).set_defaults(run=run_export)
    return parser


def _render(args: argparse.Namespace) -> int:
    from vlogger.engines.errors import InputError
    from vlogger.runtime.config import VloggerConfig
    from vlogger.runtime.render_job import RenderRequest, check_text, render_video

    config = VloggerConfig()
    config.seed = args.seed
    if not (1.0 <= args.fps <= 120.0):
        raise InputError(f"--fps {args.fps} is out of range (1 to 120)")
    if not (64 <= args.size <= 4096):
        raise InputError(f"--size {args.size} is out of range (64 to 4096)")
    if args.threads < 1:
        raise InputError("--threads must be at least 1")
    config.output.fps = args.fps
    config.output.height = args.size
    config.renderer = args.renderer
    if args.diffusion_model is not None:
        config.diffusion = replace(config.diffusion, model=args.diffusion_model)
    if args.motion is not None:
        config.motion_engine = args.motion
    if args.mouth is not None:
        config.mouth = args.mouth
    config.tts = replace(config.tts, threads=args.threads)
    config.warp = replace(config.warp, threads=args.threads)
    config.network = replace(config.network, threads=args.threads)
    config.output.encoder_threads = args.threads
    if args.text is not None:
        check_text(args.text, config.tts.max_text_length)
    if args.image is not None and not Path(args.image).is_file():
        raise InputError(f"image not found: {args.image}")
    if args.diffusion_model is not None and not Path(args.diffusion_model).is_file():
        raise InputError(f"--diffusion-model not found: {args.diffusion_model}")
    if args.audio is not None and not Path(args.audio).is_file():
        raise InputError(f"audio not found: {args.audio}")

    from vlogger.engines.threads import pin_native_threads

    pin_native_threads(args.threads)
    t0 = time.perf_counter()
    last = [t0]

    tty = sys.stderr.isatty()

    def progress(done: int, total: int | None) -> None:
        now = time.perf_counter()
        if not args.quiet and now - last[0] > (1.0 if tty else 5.0):
            last[0] = now
            end = "" if tty else "\n"
            print(f"\rrendered {done} frames ({done / args.fps:.1f} s of video)", end=end, file=sys.stderr)

    request = RenderRequest(out=Path(args.out), image=args.image, text=args.text, audio=args.audio)
    report = render_video(request, config, progress)
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if not args.quiet:
        wall = time.perf_counter() - t0
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in report.stage_seconds.items())
        print(
            f"\rwrote {report.path}: {report.frames} frames at {report.fps:g} fps, "
            f"{report.video_duration:.2f} s (speech {report.speech_duration:.2f} s, timings from "
            f"{report.timing_source}) in {wall:.1f} s [{stages}]",
            file=sys.stderr,
        )
    return 0


def _fit(args: argparse.Namespace) -> int:
    import cv2

    from vlogger.engines.avatar import load_avatar
    from vlogger.engines.avatar.debug import debug_view

    avatar = load_avatar(args.image)
    view = debug_view(avatar)
    if not cv2.imwrite(args.out, view[:, :, ::-1]):
        raise OSError(f"could not write {args.out}")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ logging
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = build_parser().parse_args(argv)
    from vlogger.engines.errors import InputError

    try:
        if args.command == "render":
            return _render(args)
        if args.command == "fit":
            return _fit(args)
        if args.command in ("serve", "export"):
            return int(args.run(args))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
