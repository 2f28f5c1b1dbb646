"""TensorRT engine building and caching for contract-described ONNX graphs (TensorRT 10, lazy import).

Engines are cached under ``cache_dir/<key>.engine`` where the key hashes everything an engine
depends on: the ONNX file's content (sha256), the optimisation-profile shapes, the precision, the
TensorRT version and the GPU name. A cache hit skips the (minutes-long) build. A JSON sidecar
(``<key>.json``) carries the model's metadata (TensorRT engines keep no ONNX metadata) and the key.
CUDA-graph capture happens at run time (``engines/backends/tensorrt.py``, ``cuda_graph=True``).
Written against the TensorRT 10 Python API; not run on this project's CPU-only machines.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from vlogger.engines.backends.base import BackendUnavailable
from vlogger.engines.backends.tensorrt import import_tensorrt
from vlogger.engines.cache import cache_dir as user_cache_dir
from vlogger.export.contract import OnnxContract

__all__ = [
    "PRECISIONS",
    "EngineKey",
    "build_engine",
    "default_cache_dir",
    "engine_key",
    "gpu_name",
    "onnx_sha256",
]

PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class EngineKey:
    """What a built engine depends on."""

    onnx_sha256: str
    """sha256 of the ONNX file's bytes."""
    profiles: dict
    """Input name -> (min, opt, max) shapes."""
    precision: str
    """fp32 or fp16."""
    tensorrt: str
    """TensorRT version (``tensorrt.__version__``)."""
    gpu: str
    """GPU name (engines are specific to a GPU model)."""

    def digest(self) -> str:
        blob = json.dumps(
            {**asdict(self), "profiles": {k: [list(s) for s in v] for k, v in sorted(self.profiles.items())}},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


def onnx_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def default_cache_dir() -> Path:
    """Where engines are cached unless a folder is given: the user cache's ``trt`` folder
    (:func:`vlogger.engines.cache.cache_dir`, honouring ``$VLOGGER_CACHE_DIR``), shared with the
    onnxruntime TensorRT provider's engine cache."""
    return user_cache_dir("trt")


def gpu_name(device: int = 0) -> str:
    """The CUDA GPU's name (torch when present, else nvidia-smi); BackendUnavailable without a GPU."""
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(device))
    except ImportError:
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", f"--id={device}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        raise BackendUnavailable(
            "no NVIDIA GPU found (TensorRT engines are built on the GPU that runs them)"
        ) from None


def engine_key(onnx: Path, profiles: dict, precision: str, tensorrt_version: str, gpu: str) -> EngineKey:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return EngineKey(onnx_sha256(onnx), profiles, precision, tensorrt_version, gpu)


def build_engine(
    onnx: str | Path,
    contract: OnnxContract,
    profiles: dict,
    precision: str = "fp16",
    cache_dir: str | Path | None = None,
    metadata: dict | None = None,
    workspace_gib: float = 4.0,
    log=print,
) -> Path:
    """Build (or take from the cache) the TensorRT engine of ``onnx``; returns the engine path."""
    onnx = Path(onnx)
    if not onnx.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx}")
    trt = import_tensorrt()
    missing = [n for n in contract.input_names if n not in profiles]
    if missing:
        raise ValueError(f"no shape profile for inputs {missing}")
    key = engine_key(onnx, profiles, precision, str(trt.__version__), gpu_name())
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{key.digest()}.engine"
    if path.is_file():
        log(f"engine cache hit: {path}")
        return path
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profiles.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    log(f"building the TensorRT {precision} engine of {onnx.name} (minutes) ...")
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError("TensorRT failed to build the engine (see its log above)")
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(bytes(blob))
    tmp.replace(path)
    side = {**(metadata or {}), "engine_key": asdict(key)}
    path.with_suffix(".json").write_text(json.dumps(side, indent=2, default=list))
    log(f"wrote {path}")
    return path
