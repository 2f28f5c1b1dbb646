"""Messages that flow between engines: audio chunks, phoneme timings, motion frames.

Every chunk carries its own timing (piper's ``AudioChunk`` is the model): ``pts`` in seconds on
the stream clock, sample offsets, and phoneme timings in absolute seconds on the same clock.
Engines are plain synchronous Python with numpy in and out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "BODY_KEYPOINTS",
    "EXPRESSION_NAMES",
    "HEAD_DIMS",
    "AudioChunk",
    "MotionFrame",
    "PhonemeTiming",
    "identity_rotation6d",
]

#: Named expression coefficients of the rig, in this order everywhere (motion vectors, ONNX).
#: Ranges: jaw_open, lip_* , smile_*, upper_lip_up, lower_lip_down, blink_*, brow_* in [0, 1]
#: (0 = the photo's own face, 1 = the strongest version of the action); gaze_x, gaze_y in [-1, 1]
#: (+x = the person looks to the image's right, +y = looks down; 1 = iris at the eye corner).
EXPRESSION_NAMES: tuple[str, ...] = (
    "jaw_open",
    "lip_funnel",
    "lip_pucker",
    "lip_press",
    "lip_stretch",
    "smile_l",
    "smile_r",
    "upper_lip_up",
    "lower_lip_down",
    "blink_l",
    "blink_r",
    "brow_up",
    "brow_down",
    "gaze_x",
    "gaze_y",
)

#: Head pose residual: 6D rotation (first two columns of the rotation matrix, column-major:
#: r00, r10, r20, r01, r11, r21) then translation (tx, ty, tz) in units of the face width
#: (outer eye corner to outer eye corner) in camera space (+x right, +y down, +z away).
HEAD_DIMS = 9

#: 33 body (mediapipe pose) + 21 left hand + 21 right hand keypoints, 2D residuals in units of
#: the image height (so 0.01 moves a keypoint by 1% of the frame's height).
BODY_KEYPOINTS = 75


def identity_rotation6d() -> np.ndarray:
    """The 6D encoding of the identity rotation."""
    return np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], dtype=np.float32)


@dataclass(frozen=True)
class PhonemeTiming:
    """One phoneme and where it sits on the stream clock."""

    phoneme: str
    """The symbol: IPA (espeak/piper) when ``alphabet == "ipa"``, ARPAbet (pocketsphinx) else."""
    start: float
    """Start in seconds on the stream clock."""
    end: float
    """End in seconds on the stream clock (``end >= start``)."""
    alphabet: str = "ipa"
    """``"ipa"`` or ``"arpabet"``."""


@dataclass
class AudioChunk:
    """A span of mono audio with its timing and, when known, its phonemes."""

    pcm: np.ndarray
    """Mono float32 samples in [-1, 1], shape (n,)."""
    sample_rate: int
    """Samples per second of ``pcm`` (piper speaks at 22,050 Hz)."""
    pts: float
    """Start of the first sample in seconds on the stream clock."""
    sample_offset: int = 0
    """Index of the first sample in the whole stream (at ``sample_rate``)."""
    phonemes: list[PhonemeTiming] = field(default_factory=list)
    """Phoneme timings inside this chunk, in absolute seconds on the stream clock."""
    text: str = ""
    """The text this chunk speaks, when it came from TTS."""

    @property
    def num_samples(self) -> int:
        return int(self.pcm.shape[0])

    @property
    def duration(self) -> float:
        return self.num_samples / float(self.sample_rate)

    @property
    def end(self) -> float:
        return self.pts + self.duration


@dataclass
class MotionFrame:
    """Motion of one video frame: what the rig needs to pose the avatar."""

    index: int
    """Frame number on the stream clock (frame ``index`` shows at ``index / fps``)."""
    pts: float
    """Presentation time in seconds."""
    expression: np.ndarray
    """Expression coefficients, float32 shape (len(EXPRESSION_NAMES),)."""
    head: np.ndarray
    """Head pose residual, float32 shape (HEAD_DIMS,): 6D rotation + translation."""
    body: np.ndarray
    """Body keypoint residuals, float32 shape (BODY_KEYPOINTS, 2), units of image height."""
    speaking: bool = False
    """Whether audible speech drives this frame (for stats and tests)."""
    phoneme_share: float = 0.0
    """How much of the mouth phoneme timings drive (0..1; the phoneme-driven engine sets it, engines
    that listen to the audio alone leave 0)."""

    @staticmethod
    def neutral(index: int = 0, pts: float = 0.0) -> MotionFrame:
        head = np.zeros(HEAD_DIMS, dtype=np.float32)
        head[:6] = identity_rotation6d()
        return MotionFrame(
            index=index,
            pts=pts,
            expression=np.zeros(len(EXPRESSION_NAMES), dtype=np.float32),
            head=head,
            body=np.zeros((BODY_KEYPOINTS, 2), dtype=np.float32),
        )

    def coefficient(self, name: str) -> float:
        return float(self.expression[EXPRESSION_NAMES.index(name)])
