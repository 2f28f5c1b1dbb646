"""Settings of the ``diffusion`` renderer."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DiffusionConfig"]


@dataclass(frozen=True)
class DiffusionConfig:
    """How the diffusion renderer loads its model and samples windows."""

    model: str | None = None
    """Path of the renderer ONNX; None: the shipped test model (tiny, 32 px, trained on generated
    frames of the default portrait only: a plumbing test, not a quality model)."""
    backend: str = "onnxruntime"
    """Inference backend: onnxruntime, onnxruntime-cuda, onnxruntime-trt or tensorrt (engine path)."""
    threads: int = 1
    """onnxruntime intra-op threads."""
    steps: int | None = None
    """Sampling steps per window; None: the step count the model was distilled for (metadata), else 4."""
    window: int | None = None
    """Frames per window N (each new window keeps N/2 known frames); None: the model's (8)."""
    start: float | None = None
    """Sampling starts at this fraction of the training steps from the noised partial view
    (1.0 = from pure noise); None: the model's setting."""
    eta: float = 0.0
    """DDIM stochasticity (0 deterministic, 1 DDPM-like)."""
    seed: int = 0
    """Seed of the sampling noise (same seed, same inputs: same frames)."""
    feather: float = 0.08
    """Width of the soft edge where the generated crop meets the warp frame, as a share of the crop."""
    cache_dir: str | None = None
    """TensorRT engine cache folder (onnxruntime-trt); None: the user cache's ``trt`` folder
    (``vlogger.engines.cache.cache_dir("trt")``, honouring ``$VLOGGER_CACHE_DIR``)."""
    fp16: bool = True
    """Allow fp16 on GPU backends."""
    cuda_graph: bool = False
    """Capture CUDA graphs on GPU backends (static window shapes)."""
