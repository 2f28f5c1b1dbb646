"""vlogger runtime: the CLI, offline rendering and (later) the real-time server."""

__all__ = ["__version__"]

__version__ = "0.1.0"
