"""The ``diffusion`` renderer: the warp frame refined by a temporal diffusion model in a face crop.

Per frame the warp renderer draws the whole frame (the "reference partial view" and the fallback
outside the crop); :class:`~vlogger.engines.avatar.controls.ControlBuilder` draws the controls in
the model's face-and-shoulders crop; windows of N frames are sampled (``window.py``) and each
generated crop is upscaled and pasted back into its warp frame with a feathered edge.

Two ways to drive it:

* ``render(posed)`` (the Renderer protocol, used by the server): causal, one new frame per call,
  with the previous N-1 generated frames known (costs one N-frame window per frame);
* ``push(posed) -> frames`` / ``flush()`` (offline renders): the paper's outpainting, windows of N
  with N/2 known and N/2 new frames (N/2 frames of latency, half the compute per frame of ``render``).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from vlogger.engines.avatar.controls import (
    ControlBuilder,
    CropBox,
    crop_image,
    face_crop,
    from_model_image,
    to_model_image,
)
from vlogger.engines.avatar.types import AvatarFit, PosedFrame
from vlogger.engines.backends import OrtConfig, make_runner
from vlogger.engines.backends.base import Runner
from vlogger.engines.diffusion import PredictionType
from vlogger.engines.errors import InputError
from vlogger.engines.render.warp import WarpConfig, WarpRenderer

from .config import DiffusionConfig
from .window import Outpainter, WindowSampler, frame_scheduler

__all__ = ["METADATA_KEY", "TEST_MODEL", "DiffusionRenderer", "load_model_metadata", "model_crop"]

#: The shipped test model (see assets/TEST_MODEL.md).
TEST_MODEL = Path(__file__).with_name("assets") / "test_renderer.onnx"
METADATA_KEY = "vlogger_renderer"  # = vlogger.export.renderer.METADATA_KEY (export imports torch lazily)
#: The metadata's ``sampler.prediction`` -> the scheduler's ``prediction_type``.
_PREDICTION: dict[str, PredictionType] = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}


def load_model_metadata(runner: Runner) -> dict:
    """The model's JSON description from the ONNX metadata (InputError when absent)."""
    meta = getattr(runner, "metadata", {}) or {}
    if METADATA_KEY not in meta:
        raise InputError(
            f"the renderer model lacks its '{METADATA_KEY}' metadata: export it with vlogger export"
        )
    return json.loads(meta[METADATA_KEY])


