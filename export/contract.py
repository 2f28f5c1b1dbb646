"""Export contracts: one object per graph that the ONNX export, the runtime and the TensorRT builder share.

A contract names every input and output, its symbolic dims and which are dynamic axes; with the
model's concrete sizes it gives shapes, ``torch.onnx.export`` dynamic axes and TensorRT
optimisation-profile (min, opt, max) shapes, so the three never disagree.
(``export/motion.py`` has the motion network's contract in the same shape; it can move onto
this base.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
