"""``vlogger serve``: the command-line face of the real-time server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlogger.runtime.flags import add_config_flags, config_from_flags

if TYPE_CHECKING:
    from vlogger.runtime.config import VloggerConfig
    from vlogger.runtime.server import VloggerServer

__all__ = ["add_serve_parser", "build_server", "run_serve", "serve_config"]


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` sub-command to a ``vlogger`` argparse sub-parser set."""
    s = subparsers.add_parser("serve", help="stream the talking avatar to a browser over WebRTC")
    s.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8080, help="port of the page and WebSocket (default 8080)")
    s.add_argument("--image", help="the avatar photo (default: the shipped public-domain portrait)")
    add_config_flags(s)
    s.add_argument(
        "--ice-server",
        action="append",
        default=[],
        metavar="URL",
        help="STUN/TURN server for real deployments (repeatable; turn:user:pass@host:port); default none",
    )
    s.add_argument(
        "--loopback-ice",
        action="store_true",
        help="also offer 127.0.0.1 as an ICE candidate (on by default when --host is a loopback address)",
    )
    s.add_argument(
        "--max-sessions",
        type=int,
        default=None,
        help="concurrent sessions (default: what this machine's cores hold at 25 fps at --size, "
        "on 2 cores: 2 at 256 px, 1 at 512; more get server_busy)",
    )
    s.add_argument(
        "--token",
        default=None,
        help="access token (default: env VLOGGER_TOKEN): agents send 'Authorization: Bearer T' on /ws "
        "and /agent; browsers log in once through the link the server prints. None: /agent is open to "
        "loopback only and /ws to any client whose Origin is allowed",
    )
    s.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web page origin (https://app.example) allowed to open /ws and /agent from a browser, "
        "besides the server's own loopback and bind addresses (repeatable; '*' = any)",
    )
    s.add_argument(
        "--brain",
        default="echo",
        choices=("echo", "openai", "none"),
        help="what answers the user when no agent is attached (default echo: says back what it heard)",
    )
    s.add_argument("--brain-url", help="OpenAI-compatible chat-completions URL for --brain openai")
    s.add_argument("--brain-model", help="model name for --brain openai")
    s.add_argument("--no-listen", action="store_true", help="ignore the page's microphone")
    s.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return s


def serve_config(args: argparse.Namespace) -> VloggerConfig:
    """The configuration of a ``serve`` command line (``server`` included); ``InputError`` for bad
    flags, a missing photo or a brain that cannot be reached as given."""
    from vlogger.engines.errors import InputError
    from vlogger.runtime.brains import BrainConfig, make_brain
    from vlogger.runtime.server_config import ServerConfig

    config = config_from_flags(args)
    if not (0 <= args.port <= 65535):
        raise InputError(f"--port {args.port} is not a TCP port")
    if args.image is not None and not Path(args.image).is_file():
        raise InputError(f"image not found: {args.image}")
    for url in args.ice_server:
        if not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
            raise InputError(f"--ice-server {url!r} must start with stun:, stuns:, turn: or turns:")
    if args.max_sessions is not None and args.max_sessions < 1:
        raise InputError("--max-sessions must be at least 1")
    token = args.token if args.token is not None else os.environ.get("VLOGGER_TOKEN") or None
    brain = BrainConfig(name=args.brain, url=args.brain_url, model=args.brain_model)
    make_brain(brain)  # a bad --brain-url or a missing --brain-model fails here, by name
    config.server = ServerConfig(
        host=args.host,
        port=args.port,
        ice_servers=list(args.ice_server),
        loopback_ice=bool(args.loopback_ice) or args.host in ("127.0.0.1", "localhost", "::1"),
        max_sessions=args.max_sessions,
        allowed_origins=list(args.allowed_origin),
        default_image=args.image,
        token=token,
        brain=brain,
        listen_enabled=not args.no_listen,
    )
    return config


def build_server(args: argparse.Namespace) -> VloggerServer:
    """The :class:`~vlogger.runtime.server.VloggerServer` the flags describe (not started)."""
    from vlogger.runtime import __version__
    from vlogger.runtime.engine_factory import RealEngines
    from vlogger.runtime.server import VloggerServer

    config = serve_config(args)
    return VloggerServer(RealEngines(config), config.server, version=__version__)


async def _serve(server: VloggerServer) -> None:
    from vlogger.engines.threads import pin_native_threads

    pin_native_threads(1)
    await server.start()
    if server.config.token:
        print(
            f"vlogger serve: open {server.login_url()} (a one-time login link; {server.url} "
            "then works in that browser; Ctrl+C stops)",
            file=sys.stderr,
            flush=True,
        )
    else:
        print(f"vlogger serve: open {server.url} (Ctrl+C stops)", file=sys.stderr, flush=True)
    print(f"vlogger serve: up to {server.max_sessions} sessions at once", file=sys.stderr, flush=True)
    await server.serve_until_signal()


def run_serve(args: argparse.Namespace) -> int:
    """Run the server until SIGINT/SIGTERM; 0 on a clean shutdown, 2 for bad flags or photo."""
    from vlogger.engines.errors import InputError
    from vlogger.runtime.memory import limit_malloc_arenas

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    try:
        server = build_server(args)
        limit_malloc_arenas(2)  # before any session thread starts: see runtime/memory.py
        try:
            import uvloop

            uvloop.run(_serve(server))
        except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
            asyncio.run(_serve(server))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port} ({exc})", file=sys.stderr)
        return 2
    print("vlogger serve: stopped", file=sys.stderr)
    return 0
