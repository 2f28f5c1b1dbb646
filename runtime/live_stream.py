"""One avatar stream for a live session, as a ``VloggerConfig`` says: the builder the framework
adapters (``vlogger.integrations.livekit`` and ``.pipecat``) share, and the aiohttp start-up their
HTTP endpoints share."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlogger.engines.stream import AvatarStream, StreamConfig

if TYPE_CHECKING:
    import numpy as np
    from aiohttp import web

    from vlogger.runtime.config import VloggerConfig

__all__ = ["build_live_stream", "start_site"]


def build_live_stream(
    config: VloggerConfig | None = None,
    photo: bytes | str | Path | np.ndarray | None = None,
    *,
    audio_rate: int,
    height: int | None = None,
    seed: int | None = None,
    models: Any = None,
    max_buffered_s: float = 30.0,
) -> AvatarStream[Any]:
    """The photo (``None``: ``config.server.default_image``, else the shipped portrait) at
    ``height`` (default ``output.height``), the configured motion engine (``models`` from
    ``config.load_motion_models()`` shared when given, else loaded here) and renderer, drawing
    each frame as it comes (causal) at ``output.fps``, with the frames' audio at ``audio_rate``.
    Blocking (loads models, fits the photo): call it from a worker thread. ``InputError`` for a
    bad photo; the renderer is closed when anything after it fails."""
    from vlogger.engines.avatar import load_avatar
    from vlogger.engines.render.factory import make_renderer
    from vlogger.runtime.config import VloggerConfig
    from vlogger.runtime.engine_factory import close_quietly

    cfg = config or VloggerConfig()
    source = photo if photo is not None else cfg.server.default_image
    avatar = load_avatar(
        str(source) if isinstance(source, Path) else source,
        height=height or cfg.output.height,
        config=cfg.avatar,
    )
    renderer = make_renderer(cfg.renderer, avatar.image, avatar.fit, cfg.warp, cfg.diffusion)
    try:
        motion = cfg.make_motion(seed, models=models if models is not None else cfg.load_motion_models())
        stream_config = StreamConfig(
            fps=cfg.output.fps, audio_rate=audio_rate, max_buffered_s=max_buffered_s, causal=True
        )
        return AvatarStream(avatar, motion, renderer, stream_config)
    except BaseException:
        close_quietly(renderer)
        raise


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port`` (0: any free port); its runner and the port bound.
    ``OSError`` if it cannot listen."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    server = getattr(site, "_server", None)
    sockets = getattr(server, "sockets", None) or []
    return runner, int(sockets[0].getsockname()[1]) if sockets else port
