"""``vlogger livekit-worker``: the command line of the LiveKit avatar worker
(:mod:`vlogger.integrations.livekit_worker`).

The parser imports nothing of LiveKit, so ``vlogger --help`` works without the ``livekit`` extra;
running the command without it is an error naming the extra (exit status 2). The LiveKit server
and credentials come from ``--url``/``--api-key``/``--api-secret`` or, as LiveKit's own tools read
them, from ``LIVEKIT_URL``/``LIVEKIT_API_KEY``/``LIVEKIT_API_SECRET`` (prefer the environment for
the secret: a command line is visible to every user of the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlogger.runtime.flags import add_config_flags, config_from_flags

if TYPE_CHECKING:
    from vlogger.integrations.livekit_worker import AvatarWorker, WorkerConfig
    from vlogger.runtime.config import VloggerConfig

__all__ = ["DEFAULT_PORT", "add_livekit_worker_parser", "run_livekit_worker", "worker_settings"]

#: The worker's default HTTP port (LiveKit's server uses 7880-7882, an agent's health server 8081).
DEFAULT_PORT = 8090

_EXTRA = 'the livekit extra is not installed: pip install "vlogger-runtime[livekit]"'


def add_livekit_worker_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``livekit-worker`` sub-command to a ``vlogger`` argparse sub-parser set."""
    w = subparsers.add_parser(
        "livekit-worker",
        help="a LiveKit avatar worker: joins agents' rooms on request and publishes the talking avatar",
    )
    w.add_argument("--url", help="LiveKit server URL, ws(s):// or http(s):// (default: env LIVEKIT_URL)")
    w.add_argument("--api-key", help="LiveKit API key (default: env LIVEKIT_API_KEY)")
    w.add_argument(
        "--api-secret", help="LiveKit API secret (default: env LIVEKIT_API_SECRET; prefer the env)"
    )
    w.add_argument(
        "--host", default="127.0.0.1", help="interface the HTTP endpoint listens on (default 127.0.0.1)"
    )
    w.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default {DEFAULT_PORT})")
    w.add_argument("--image", help="the avatar's default photo (default: the shipped public-domain portrait)")
    w.add_argument(
        "--max-sessions",
        type=int,
        default=None,
        help="rooms at once (default: what this machine's cores hold at 25 fps at --size); "
        "more get worker_busy",
    )
    add_config_flags(w)
    w.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return w


def worker_settings(
    args: argparse.Namespace, env: dict[str, str] | None = None
) -> tuple[WorkerConfig, VloggerConfig]:
    """The worker's and the avatar's configuration from the flags, with ``env`` (default
    ``os.environ``) for the LiveKit settings not given; ``InputError`` naming a missing or bad one."""
    from vlogger.engines.errors import InputError
    from vlogger.integrations.livekit_worker import WorkerConfig, livekit_ws_url
    from vlogger.runtime.capacity import session_capacity

    environ = os.environ if env is None else env
    config = config_from_flags(args)
    values: dict[str, str] = {}
    for flag, name, var in (
        ("--url", "url", "LIVEKIT_URL"),
        ("--api-key", "api_key", "LIVEKIT_API_KEY"),
        ("--api-secret", "api_secret", "LIVEKIT_API_SECRET"),
    ):
        value = getattr(args, name) or environ.get(var) or ""
        if not value:
            raise InputError(f"{flag} is required (or set {var})")
        values[name] = value
    try:
        livekit_ws_url(values["url"])
    except ValueError as e:
        raise InputError(str(e)) from None
    if not (0 <= args.port <= 65535):
        raise InputError(f"--port {args.port} is not a TCP port")
    if args.max_sessions is not None and args.max_sessions < 1:
        raise InputError("--max-sessions must be at least 1")
    if args.image is not None and not Path(args.image).is_file():
        raise InputError(f"image not found: {args.image}")
    config.server.default_image = args.image
    max_sessions = args.max_sessions or session_capacity(config.output.height)
    worker = WorkerConfig(
        url=values["url"],
        api_key=values["api_key"],
        api_secret=values["api_secret"],
        host=args.host,
        port=args.port,
        max_sessions=max_sessions,
    )
    return worker, config


async def _serve(worker: AvatarWorker) -> None:
    await worker.start()
    print(
        f"vlogger livekit-worker: POST {worker.url}/v1/sessions joins rooms on {worker.ws_url} "
        f"(up to {worker.config.max_sessions} at once; Ctrl+C stops)",
        file=sys.stderr,
        flush=True,
    )
    await worker.serve_until_signal()


def run_livekit_worker(args: argparse.Namespace) -> int:
    """Run the worker until SIGINT/SIGTERM; 0 on a clean stop, 2 for bad flags, a bad photo, a
    port that cannot be listened on or a missing ``livekit`` extra."""
    from vlogger.engines.errors import InputError

    if importlib.util.find_spec("livekit") is None or importlib.util.find_spec("livekit.agents") is None:
        print(f"error: {_EXTRA}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from vlogger.engines.threads import pin_native_threads
    from vlogger.integrations.livekit import build_avatar_stream
    from vlogger.integrations.livekit_worker import AvatarWorker

    try:
        worker_config, config = worker_settings(args)
        pin_native_threads(args.threads)
        # load the models and fit the default photo once now: a bad --image fails here, and the
        # first session starts from the caches
        build_avatar_stream(config, seed=config.seed).close()
        asyncio.run(_serve(AvatarWorker(worker_config, config)))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port} ({exc})", file=sys.stderr)
        return 2
    print("vlogger livekit-worker: stopped", file=sys.stderr)
    return 0
