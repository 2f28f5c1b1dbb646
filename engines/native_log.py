"""Silence the C++ log lines native libraries (mediapipe, TFLite) print straight to fd 2.

mediapipe writes "Created TensorFlow Lite XNNPACK delegate" and absl warnings before Python can
configure them; a user of ``vlogger render`` should see our messages, not these. Set
``VLOGGER_NATIVE_LOGS=1`` to see them again when debugging.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

__all__ = ["quiet_native_stderr"]

_LOCK = threading.Lock()  # fd 2 is process-wide: one redirection at a time


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Redirect file descriptor 2 to /dev/null for the duration (Python exceptions still propagate)."""
    if os.environ.get("VLOGGER_NATIVE_LOGS") == "1":
        yield
        return
    with _LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
