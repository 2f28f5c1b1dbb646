"""Export contracts: one object per graph that the ONNX export, the runtime and the TensorRT builder share.

A contract names every input and output, its symbolic dims and which are dynamic axes; with the
model's concrete sizes it gives shapes, ``torch.onnx.export`` dynamic axes and TensorRT
optimisation-profile (min, opt, max) shapes, so the three never disagree. :meth:`OnnxContract.export`
is the one ``torch.onnx.export`` call of every model. The contracts: ``RENDER_DENOISER``
(``export/renderer.py``) and ``MOTION_STEP`` (``export/motion.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OnnxContract", "TensorSpec"]


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output."""

    name: str
    """Tensor name in the graph."""
    dims: tuple[str, ...]
    """Symbolic dims (names such as "batch", or digits for fixed sizes)."""
    dynamic: tuple[int, ...] = ()
    """Indices of the dims that are dynamic axes."""
    dtype: str = "float32"
    """numpy dtype name."""

    def __post_init__(self) -> None:
        for i in self.dynamic:
            if not 0 <= i < len(self.dims) or self.dims[i].isdigit():
                raise ValueError(f"{self.name}: dynamic axis {i} must be a symbolic dim of {self.dims}")


@dataclass(frozen=True)
class OnnxContract:
    """Names, shapes and dynamic axes of a graph, plus the opset and metadata key it is exported with."""

    inputs: tuple[TensorSpec, ...]
    """Graph inputs, in the order of the torch ``forward``."""
    outputs: tuple[TensorSpec, ...]
    """Graph outputs, in order."""
    opset: int = 18
    """ONNX opset."""
    metadata_key: str = ""
    """ONNX ``metadata_props`` key holding the model's JSON description."""

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def spec(self, name: str) -> TensorSpec:
        for s in (*self.inputs, *self.outputs):
            if s.name == name:
                return s
        raise KeyError(f"no tensor {name!r} in the contract")

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """For ``torch.onnx.export(dynamic_axes=...)``."""
        return {s.name: {i: s.dims[i] for i in s.dynamic} for s in (*self.inputs, *self.outputs) if s.dynamic}

    def shape(self, name: str, sizes: Mapping[str, int]) -> tuple[int, ...]:
        """Concrete shape of a tensor; ``sizes`` maps every symbol to an int."""
        return tuple(int(d) if d.isdigit() else int(sizes[d]) for d in self.spec(name).dims)

    def profiles(
        self, sizes: Mapping[str, int], ranges: Mapping[str, tuple[int, int, int]]
    ) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """TensorRT (min, opt, max) shape of every input: ``ranges`` gives (min, opt, max) of each
        dynamic symbol, ``sizes`` the fixed ones."""
        out = {}
        for s in self.inputs:
            three = [self.shape(s.name, {**sizes, **{k: v[i] for k, v in ranges.items()}}) for i in range(3)]
            out[s.name] = (three[0], three[1], three[2])
        return out

    def export(self, model: Any, args: Sequence[Any], path: str | Path, metadata: Mapping[str, Any]) -> Path:
        """``torch.onnx.export`` of ``model`` (in eval mode, no grad) traced on the example inputs
        ``args`` (one per input, in order) with the contract's names, dynamic axes and opset, then
        ``metadata`` as JSON under :attr:`metadata_key` (torch and onnx are imported here)."""
        import onnx
        import torch

        if len(args) != len(self.inputs):
            raise ValueError(
                f"{len(self.inputs)} example inputs ({', '.join(self.input_names)}), not {len(args)}"
            )
        if not self.metadata_key:
            raise ValueError("the contract has no metadata_key")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        model = model.eval()
        with torch.no_grad():
            torch.onnx.export(
                model,
                tuple(args),
                str(path),
                input_names=self.input_names,
                output_names=self.output_names,
                dynamic_axes=self.dynamic_axes(),
                opset_version=self.opset,
                dynamo=False,
            )
        proto = onnx.load(str(path))
        entry = proto.metadata_props.add()
        entry.key, entry.value = self.metadata_key, json.dumps(dict(metadata))
        onnx.save(proto, str(path))
        return path

    def check_feed(self, feed: Mapping[str, np.ndarray], sizes: Mapping[str, int]) -> None:
        """Raise ValueError when a feed misses an input or a fixed dim disagrees with ``sizes``."""
        for s in self.inputs:
            if s.name not in feed:
                raise ValueError(f"missing input {s.name!r}")
            shape = np.shape(feed[s.name])
            if len(shape) != len(s.dims):
                raise ValueError(f"input {s.name!r} must have {len(s.dims)} dims {s.dims}, got {shape}")
            for i, (d, n) in enumerate(zip(s.dims, shape, strict=True)):
                if i in s.dynamic:
                    continue
                want = int(d) if d.isdigit() else sizes.get(d)
                if want is not None and int(want) != int(n):
                    raise ValueError(f"input {s.name!r} dim {i} ({d}) must be {want}, got {n}")
