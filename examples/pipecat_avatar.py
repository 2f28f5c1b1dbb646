"""A talking avatar in the browser, on pipecat: open the page, press Connect and talk to it.

    pip install "vlogger-runtime[pipecat]"
    python examples/pipecat_avatar.py                      # then open http://127.0.0.1:8080/
    python examples/pipecat_avatar.py --image me.jpg --size 256
    python examples/pipecat_avatar.py --brain openai --brain-url http://127.0.0.1:8000/v1 --brain-model qwen

The pipeline (``vlogger.integrations.pipecat_app``): pipecat's ``SmallWebRTCTransport`` (no ICE
servers: host candidates only), this package's Silero VAD, whisper ``tiny.en`` and piper voice
wrapped as pipecat services (nothing is downloaded), an echo brain (says back what it heard) or
pipecat's ``OpenAILLMService`` on a local OpenAI-compatible server, and ``VloggerVideoService``
drawing the avatar. A photo without a face, or a missing one, is refused at start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from vlogger.integrations.pipecat_app import BRAINS, AppConfig, PipecatAvatarApp


def parse_args(argv: list[str] | None = None) -> AppConfig:
    """The app's settings from a command line."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port of the page (default 8080; 0: any free)")
    p.add_argument("--image", help="the avatar photo (default: the shipped portrait)")
    p.add_argument("--size", type=int, default=512, help="video height in pixels (default 512)")
    p.add_argument("--brain", default="echo", choices=BRAINS, help="who answers (default echo)")
    p.add_argument("--brain-url", help="OpenAI-compatible base URL for --brain openai")
    p.add_argument("--brain-model", help="model name for --brain openai")
    p.add_argument("--max-connections", type=int, default=2, help="browsers served at once (default 2)")
    a = p.parse_args(argv)
    return AppConfig(
        host=a.host,
        port=a.port,
        image=a.image,
        size=a.size,
        brain=a.brain,
        brain_url=a.brain_url,
        brain_model=a.brain_model,
        max_connections=a.max_connections,
    )


async def serve(app: PipecatAvatarApp) -> None:
    """Start ``app``, print its address and run until cancelled (Ctrl+C)."""
    await app.start()
    print(f"pipecat avatar: open {app.url} (Ctrl+C stops)", file=sys.stderr, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await app.stop()


def configure_process() -> None:
    """Logging at INFO (pipecat's loguru too, which logs at DEBUG unless told) and one native
    thread per pool (as ``vlogger serve``): process-wide, so only when run as a script."""
    from loguru import logger

    from vlogger.engines.threads import pin_native_threads

    logger.remove()
    logger.add(lambda message: sys.stderr.write(message), level="INFO")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aioice", "aiortc", "faster_whisper"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    pin_native_threads(1)


def main(argv: list[str] | None = None) -> int:
    """Run the example; 0 when stopped, 2 for bad flags, a bad photo or a busy port."""
    from vlogger.engines.errors import InputError

    try:
        app = PipecatAvatarApp(parse_args(argv))
        asyncio.run(serve(app))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot listen ({e})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    configure_process()
    sys.exit(main())
