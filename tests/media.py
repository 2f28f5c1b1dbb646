"""Helpers for tests that look at real output: probe MP4 streams, decode frames, measure faces."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

SHARED_DATA = Path(
    os.environ.get("VLOGGER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


@dataclass
class StreamInfo:
    codec: str
    duration: float
    frames: int
    rate: float


def probe(path: Path) -> dict[str, StreamInfo]:
    """Codec, container duration and frame/sample rate of the first video and audio streams."""
    out: dict[str, StreamInfo] = {}
    with av.open(str(path)) as c:
        for s in c.streams:
            if s.type not in ("video", "audio") or s.type in out:
                continue
            dur = float(s.duration * s.time_base) if s.duration is not None else float("nan")
            rate = float(s.average_rate) if s.type == "video" else float(s.rate)
            out[s.type] = StreamInfo(s.codec_context.name, dur, int(s.frames), rate)
    return out


def decode_frames(path: Path) -> list[np.ndarray]:
    """All video frames as RGB uint8 arrays."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def decode_audio(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as c:
        rate = c.streams.audio[0].rate
        chunks = [f.to_ndarray().mean(axis=0) for f in c.decode(audio=0)]
    return np.concatenate(chunks).astype(np.float32), int(rate)


@dataclass
class FaceTrack:
    """Per-frame face measurements of a video, from the face landmarker on the pixels."""

    mouth: np.ndarray
    """Inner-lip gap over outer-eye-corner distance (NaN where no face was found)."""
    eyes: np.ndarray
    """Mean lid gap over eye width of both eyes (NaN where no face was found)."""
    nose: np.ndarray
    """(n, 2) nose-tip position in pixels."""


def face_track(frames: list[np.ndarray], box: tuple[int, int, int, int] | None = None) -> FaceTrack:
    """Run the face landmarker (tracking mode) over frames, optionally cropped to ``box`` (x0, y0, x1, y1)."""
    from vlogger.engines.avatar.landmarks import FaceLandmarker
    from vlogger.engines.metrics import eye_openness, mouth_opening

    mouth, eyes, nose = [], [], []
    with FaceLandmarker(static=False, max_faces=1) as fm:
        for frame in frames:
            x0, y0 = 0, 0
            if box is not None:
                x0, y0, x1, y1 = box
                frame = frame[y0:y1, x0:x1]
            found = fm.process(np.ascontiguousarray(frame))
            if not found:
                mouth.append(np.nan)
                eyes.append(np.nan)
                nose.append((np.nan, np.nan))
                continue
            pts = found[0][:, :2] + np.array([x0, y0])
            mouth.append(mouth_opening(pts))
            eyes.append(float(np.mean(eye_openness(pts))))
            nose.append(tuple(pts[1]))
    return FaceTrack(np.array(mouth), np.array(eyes), np.array(nose))


def count_dips(signal: np.ndarray, threshold: float, min_gap: int = 3) -> int:
    """Number of separate runs where ``signal`` falls below ``threshold``."""
    below = np.nan_to_num(signal, nan=np.inf) < threshold
    count, last = 0, -min_gap - 1
    for i in np.flatnonzero(below):
        if i - last > min_gap:
            count += 1
        last = i
    return count
