"""onnxruntime runners: CPU, CUDA and the TensorRT execution provider (with its engine cache)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlogger.engines.cache import cache_dir

from .base import BackendUnavailable

__all__ = ["OrtConfig", "OrtRunner", "load_with_metadata", "ort_providers"]

_PROVIDER = {
    "onnxruntime": "CPUExecutionProvider",
    "onnxruntime-cuda": "CUDAExecutionProvider",
    "onnxruntime-trt": "TensorrtExecutionProvider",
}


@dataclass(frozen=True)
class OrtConfig:
    """Session settings of an onnxruntime runner."""

    threads: int = 1
    """``intra_op_num_threads`` (1 keeps one core per stream on the CPU)."""
    device_id: int = 0
    """CUDA device for the CUDA and TensorRT providers."""
    fp16: bool = True
    """TensorRT EP: allow fp16 kernels (``trt_fp16_enable``)."""
    cache_dir: str | None = None
    """TensorRT EP: engine and timing cache folder (``trt_engine_cache_path``); None: the user
    cache's ``trt`` folder (:func:`~vlogger.engines.cache.cache_dir`: ``$VLOGGER_CACHE_DIR/trt``,
    else ``~/.cache/vlogger/trt``), where ``vlogger export`` keeps its engines too."""
    cuda_graph: bool = False
    """Capture CUDA graphs (``enable_cuda_graph`` / ``trt_cuda_graph_enable``): static shapes only."""
    profile_shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=dict
    )
    """TensorRT EP: (min, opt, max) shape of each dynamic input (from the export contract)."""


def _shape_list(shapes: dict[str, tuple[int, ...]]) -> str:
    return ",".join(f"{k}:{'x'.join(str(d) for d in v)}" for k, v in shapes.items())


def ort_providers(backend: str, config: OrtConfig) -> list:
    """The provider list for ``backend`` (documented onnxruntime option names), CPU last as fallback.

    Raises BackendUnavailable when this onnxruntime build lacks the provider.
    """
    import onnxruntime as ort

    want = _PROVIDER.get(backend)
    if want is None:
        raise BackendUnavailable(
            f"unknown onnxruntime backend {backend!r} (choose from {', '.join(_PROVIDER)})"
        )
    have = ort.get_available_providers()
    if want not in have:
        raise BackendUnavailable(
            f"backend {backend!r} needs onnxruntime's {want}, which this installation lacks "
            f"(it has {', '.join(have)}): install the GPU extra (`pip install onnxruntime-gpu` in place of "
            "onnxruntime, with CUDA 12; plus TensorRT 10 for the TensorRT provider) on a machine with an "
            "NVIDIA GPU"
        )
    if backend == "onnxruntime":
        return ["CPUExecutionProvider"]
    cuda = (
        "CUDAExecutionProvider",
        {"device_id": config.device_id, "enable_cuda_graph": "1" if config.cuda_graph else "0"},
    )
    if backend == "onnxruntime-cuda":
        return [cuda, "CPUExecutionProvider"]
    trt: dict[str, object] = {
        "device_id": config.device_id,
        "trt_fp16_enable": config.fp16,
        "trt_cuda_graph_enable": config.cuda_graph,
    }
    cache = Path(config.cache_dir) if config.cache_dir else cache_dir("trt")
    cache.mkdir(parents=True, exist_ok=True)
    trt.update(
        trt_engine_cache_enable=True,
        trt_engine_cache_path=str(cache),
        trt_timing_cache_enable=True,
        trt_timing_cache_path=str(cache),
    )
    if config.profile_shapes:
        for i, key in enumerate(
            ("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes")
        ):
            trt[key] = _shape_list({k: v[i] for k, v in config.profile_shapes.items()})
    return [("TensorrtExecutionProvider", trt), cuda, "CPUExecutionProvider"]


class OrtRunner:
    """An ONNX model in an onnxruntime session on one provider."""

    def __init__(
        self, model: str | Path | bytes, backend: str = "onnxruntime", config: OrtConfig | None = None
    ):
        import onnxruntime as ort

        self.config = config or OrtConfig()
        self.name = backend
        providers = ort_providers(backend, self.config)
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.config.threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        src = model if isinstance(model, bytes) else str(model)
        if not isinstance(model, bytes) and not Path(model).is_file():
            raise FileNotFoundError(f"ONNX model not found: {model}")
        self.session = ort.InferenceSession(src, sess_options=so, providers=providers)
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    def infer(self, feed: Mapping[str, np.ndarray], *, release_memory: bool = False) -> dict[str, np.ndarray]:
        """Run once. ``release_memory``: hand the CPU memory arena this run grew back to the system
        when it ends (onnxruntime otherwise keeps it for the next run; for rare, large inputs)."""
        missing = [n for n in self.input_names if n not in feed]
        if missing:
            raise KeyError(f"missing model inputs: {', '.join(missing)}")
        options = None
        if release_memory:
            import onnxruntime as ort

            options = ort.RunOptions()
            options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        outs = self.session.run(None, {n: np.ascontiguousarray(feed[n]) for n in self.input_names}, options)
        return dict(zip(self.output_names, outs, strict=True))


def load_with_metadata(
    path: Path, what: str, key: str, threads: int = 1, backend: str = "onnxruntime"
) -> tuple[OrtRunner, dict]:
    """A packaged vlogger ONNX model in a runner, and the JSON metadata it carries under ``key``.

    InputError naming ``what`` when the file is missing or is not such a model.
    """
    import json

    from vlogger.engines.errors import InputError

    if not path.is_file():
        raise InputError(f"{what} model {str(path)!r} does not exist")
    runner = OrtRunner(path, backend, OrtConfig(threads=int(threads)))
    raw = runner.metadata.get(key)
    if raw is None:
        raise InputError(f"{str(path)!r} is not a vlogger {what} (no {key!r} metadata)")
    return runner, json.loads(raw)
