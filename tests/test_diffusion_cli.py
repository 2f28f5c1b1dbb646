"""``vlogger render/serve/export`` with the diffusion renderer (the shipped test model, CPU)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
from media import decode_frames, probe


def vlogger(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vlogger.runtime", *args], capture_output=True, text=True, timeout=timeout
    )


def test_render_with_the_diffusion_renderer_writes_valid_video(tmp_path: Path) -> None:
    from vlogger.engines.render.diffusion import TEST_MODEL

    out = tmp_path / "d.mp4"
    model = TEST_MODEL.with_name("test_renderer_2step.onnx")  # a model of the user's, by flag
    args = ("--text", "Hello there.", "--out", str(out), "--renderer", "diffusion", "--size", "256")
    res = vlogger("render", *args, "--diffusion-model", str(model), "--quiet")
    assert res.returncode == 0, res.stderr
    info = probe(out)
    assert info["video"].codec == "h264" and info["audio"].codec == "aac"
    frames = decode_frames(out)
    assert abs(len(frames) / 25.0 - info["audio"].duration) < 0.2
    assert frames[0].shape == (256, 256, 3)
    # the face moves: consecutive frames differ inside the face crop, and nothing is black
    assert (
        np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in itertools.pairwise(frames)]) > 0.05
    )
    assert min(f.mean() for f in frames) > 40


def test_unknown_renderer_and_missing_model_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "x.mp4"
    res = vlogger("render", "--text", "Hi.", "--out", str(out), "--renderer", "nerf")
    assert res.returncode == 2 and "diffusion" in res.stderr and not out.exists()
    missing = str(tmp_path / "mine.onnx")
    for cmd in (("render", "--text", "Hi.", "--out", str(out)), ("serve", "--port", "0")):
        res = vlogger(*cmd, "--renderer", "diffusion", "--diffusion-model", missing, timeout=60)
        assert res.returncode == 2 and "mine.onnx" in res.stderr and "Traceback" not in res.stderr


def test_serve_builds_the_diffusion_renderer() -> None:
    from vlogger.runtime.config import VloggerConfig
    from vlogger.runtime.engine_factory import RealEngines

    config = VloggerConfig()
    config.renderer = "diffusion"
    config.output.height = 256
    engines = RealEngines(config)
    avatar = engines.load_avatar(None)
    r = engines.make_renderer(avatar)  # in a render process of its own
    try:
        assert r.name == "diffusion"
        frames = [r.render(avatar.neutral()).to_ndarray(format="rgb24") for _ in range(3)]
        assert frames[0].shape == avatar.image.shape and frames[0].dtype == np.uint8
        r.reset()
        assert np.array_equal(r.render(avatar.neutral()).to_ndarray(format="rgb24"), frames[0])
    finally:
        r.close()
        engines.close()


def test_export_check_runs_the_shipped_model() -> None:
    res = vlogger("export", "--model", "renderer", "--check")
    assert res.returncode == 0, res.stderr
    assert "onnxruntime ok" in res.stderr


def test_export_without_tensorrt_names_what_to_install() -> None:
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        return
    res = vlogger("export", "--model", "renderer", "--precision", "fp16")
    assert res.returncode == 3 and "Traceback" not in res.stderr
    assert "tensorrt" in res.stderr.lower()
