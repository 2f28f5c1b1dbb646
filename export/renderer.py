"""The diffusion renderer's export contract and its ONNX export / parity check (torch is lazy).

The graph is the denoiser of one window (ControlNet-style control branch included):

inputs:
    x        float32 (batch, frames, 3, size, size)        noisy frames x_t, in [-1, 1] scale
    t        float32 (batch,)                              diffusion step (0..train_steps)
    ref      float32 (batch, 3, size, size)                the reference photo (crop), [-1, 1]
    control  float32 (batch, frames, control, size, size)  controls (CONTROL_CHANNELS) + known mask
                                                           + known frames (see engines/render/diffusion)
outputs:
    eps      float32 (batch, frames, 3, size, size)        the predicted noise

``batch`` and ``frames`` are dynamic (the window length N is a runtime setting; 8 by default).
The model description (model config, crop, sampler, how it was trained) is JSON in the ONNX
metadata under :data:`METADATA_KEY`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vlogger.export.contract import OnnxContract, TensorSpec

__all__ = ["METADATA_KEY", "RENDER_DENOISER", "export_denoiser", "parity", "renderer_sizes"]

METADATA_KEY = "vlogger_renderer"

_IMG = ("batch", "frames", "3", "size", "size")

#: The renderer's denoiser graph.
RENDER_DENOISER = OnnxContract(
    inputs=(
        TensorSpec("x", _IMG, (0, 1)),
        TensorSpec("t", ("batch",), (0,)),
        TensorSpec("ref", ("batch", "3", "size", "size"), (0,)),
        TensorSpec("control", ("batch", "frames", "control", "size", "size"), (0, 1)),
    ),
    outputs=(TensorSpec("eps", _IMG, (0, 1)),),
    opset=18,
    metadata_key=METADATA_KEY,
)


def renderer_sizes(size: int, control: int) -> dict[str, int]:
    """The fixed symbols of :data:`RENDER_DENOISER` for a model."""
    return {"size": int(size), "control": int(control)}


def export_denoiser(model: Any, path: str | Path, metadata: dict, frames: int = 8) -> Path:
    """Export a torch denoiser (``forward(x, t, ref, control) -> eps``) to ONNX with the contract."""
    import torch

    size, control = int(metadata["model"]["size"]), int(metadata["model"]["control_channels"])
    sizes = {**renderer_sizes(size, control), "batch": 1, "frames": frames}
    args = [torch.zeros(RENDER_DENOISER.shape(s.name, sizes)) for s in RENDER_DENOISER.inputs]
    return RENDER_DENOISER.export(model, args, path, metadata)


def parity(model: Any, onnx_path: str | Path, batch: int = 1, frames: int = 8, seed: int = 0) -> float:
    """Max |torch - onnxruntime| of ``eps`` on random inputs (the denoiser alone)."""
    import torch

    from vlogger.engines.backends import make_runner

    runner = make_runner(onnx_path)
    meta = json.loads(getattr(runner, "metadata")[METADATA_KEY])  # noqa: B009
    size, control = int(meta["model"]["size"]), int(meta["model"]["control_channels"])
    sizes = {**renderer_sizes(size, control), "batch": batch, "frames": frames}
    rng = np.random.default_rng(seed)
    feed = {
        s.name: rng.standard_normal(RENDER_DENOISER.shape(s.name, sizes)).astype(np.float32)
        for s in RENDER_DENOISER.inputs
    }
    feed["t"] = rng.uniform(1, 1000, size=batch).astype(np.float32)
    with torch.no_grad():
        ref = model.eval()(*(torch.from_numpy(feed[n]) for n in RENDER_DENOISER.input_names)).numpy()
    got = runner.infer(feed)["eps"]
    return float(np.abs(ref - got).max())
