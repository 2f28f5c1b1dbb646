"""The runner interface every inference backend implements: ``infer(feed) -> outputs``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

__all__ = ["BACKENDS", "BackendUnavailable", "Runner"]

#: Backend names accepted by :func:`vlogger.engines.backends.make_runner`.
BACKENDS: tuple[str, ...] = ("onnxruntime", "onnxruntime-cuda", "onnxruntime-trt", "tensorrt", "torch")


class BackendUnavailable(RuntimeError):
    """A backend cannot run here; the message names what to install (or the missing device)."""


class Runner(Protocol):
    """One loaded model on one backend. Inputs and outputs are numpy arrays keyed by graph name."""

    name: str
    """The backend name (one of :data:`BACKENDS`)."""
    input_names: tuple[str, ...]
    """Graph inputs, in order."""
    output_names: tuple[str, ...]
    """Graph outputs, in order."""

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model once on host arrays; returns every output as a host float32/int array."""
