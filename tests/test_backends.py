"""Inference backends: the runner interface on onnxruntime CPU, and clear errors for absent GPU stacks."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from vlogger.engines.backends import (
    BackendUnavailable,
    OrtConfig,
    OrtRunner,
    available_backends,
    make_runner,
    ort_providers,
)
from vlogger.engines.render.diffusion import TEST_MODEL
from vlogger.export.renderer import METADATA_KEY, RENDER_DENOISER, renderer_sizes


def _feed(batch: int = 1, frames: int = 8) -> dict[str, np.ndarray]:
    meta = json.loads(make_runner(TEST_MODEL).metadata[METADATA_KEY])
    sizes = {
        **renderer_sizes(meta["model"]["size"], meta["model"]["control_channels"]),
        "batch": batch,
        "frames": frames,
    }
    rng = np.random.default_rng(0)
    feed = {
        s.name: rng.standard_normal(RENDER_DENOISER.shape(s.name, sizes)).astype(np.float32)
        for s in RENDER_DENOISER.inputs
    }
    feed["t"] = np.full(batch, 400, np.float32)
    return feed


def test_onnxruntime_cpu_runner_follows_the_contract() -> None:
    r = make_runner(TEST_MODEL, "onnxruntime", OrtConfig(threads=1))
    assert r.name == "onnxruntime"
    assert list(r.input_names) == RENDER_DENOISER.input_names
    assert list(r.output_names) == RENDER_DENOISER.output_names
    out = r.infer(_feed())["eps"]
    assert out.shape == (1, 8, 3, 32, 32) and np.isfinite(out).all()
    # dynamic batch and frames; deterministic
    out2 = r.infer(_feed(2, 4))["eps"]
    assert out2.shape == (2, 4, 3, 32, 32)
    assert np.array_equal(r.infer(_feed())["eps"], out)
    with pytest.raises(KeyError, match="control"):
        r.infer({k: v for k, v in _feed().items() if k != "control"})
    RENDER_DENOISER.check_feed(_feed(), {"size": 32, "control": 17})
    with pytest.raises(ValueError, match="size"):
        RENDER_DENOISER.check_feed(_feed(), {"size": 64, "control": 17})


def test_missing_models_and_unknown_backends() -> None:
    with pytest.raises(FileNotFoundError):
        OrtRunner("/nonexistent.onnx")
    with pytest.raises(ValueError, match="unknown backend"):
        make_runner(TEST_MODEL, "tpu")
    assert "onnxruntime" in available_backends()


@pytest.mark.parametrize("backend", ["onnxruntime-cuda", "onnxruntime-trt"])
def test_gpu_providers_absent_name_what_to_install(backend: str) -> None:
    import onnxruntime as ort

    if (
        "CUDAExecutionProvider" if backend.endswith("cuda") else "TensorrtExecutionProvider"
    ) in ort.get_available_providers():
        pytest.skip("this machine has the GPU provider")
    with pytest.raises(BackendUnavailable, match="onnxruntime-gpu"):
        make_runner(TEST_MODEL, backend)


def test_tensorrt_ep_options_use_the_documented_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import onnxruntime as ort

    monkeypatch.setattr(
        ort,
        "get_available_providers",
        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    profiles = RENDER_DENOISER.profiles(renderer_sizes(32, 17), {"batch": (1, 1, 2), "frames": (1, 8, 8)})
    cfg = OrtConfig(fp16=True, cache_dir=str(tmp_path / "trt"), cuda_graph=True, profile_shapes=profiles)
    providers = ort_providers("onnxruntime-trt", cfg)
    name, opts = providers[0]
    assert name == "TensorrtExecutionProvider"
    assert opts["trt_engine_cache_enable"] and opts["trt_engine_cache_path"] == str(tmp_path / "trt")
    assert opts["trt_fp16_enable"] and opts["trt_cuda_graph_enable"]
    assert opts["trt_profile_opt_shapes"].startswith("x:1x8x3x32x32,t:1,ref:1x3x32x32,control:1x8x17x32x32")
    assert opts["trt_profile_max_shapes"].startswith("x:2x8x3x32x32")
    assert providers[-1] == "CPUExecutionProvider"
    assert (tmp_path / "trt").is_dir()
    cuda = ort_providers("onnxruntime-cuda", cfg)
    assert cuda[0][0] == "CUDAExecutionProvider" and cuda[0][1]["enable_cuda_graph"] == "1"


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_native_tensorrt_absent_names_the_package(tmp_path: Path) -> None:
    from vlogger.export.trt import build_engine

    with pytest.raises(BackendUnavailable, match="tensorrt"):
        make_runner(tmp_path / "x.engine", "tensorrt")
    with pytest.raises(BackendUnavailable, match="tensorrt"):
        build_engine(TEST_MODEL, RENDER_DENOISER, {}, "fp16", tmp_path)


def test_engine_cache_key_changes_with_everything_an_engine_depends_on(tmp_path: Path) -> None:
    from vlogger.export.trt import engine_key

    prof = RENDER_DENOISER.profiles(renderer_sizes(32, 17), {"batch": (1, 1, 2), "frames": (1, 8, 8)})
    base = engine_key(TEST_MODEL, prof, "fp16", "10.9.0", "NVIDIA H100")
    assert (
        base.onnx_sha256
        and base.digest() == engine_key(TEST_MODEL, prof, "fp16", "10.9.0", "NVIDIA H100").digest()
    )
    other = tmp_path / "m.onnx"
    other.write_bytes(TEST_MODEL.read_bytes() + b"\0")
    prof2 = RENDER_DENOISER.profiles(renderer_sizes(32, 17), {"batch": (1, 1, 4), "frames": (1, 8, 8)})
    variants = [
        engine_key(other, prof, "fp16", "10.9.0", "NVIDIA H100"),
        engine_key(TEST_MODEL, prof2, "fp16", "10.9.0", "NVIDIA H100"),
        engine_key(TEST_MODEL, prof, "fp32", "10.9.0", "NVIDIA H100"),
        engine_key(TEST_MODEL, prof, "fp16", "10.8.0", "NVIDIA H100"),
        engine_key(TEST_MODEL, prof, "fp16", "10.9.0", "NVIDIA L4"),
    ]
    digests = {v.digest() for v in variants} | {base.digest()}
    assert len(digests) == 6
    with pytest.raises(ValueError, match="precision"):
        engine_key(TEST_MODEL, prof, "int4", "10.9.0", "x")


def test_contract_profiles_and_dynamic_axes() -> None:
    axes = RENDER_DENOISER.dynamic_axes()
    assert axes["x"] == {0: "batch", 1: "frames"} and axes["t"] == {0: "batch"}
    prof = RENDER_DENOISER.profiles(renderer_sizes(128, 17), {"batch": (1, 1, 2), "frames": (2, 8, 8)})
    assert prof["control"] == ((1, 2, 17, 128, 128), (1, 8, 17, 128, 128), (2, 8, 17, 128, 128))
    assert prof["t"] == ((1,), (1,), (2,))
