"""Inference backends behind one interface (``Runner.infer(feed) -> outputs``).

``make_runner(path, backend)`` opens an ONNX model on onnxruntime (CPU, CUDA, TensorRT EP) or a
serialized TensorRT engine natively; torch modules are wrapped by ``TorchRunner``. GPU backends
are imported lazily and fail with :class:`BackendUnavailable` naming what to install.
"""

from __future__ import annotations

from pathlib import Path

from .base import BACKENDS, BackendUnavailable, Runner
from .ort import OrtConfig, OrtRunner, ort_providers

__all__ = [
    "BACKENDS",
    "BackendUnavailable",
    "OrtConfig",
    "OrtRunner",
    "Runner",
    "available_backends",
    "make_runner",
    "ort_providers",
]


def make_runner(
    model: str | Path | bytes, backend: str = "onnxruntime", config: OrtConfig | None = None
) -> Runner:
    """A runner for an ONNX model (onnxruntime backends) or a TensorRT engine file (``tensorrt``)."""
    if backend.startswith("onnxruntime"):
        return OrtRunner(model, backend, config)
    if backend == "tensorrt":
        from .tensorrt import TensorRTRunner

        if isinstance(model, bytes):
            raise ValueError("the tensorrt backend loads an engine file; build one with `vlogger export`")
        cfg = config or OrtConfig()
        return TensorRTRunner(model, cuda_graph=cfg.cuda_graph, device_id=cfg.device_id)
    if backend == "torch":
        raise ValueError("wrap a torch module with vlogger.engines.backends.torch_runner.TorchRunner")
    raise ValueError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")


def available_backends() -> list[str]:
    """Backends that can run here (onnxruntime providers present; tensorrt and torch importable)."""
    import importlib.util

    import onnxruntime as ort

    have = set(ort.get_available_providers())
    out = [
        b
        for b, p in (
            ("onnxruntime", "CPUExecutionProvider"),
            ("onnxruntime-cuda", "CUDAExecutionProvider"),
            ("onnxruntime-trt", "TensorrtExecutionProvider"),
        )
        if p in have
    ]
    if importlib.util.find_spec("tensorrt") is not None:
        out.append("tensorrt")
    if importlib.util.find_spec("torch") is not None:
        out.append("torch")
    return out
