"""The ``vlogger`` command line (argparse lives here, in ``serve_cli.py``, in
``integrations/livekit_cli.py`` (``livekit-worker``) and in ``flags.py``, the flags the commands
share)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vlogger.runtime.flags import add_config_flags, config_from_flags

if TYPE_CHECKING:
    from vlogger.runtime.config import VloggerConfig

__all__ = ["build_parser", "main", "render_config"]


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
    add_config_flags(r, what="output")
    r.add_argument("--quiet", action="store_true", help="print only warnings and errors")

    f = sub.add_parser("fit", help="fit a photo and write a debug view (mesh and keypoints)")
    f.add_argument("--image", help="the photo (default: the shipped portrait)")
    f.add_argument("--out", required=True, help="PNG to write")
    from vlogger.runtime.serve_cli import add_serve_parser, run_serve

    add_serve_parser(sub).set_defaults(run=run_serve)
    from vlogger.export.cli import add_export_parser, run_export

    add_export_parser(sub).set_defaults(run=run_export)
    from vlogger.integrations.livekit_cli import add_livekit_worker_parser, run_livekit_worker

    add_livekit_worker_parser(sub).set_defaults(run=run_livekit_worker)
    return parser


def render_config(args: argparse.Namespace) -> VloggerConfig:
    """The configuration of a ``render`` command line; ``InputError`` for bad flags or paths."""
    from vlogger.engines.errors import InputError
    from vlogger.runtime.render_job import check_text

    config = config_from_flags(args)
    if args.text is not None:
        check_text(args.text, config.tts.max_text_length)
    if args.image is not None and not Path(args.image).is_file():
        raise InputError(f"image not found: {args.image}")
    if args.audio is not None and not Path(args.audio).is_file():
        raise InputError(f"audio not found: {args.audio}")
    return config


def _render(args: argparse.Namespace) -> int:
    from vlogger.engines.threads import pin_native_threads
    from vlogger.runtime.render_job import RenderRequest, render_video

    config = render_config(args)

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
        if args.command in ("serve", "export", "livekit-worker"):
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
