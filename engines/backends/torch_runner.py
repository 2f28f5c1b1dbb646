"""A torch module behind the runner interface (training and export parity checks; lazy import)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .base import BackendUnavailable

__all__ = ["TorchRunner"]


class TorchRunner:
    """Calls ``module(*inputs)`` with the named inputs in ``input_names`` order, under ``no_grad``."""

    name = "torch"

    def __init__(
        self,
        module: Any,
        input_names: Sequence[str],
        output_names: Sequence[str],
        device: str = "cpu",
        threads: int = 1,
    ) -> None:
        try:
            import torch
        except ImportError as e:
            raise BackendUnavailable(
                f"the torch backend needs the train extra (`pip install .[train]`): {e}"
            ) from None
        self._torch = torch
        if device == "cpu":
            torch.set_num_threads(threads)
        self.module = module.to(device).eval()
        self.device = device
        self.input_names = tuple(input_names)
        self.output_names = tuple(output_names)

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        args = [torch.from_numpy(np.ascontiguousarray(feed[n])).to(self.device) for n in self.input_names]
        with torch.no_grad():
            out = self.module(*args)
        outs = out if isinstance(out, tuple | list) else (out,)
        return {n: o.detach().float().cpu().numpy() for n, o in zip(self.output_names, outs, strict=True)}
