"""The ONNX contract of the streaming motion network: names, shapes, dynamic axes, shape profiles.

One object (:data:`MOTION_STEP`) is used by the ONNX export (``training/motion/export.py``), by
the runtime engine (``engines/motion/network.py``) and, later, by TensorRT optimisation profiles,
so the three never disagree.

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

from dataclasses import dataclass

__all__ = ["METADATA_KEY", "MOTION_STEP", "OnnxContract", "TensorSpec"]

#: ONNX ``metadata_props`` key holding the JSON with mean, std, feature_config, model_config.
METADATA_KEY = "vlogger_motion"


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output."""

    name: str
    """Tensor name in the graph."""
    dims: tuple[str, ...]
    """Symbolic dims; resolved by :meth:`OnnxContract.shape`."""
    dynamic: tuple[int, ...] = ()
    """Indices of the dims that are dynamic axes."""


@dataclass(frozen=True)
class OnnxContract:
    """Names, shapes and dynamic axes of a graph, plus the opset it is exported with."""

    inputs: tuple[TensorSpec, ...]
    """Graph inputs, in the order of the torch ``forward``."""
    outputs: tuple[TensorSpec, ...]
    """Graph outputs, in order."""
    opset: int = 18
    """ONNX opset."""

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """For ``torch.onnx.export(dynamic_axes=...)``."""
        return {s.name: {i: s.dims[i] for i in s.dynamic} for s in (*self.inputs, *self.outputs) if s.dynamic}

    def shape(self, name: str, sizes: dict[str, int]) -> tuple[int, ...]:
        """Concrete shape of a tensor; ``sizes`` maps symbols ("batch", "layers", ...) to ints and
        may use ``"window-1"``."""
        spec = next(s for s in (*self.inputs, *self.outputs) if s.name == name)
        return tuple(int(sizes[d]) if not d.isdigit() else int(d) for d in spec.dims)

    def profiles(
        self,
        sizes: dict[str, int],
        batches: tuple[int, int, int] = (1, 2, 2),
        qs: tuple[int, int, int] = (1, 1, 2),
    ) -> dict:
        """TensorRT-style (min, opt, max) shapes of every input for the batch and q sizes given."""
        out = {}
        for s in self.inputs:
            out[s.name] = tuple(
                self.shape(s.name, {**sizes, "batch": b, "q": q}) for b, q in zip(batches, qs, strict=True)
            )
        return out


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
)
