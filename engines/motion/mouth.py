"""The learned mouth at run time: Whisper features -> the rig's 9 mouth coefficients (onnxruntime).

A linear read-out trained on real speakers (``training/motion/mouth.py``; data and scores in
``engines/motion/assets/MODEL_CARD.md``): frame ``i``'s mouth is an affine map of the features of
frames ``i - context .. i`` (the same features the motion network reads, so it adds no encoder
call), clipped to [0, 1], times a speech gate: a second affine map of the same features
("presence", learned against generated silence, noise, hum and music) ramped between two
thresholds and held open for a few frames, so the mouth stays closed in silence and does not sing
along with music. Causal: it needs no audio beyond the features' own lookahead. The motion
network engine uses it for the mouth channels (``NetworkConfig.mouth = "readout"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_MOUTH_MODEL",
    "METADATA_KEY",
    "EnergyGate",
    "MouthModel",
    "MouthReadout",
    "load_mouth_model",
]

#: File name of the packaged read-out under ``engines/motion/assets``.
DEFAULT_MOUTH_MODEL = "mouth_readout.onnx"
#: ONNX metadata key of the read-out's settings (JSON).
METADATA_KEY = "vlogger_mouth_readout"


@dataclass(frozen=True)
class MouthModel:
    """A loaded read-out (shareable between engines: ``run`` is thread-safe)."""

    runner: Any
    """The backend runner (:class:`~vlogger.engines.backends.ort.OrtRunner`): ``features``
    (n, context + 1, 768) -> ``mouth`` (n, 9), ``presence`` (n, 1)."""
    context: int
    """Previous frames the read-out stacks with the current one."""
    lookahead_frames: int
    """The feature lookahead it was trained with (must match the engine's features)."""
    feature_mean: np.ndarray
    """(768,) float32 mean of the training features (for reference)."""
    path: str
    """The file it was loaded from."""
    gate_lo: float = 0.0
    """Presence at or below which the mouth is closed."""
    gate_hi: float = 1.0
    """Presence at or above which the mouth is the read-out's."""
    hold_frames: int = 0
    """Frames the gate stays open after speech."""

    def run(self, stacked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, 9) ungated coefficients and (n,) gate values (before the hold) of ``stacked``
        (n, context + 1, 768) feature histories."""
        out = self.runner.infer({"features": np.asarray(stacked, np.float32)})
        mouth = np.nan_to_num(np.asarray(out["mouth"], np.float32), nan=0.0)
        p = np.nan_to_num(np.asarray(out["presence"], np.float32).reshape(-1), nan=0.0)
        gate = np.clip((p - self.gate_lo) / max(self.gate_hi - self.gate_lo, 1e-6), 0.0, 1.0)
        return mouth, gate.astype(np.float32)


def _default_path() -> Path:
    return Path(str(resources.files("vlogger.engines.motion").joinpath("assets", DEFAULT_MOUTH_MODEL)))


def load_mouth_model(
    path: str | Path | None = None, threads: int = 1, backend: str = "onnxruntime"
) -> MouthModel:
    """Load a mouth read-out (``None`` = the packaged one) into a backend runner (CPU by default)."""
    from vlogger.engines.backends.ort import load_with_metadata

    p = Path(path) if path is not None else _default_path()
    runner, meta = load_with_metadata(p, "mouth read-out", METADATA_KEY, threads, backend)
    return MouthModel(
        runner=runner,
        context=int(meta["spec"]["context"]),
        lookahead_frames=int(meta["feature_config"]["lookahead_frames"]),
        feature_mean=np.asarray(meta["feature_mean"], np.float32),
        path=str(p),
        gate_lo=float(meta["gate"]["lo"]),
        gate_hi=float(meta["gate"]["hi"]),
        hold_frames=int(meta["gate"]["hold_frames"]),
    )


class MouthReadout:
    """One stream's read-out: ``step(feature) -> (9,)`` per frame, keeping the last ``context``
    features; ``reset()`` starts a new stream (its first feature stands for the frames before it,
    as in training)."""

    def __init__(self, model: MouthModel) -> None:
        self.model = model
        self.reset()

    def reset(self) -> None:
        self._history: np.ndarray | None = None
        self._gates: list[float] = []

    def step(self, feature: np.ndarray) -> np.ndarray:
        """The mouth coefficients (9,) of the next frame, from its feature (768,)."""
        f = np.asarray(feature, np.float32).reshape(-1)
        if self._history is None:
            self._history = np.tile(f, (self.model.context + 1, 1))
        h = self._history
        h[1:] = h[:-1].copy()
        h[0] = f
        mouth, gate = self.model.run(h[None])
        self._gates = [*self._gates, float(gate[0])][-(self.model.hold_frames + 1) :]
        return (mouth[0] * max(self._gates)).astype(np.float32)

    def offline(self, features: np.ndarray) -> np.ndarray:
        """(n, 9) for a whole clip's features (n, 768), equal to ``step`` over them from a reset."""
        f = np.asarray(features, np.float32)
        if not len(f):
            return np.zeros((0, 9), np.float32)
        k = self.model.context + 1
        padded = np.concatenate([np.repeat(f[:1], k - 1, axis=0), f])
        idx = np.arange(len(f))[:, None] + (k - 1) - np.arange(k)[None, :]
        mouth, gate = self.model.run(padded[idx])
        held = gate.copy()
        for j in range(1, self.model.hold_frames + 1):
            held[j:] = np.maximum(held[j:], gate[:-j])
        return (mouth * held[:, None]).astype(np.float32)


class EnergyGate:
    """Closes the mouth when the audio falls well below the speech just heard: a frame's gate is
    ``clip((loud - (peak - drop_db)) / width_db, 0, 1)`` with ``loud`` the loudest of the frame, the
    one before and the ``lookahead`` after (as far as the features look), and ``peak`` the loudest
    frame of the last ``peak_s`` seconds up to there. The read-out's features see 2 s of audio, so
    for a while after speech stops silence still reads as speech to it; this closes the mouth as
    soon as the sound itself has stopped. Left open when everything heard is quiet (the speech gate
    covers that). On the real clips it changes the held-out lip sync by +0.001 (0.617 -> 0.618).

    ``push(frame, db)`` gives frame loudness in dBFS in frame order; ``gate(frame)`` needs the frames
    up to ``frame + lookahead`` pushed; ``forget_from(frame)`` drops what an interruption discarded.
    """

    def __init__(
        self,
        lookahead: int = 2,
        drop_db: float = 35.0,
        width_db: float = 10.0,
        peak_s: float = 3.0,
        fps: float = 25.0,
    ) -> None:
        self.lookahead, self.drop_db, self.width_db = int(lookahead), float(drop_db), float(width_db)
        self._keep = round(peak_s * fps) + self.lookahead + 2
        self._db: dict[int, float] = {}

    @property
    def next_frame(self) -> int:
        """The first frame not pushed yet."""
        return max(self._db) + 1 if self._db else 0

    def push(self, frame: int, db: float) -> None:
        self._db[int(frame)] = float(db)
        for k in [k for k in self._db if k < frame - self._keep]:
            del self._db[k]

    def forget_from(self, frame: int) -> None:
        self._db = {k: v for k, v in self._db.items() if k < frame}

    def gate(self, frame: int) -> float:
        recent = [v for k, v in self._db.items() if frame - 1 <= k <= frame + self.lookahead]
        heard = [v for k, v in self._db.items() if k <= frame + self.lookahead]
        if not recent or not heard:
            return 1.0
        peak, loud = max(heard), max(recent)
        return float(np.clip((loud - (peak - self.drop_db)) / self.width_db, 0.0, 1.0))
