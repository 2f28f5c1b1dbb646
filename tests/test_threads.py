"""pin_native_threads: OpenCV and numpy's BLAS pool at the asked size (checked in a fresh process)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_pin_native_threads_limits_opencv_and_blas() -> None:
    pytest.importorskip("threadpoolctl")
    code = (
        "import json, cv2, numpy as np\n"
        "from threadpoolctl import threadpool_info\n"
        "from vlogger.engines.threads import pin_native_threads\n"
        "np.ones((64, 64)) @ np.ones((64, 64))\n"
        "before = [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']\n"
        "pin_native_threads(1)\n"
        "after = [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']\n"
        "print(json.dumps({'cv2': cv2.getNumThreads(), 'before': before, 'after': after}))\n"
    )
    env_free = {k: v for k, v in __import__("os").environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env_free, check=True
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["cv2"] == 1
    assert got["after"] and all(n == 1 for n in got["after"]), got
