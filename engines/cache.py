"""Where the runtime keeps its caches (fits, patched voices): never inside the installed package."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "cache_dir"]


def cache_dir(sub: str = "") -> Path:
    """The user cache directory (created on demand).

    ``$VLOGGER_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/vlogger``, else ``~/.cache/vlogger``;
    ``sub`` names a folder inside it (e.g. ``"fits"``, ``"voices"``).
    """
    env = os.environ.get("VLOGGER_CACHE_DIR")
    if env:
        root = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "vlogger"
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (no half-written files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
