"""The ONNX contract of the streaming motion network: names, shapes, dynamic axes, shape profiles.

One :class:`~vlogger.export.contract.OnnxContract` (:data:`MOTION_STEP`, the same type as the
renderer's ``RENDER_DENOISER``) is used by the ONNX export (``training/motion/export.py``), by the
runtime engine (``engines/motion/network.py``) and by TensorRT optimisation profiles
(:data:`MOTION_RANGES`), so the three never disagree.

The graph is one streaming step of the transformer: one new frame (noisy, or clean with ``t = 0``
to fill the cache) against the keys and values of up to ``window - 1`` cached frames.

inputs:
    x           float32 (batch, q, motion_dim)   normalised motion of the q new frames
    audio       float32 (batch, q, audio_dim)    their audio features
    t           float32 (batch, q)                diffusion step of each (0 = clean)
    keep        float32 (batch,)                  1 = use the audio, 0 = dropped (guidance)
    past_k      float32 (layers, batch, heads, window - 1, head_dim)   cached keys, oldest first
    past_v      float32 (layers, batch, heads, window - 1, head_dim)   cached values
    past_valid  float32 (batch, window - 1)      1 where a cached frame exists
outputs:
    x0          float32 (batch, q, motion_dim)   the x0 predictions (normalised)
    k           float32 (layers, batch, heads, q, head_dim)   the new frames' keys
    v           float32 (layers, batch, heads, q, head_dim)   the new frames' values

``batch`` (cond + uncond = 2 in the runtime) and ``q`` (1, or 2 = the previous frame made clean
plus the current noisy frame in one call) are dynamic. The model's normalisation, feature
and model configs travel in the ONNX metadata under :data:`METADATA_KEY` (JSON).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vlogger.export.contract import OnnxContract, TensorSpec

__all__ = ["METADATA_KEY", "MOTION_RANGES", "MOTION_STEP", "motion_sizes"]

#: ONNX ``metadata_props`` key holding the JSON with mean, std, feature_config, model_config.
METADATA_KEY = "vlogger_motion"

_KV = ("layers", "batch", "heads", "window-1", "head_dim")
_KVQ = ("layers", "batch", "heads", "q", "head_dim")

#: The streaming step of the motion transformer.
MOTION_STEP = OnnxContract(
    inputs=(
        TensorSpec("x", ("batch", "q", "motion_dim"), (0, 1)),
        TensorSpec("audio", ("batch", "q", "audio_dim"), (0, 1)),
        TensorSpec("t", ("batch", "q"), (0, 1)),
        TensorSpec("keep", ("batch",), (0,)),
        TensorSpec("past_k", _KV, (1,)),
        TensorSpec("past_v", _KV, (1,)),
        TensorSpec("past_valid", ("batch", "window-1"), (0,)),
    ),
    outputs=(
        TensorSpec("x0", ("batch", "q", "motion_dim"), (0, 1)),
        TensorSpec("k", _KVQ, (1, 3)),
        TensorSpec("v", _KVQ, (1, 3)),
    ),
    opset=18,
    metadata_key=METADATA_KEY,
)

#: (min, opt, max) of the dynamic symbols as the runtime uses them: batch 1 (no guidance) or 2
#: (cond + uncond), q 1 or 2 (previous clean frame + current noisy frame).
MOTION_RANGES: Mapping[str, tuple[int, int, int]] = {"batch": (1, 2, 2), "q": (1, 1, 2)}


def motion_sizes(model_config: Mapping[str, Any]) -> dict[str, int]:
    """The fixed symbols of :data:`MOTION_STEP` for a model (its ``model_config``: the ONNX
    metadata's, or ``ModelConfig.to_dict()``)."""
    c = model_config
    return {
        "layers": int(c["layers"]),
        "heads": int(c["heads"]),
        "window-1": int(c["window"]) - 1,
        "head_dim": int(c["width"]) // int(c["heads"]),
        "motion_dim": int(c["motion_dim"]),
        "audio_dim": int(c["audio_dim"]),
    }
