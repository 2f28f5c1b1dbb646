"""Native TensorRT 10 runner (lazy import): a serialized engine, name-based I/O, ``execute_async_v3``.

Device buffers and the stream come from torch's CUDA allocator (torch is already in the ``train``
extra and needs no extra binding); with ``cuda_graph`` the enqueue is captured once per input shape
into a CUDA graph and replayed. Nothing here was run on this project's CPU-only machines: it follows
the TensorRT 10 Python API (``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``,
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .base import BackendUnavailable

__all__ = ["TensorRTRunner", "import_tensorrt"]

_INSTALL = (
    "the native TensorRT backend needs the `tensorrt` Python package (TensorRT 10, `pip install "
    "tensorrt-cu12` from NVIDIA's index) and a CUDA build of torch, on a machine with an NVIDIA GPU"
)


def import_tensorrt() -> Any:
    """``import tensorrt``, or BackendUnavailable naming what to install."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendUnavailable(f"{_INSTALL} ({e})") from None
    return trt


def _torch_cuda() -> Any:
    try:
        import torch
    except ImportError as e:
        raise BackendUnavailable(f"{_INSTALL} ({e})") from None
    if not torch.cuda.is_available():
        raise BackendUnavailable(f"{_INSTALL}: torch sees no CUDA device here")
    return torch


class TensorRTRunner:
    """A deserialized TensorRT engine with one execution context."""

    name = "tensorrt"

    def __init__(self, engine_path: str | Path, cuda_graph: bool = True, device_id: int = 0) -> None:
        trt = import_tensorrt()
        torch = _torch_cuda()
        path = Path(engine_path)
        if not path.is_file():
            raise FileNotFoundError(f"TensorRT engine not found: {path} (build it with `vlogger export`)")
        self._torch = torch
        self._device = torch.device("cuda", device_id)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BackendUnavailable(
                f"TensorRT could not load {path} (built by another TensorRT version or GPU?)"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_in = [self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names]
        self.input_names = tuple(n for n, i in zip(names, is_in, strict=True) if i)
        self.output_names = tuple(n for n, i in zip(names, is_in, strict=True) if not i)
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self._stream = torch.cuda.Stream(device=self._device)
        self._cuda_graph = cuda_graph
        self._graphs: dict[tuple, tuple[Any, dict[str, Any], dict[str, Any]]] = {}

    def _buffers(self, shapes: dict[str, tuple[int, ...]]) -> tuple[dict[str, Any], dict[str, Any]]:
        torch = self._torch
        ins, outs = {}, {}
        for n in self.input_names:
            self.context.set_input_shape(n, shapes[n])
            ins[n] = torch.empty(shapes[n], dtype=_torch_dtype(torch, self._dtypes[n]), device=self._device)
            self.context.set_tensor_address(n, ins[n].data_ptr())
        for n in self.output_names:
            shape = tuple(self.context.get_tensor_shape(n))
            outs[n] = torch.empty(shape, dtype=_torch_dtype(torch, self._dtypes[n]), device=self._device)
            self.context.set_tensor_address(n, outs[n].data_ptr())
        return ins, outs

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        shapes = {n: tuple(np.shape(feed[n])) for n in self.input_names}
        key = tuple(sorted(shapes.items()))
        entry = self._graphs.get(key)
        with torch.cuda.stream(self._stream):
            if entry is None:
                ins, outs = self._buffers(shapes)
                graph = None
                if self._cuda_graph:
                    for n in self.input_names:
                        ins[n].copy_(torch.from_numpy(np.ascontiguousarray(feed[n], dtype=self._dtypes[n])))
                    self.context.execute_async_v3(self._stream.cuda_stream)  # warm-up before capture
                    self._stream.synchronize()
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph, stream=self._stream):
                        self.context.execute_async_v3(self._stream.cuda_stream)
                entry = (graph, ins, outs)
                self._graphs[key] = entry
            graph, ins, outs = entry
            for n in self.input_names:
                ins[n].copy_(
                    torch.from_numpy(np.ascontiguousarray(feed[n], dtype=self._dtypes[n])), non_blocking=True
                )
            if graph is not None:
                graph.replay()
            else:
                for n in self.input_names:
                    self.context.set_input_shape(n, shapes[n])
                    self.context.set_tensor_address(n, ins[n].data_ptr())
                for n in self.output_names:
                    self.context.set_tensor_address(n, outs[n].data_ptr())
                self.context.execute_async_v3(self._stream.cuda_stream)
            result = {n: outs[n].float().cpu().numpy() for n in self.output_names}
        self._stream.synchronize()
        return result


def _torch_dtype(torch: Any, dtype: np.dtype) -> Any:
    return {
        np.float32: torch.float32,
        np.float16: torch.float16,
        np.int32: torch.int32,
        np.int64: torch.int64,
    }[dtype.type]