def model_crop(meta: dict, fit: AvatarFit, shape: tuple[int, ...]) -> CropBox:
    """The crop the model was trained on: face-and-shoulders (``face``) or the ``whole`` frame."""
    crop = meta.get("crop", {"mode": "face", "scale": 4.0, "drop": 0.6})
    if crop.get("mode") == "whole":
        h, w = int(shape[0]), int(shape[1])
        side = max(h, w)
        return CropBox(float((w - side) // 2), float((h - side) // 2), float(side))
    return face_crop(fit, shape, float(crop.get("scale", 4.0)), float(crop.get("drop", 0.6)))


class DiffusionRenderer:
    """Renders posed frames with a few-step temporal diffusion model (onnxruntime or TensorRT)."""

    name = "diffusion"

    def __init__(
        self,
        image: np.ndarray,
        fit: AvatarFit,
        config: DiffusionConfig | None = None,
        warp_config: WarpConfig | None = None,
        runner: Runner | None = None,
    ) -> None:
        self.config = cfg = config or DiffusionConfig()
        self.warp = WarpRenderer(image, fit, warp_config)
        if runner is None:
            path = Path(cfg.model) if cfg.model else TEST_MODEL
            if not path.is_file():
                raise InputError(f"the diffusion renderer model {path} does not exist")
            # cache_dir None: the user cache's trt folder (see OrtConfig.cache_dir)
            opts = OrtConfig(cfg.threads, fp16=cfg.fp16, cache_dir=cfg.cache_dir, cuda_graph=cfg.cuda_graph)
            runner = make_runner(path, cfg.backend, opts)
        self.runner = runner
        meta = self.meta = load_model_metadata(runner) if cfg.backend != "tensorrt" else _sidecar(cfg.model)
        self.size = int(meta["model"]["size"])
        sampling = meta.get("sampler", {})
        train_steps = int(sampling.get("train_steps", 1000))
        steps = int(cfg.steps or sampling.get("steps", 4))
        start = float(cfg.start if cfg.start is not None else sampling.get("start", 0.8))
        if not 0.0 < start <= 1.0:
            raise InputError(f"diffusion start must be in (0, 1], got {start}")
        start_step = max(steps, round(start * train_steps))
        self.window = int(cfg.window or meta.get("window", 8))
        self.crop = model_crop(meta, fit, image.shape)
        self.controls = ControlBuilder(fit, self.crop, self.size)
        ref = to_model_image(crop_image(np.ascontiguousarray(image), self.crop, self.size))
        prediction = str(sampling.get("prediction", "eps"))
        if prediction not in _PREDICTION:
            raise InputError(f"unknown model prediction {prediction!r} (one of {', '.join(_PREDICTION)})")
        sampler = frame_scheduler(train_steps, cfg.eta, _PREDICTION[prediction])
        self.windows = WindowSampler(runner, sampler, steps, start_step)
        self.outpainter = Outpainter(self.windows, ref, self.window, cfg.seed)
        self._paste = _PasteBack(self.crop, image.shape, cfg.feather)
        self._queued: list[np.ndarray] = []

    # -- the Renderer protocol (causal) ----------------------------------------------------------

    def render(self, posed: PosedFrame) -> np.ndarray:
        """The frame for ``posed`` now (causal: the previous frames are the known ones)."""
        warped = self.warp.render(posed)
        out = self.outpainter.step_one(self.controls.build(posed, warped))
        return self._paste(warped, out)

    def reset(self) -> None:
        """Forget the window history and the frames in flight (a new stream, an interruption)."""
        self.outpainter.reset()
        self._queued = []

    def close(self) -> None:
        """Drop the queued frames (the inference sessions are freed with the renderer)."""
        self._queued = []

    # -- offline: windows with 50% overlap -------------------------------------------------------

    def push(self, posed: PosedFrame) -> list[np.ndarray]:
        """Queue a frame; returns finished frames (N/2 at a time, N for the first window), in order."""
        warped = self.warp.render(posed)
        self._queued.append(warped)
        return self._emit(self.outpainter.push(self.controls.build(posed, warped)))

    def flush(self) -> list[np.ndarray]:
        """Finish the queued frames (end of the stream)."""
        return self._emit(self.outpainter.flush())

    def _emit(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        frames = [self._paste(w, c) for w, c in zip(self._queued[: len(crops)], crops, strict=True)]
        self._queued = self._queued[len(crops) :]
        return frames


def _sidecar(model: str | None) -> dict:
    """A TensorRT engine carries no ONNX metadata: read ``<engine>.json`` written by ``vlogger export``."""
    if not model:
        raise InputError("the tensorrt backend needs DiffusionConfig.model = a built engine path")
    side = Path(model).with_suffix(".json")
    if not side.is_file():
        raise InputError(f"{side} (the engine's metadata, written by vlogger export) is missing")
    return json.loads(side.read_text())


class _PasteBack:
    """Upscales a generated crop and blends it into the warp frame with a feathered square edge."""

    def __init__(self, crop: CropBox, shape: tuple[int, ...], feather: float) -> None:
        h, w = int(shape[0]), int(shape[1])
        x0, y0, side = crop.ints()
        self.box = (x0, y0, side)
        # the part of the crop inside the frame
        self.fx0, self.fy0 = max(x0, 0), max(y0, 0)
        self.fx1, self.fy1 = min(x0 + side, w), min(y0 + side, h)
        ramp = max(1.0, feather * side)
        yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
        d = np.minimum.reduce([xx + 0.5, yy + 0.5, side - xx - 0.5, side - yy - 0.5])
        alpha = np.clip(d / ramp, 0.0, 1.0)
        alpha = alpha[self.fy0 - y0 : self.fy1 - y0, self.fx0 - x0 : self.fx1 - x0, None]
        # per channel, contiguous: the blend runs without broadcasting
        self.alpha = np.ascontiguousarray(np.broadcast_to(alpha, (*alpha.shape[:2], 3)))
        self.beta = 1 - self.alpha

    def __call__(self, warped: np.ndarray, crop_out: np.ndarray) -> np.ndarray:
        """Blends the crop into ``warped`` in place (a frame of its own: the warp renders a new one
        per call) and returns it."""
        x0, y0, side = self.box
        up = cv2.resize(from_model_image(crop_out), (side, side), interpolation=cv2.INTER_CUBIC)
        up = up[self.fy0 - y0 : self.fy1 - y0, self.fx0 - x0 : self.fx1 - x0]
        region = warped[self.fy0 : self.fy1, self.fx0 : self.fx1]
        blend = np.multiply(self.alpha, up)
        blend += self.beta * region
        np.add(blend, 0.5, out=blend)
        np.copyto(region, blend, casting="unsafe")
        return warped
