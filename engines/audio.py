"""Audio in: decode any file or bytes to mono float32, resample, per-frame loudness, chunking.

Everything here is plain numpy. Decoding goes through PyAV (FFmpeg), frame by frame, so only the
mono float32 result is ever held in memory (about 14 MB per 10 minutes at 22,050 Hz).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from vlogger.engines.errors import InputError
from vlogger.engines.types import AudioChunk

__all__ = [
    "SILENCE_DB",
    "chunk_audio",
    "frame_energy",
    "load_audio",
    "resample",
    "speech_envelope",
]

#: The loudness reported for digital silence or frames past the end of the audio (dBFS).
SILENCE_DB = -100.0

# Scale of each integer sample format to [-1, 1] (PyAV names; planar variants end in "p").
_INT_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


def _frame_to_mono(frame: object) -> np.ndarray:
    """One decoded PyAV ``AudioFrame`` to mono float32 (channels averaged, any sample format)."""
    fmt = frame.format  # type: ignore[attr-defined]
    channels = len(frame.layout.channels)  # type: ignore[attr-defined]
    data = frame.to_ndarray()  # type: ignore[attr-defined]
    name = fmt.name[:-1] if fmt.is_planar else fmt.name
    if name in ("flt", "dbl"):
        x = data.astype(np.float32, copy=False)
    elif name == "u8":
        x = (data.astype(np.float32) - 128.0) / 128.0
    elif name in _INT_SCALE:
        x = (data.astype(np.float64) / _INT_SCALE[name]).astype(np.float32)
    else:  # pragma: no cover - FFmpeg has no other sample formats today
        raise InputError(f"unsupported audio sample format {fmt.name!r}")
    if fmt.is_planar:
        x = x.reshape(channels, -1)
    else:
        x = x.reshape(-1, channels).T
    return x.mean(axis=0) if channels > 1 else x[0]


def load_audio(
    source: str | Path | bytes,
    target_rate: int | None = None,
    *,
    max_seconds: float | None = None,
) -> tuple[np.ndarray, int]:
    """Decode an audio (or video-with-sound) file to mono float32 in [-1, 1].

    ``source`` is a path or the file's bytes; any container and codec FFmpeg reads (wav, mp3,
    m4a/aac, ogg/opus/vorbis, flac, mp4 ...), any sample rate, format and channel count (channels
    are averaged). The first audio stream is used. Clipped audio and DC offset are kept as they
    are. With ``target_rate`` the result is resampled to it (see :func:`resample`).
    ``max_seconds`` refuses longer audio (checked while decoding, so memory stays bounded).
    Returns ``(pcm, sample_rate)``. Raises :class:`InputError` naming the file when it is
    missing, is not audio, has no audio stream, or holds no samples.
    """
    import av

    if isinstance(source, bytes | bytearray | memoryview):
        name = "audio data"
        handle: object = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        name = f"audio file {str(path)!r}"
        if not path.exists():
            raise InputError(f"{name} does not exist")
        if path.is_dir():
            raise InputError(f"{name} is a folder, not a file")
        handle = str(path)

    pieces: list[np.ndarray] = []
    rate = 0
    total = 0
    try:
        with av.open(handle, mode="r") as container:
            streams = container.streams.audio
            if not streams:
                raise InputError(f"{name} has no audio stream")
            stream = streams[0]
            try:
                for frame in container.decode(stream):
                    if frame.samples == 0:
                        continue
                    if rate == 0:
                        rate = int(frame.sample_rate)
                    elif int(frame.sample_rate) != rate:
                        raise InputError(f"{name} changes its sample rate mid-stream")
                    mono = _frame_to_mono(frame)
                    pieces.append(mono)
                    total += mono.shape[0]
                    if max_seconds is not None and total > max_seconds * rate:
                        raise InputError(f"{name} is longer than the limit of {max_seconds:g} s")
            except av.error.FFmpegError:
                # A truncated or partly corrupt file: keep what decoded, if anything.
                if not pieces:
                    raise
    except InputError:
        raise
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{name} is not a readable audio file ({exc})") from exc

    if total == 0 or rate <= 0:
        raise InputError(f"{name} contains no audio samples")
    pcm = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
    pcm = np.nan_to_num(pcm, nan=0.0, posinf=1.0, neginf=-1.0)
    pcm = np.clip(pcm, -1.0, 1.0).astype(np.float32, copy=False)
    if target_rate is not None and target_rate != rate:
        pcm = resample(pcm, rate, target_rate)
        rate = int(target_rate)
    return pcm, rate


def resample(pcm: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Band-limited polyphase resampling (``scipy.signal.resample_poly``, Kaiser window).

    Output length is ``ceil(len * dst / src)``; a 1 kHz tone keeps its amplitude within 0.1 dB
    between 8, 16, 22.05, 44.1 and 48 kHz. Returns float32.
    """
    from scipy.signal import resample_poly

    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError(f"sample rates must be positive (got {src_rate} -> {dst_rate})")
    x = np.asarray(pcm, dtype=np.float32)
    if src_rate == dst_rate or x.shape[0] == 0:
        return x.copy()
    ratio = Fraction(int(dst_rate), int(src_rate))
    y = resample_poly(x, ratio.numerator, ratio.denominator)
    return np.asarray(y, dtype=np.float32)


def _frame_bounds(n_samples: int, rate: int, fps: float, n_frames: int | None) -> tuple[np.ndarray, int]:
    if fps <= 0 or rate <= 0:
        raise ValueError(f"fps and rate must be positive (got fps={fps}, rate={rate})")
    if n_frames is None:
        n_frames = math.ceil(n_samples * fps / rate - 1e-9)
    edges = np.round(np.arange(n_frames + 1) * (rate / fps)).astype(np.int64)
    return np.clip(edges, 0, n_samples), n_frames


def frame_energy(pcm: np.ndarray, rate: int, fps: float, n_frames: int | None = None) -> np.ndarray:
    """Loudness of each video frame as RMS in dBFS (0 dBFS = a full-scale square wave).

    Value ``i`` covers samples ``[round(i*rate/fps), round((i+1)*rate/fps))``, i.e. the time span
    ``[i/fps, (i+1)/fps)``. Each frame's mean is removed first, so DC offset does not read as
    loudness. Frames with no samples (past the end) or digital silence read :data:`SILENCE_DB`.
    ``n_frames`` defaults to enough frames to cover the audio. Returns float32 shape (n_frames,).
    A full-scale sine reads about -3 dBFS; speech from piper about -20 to -12 dBFS.
    """
    x = np.asarray(pcm, dtype=np.float64).reshape(-1)
    edges, n = _frame_bounds(x.shape[0], rate, fps, n_frames)
    out = np.full(n, SILENCE_DB, dtype=np.float64)
    if n == 0 or x.shape[0] == 0:
        return out.astype(np.float32)
    csum = np.concatenate([[0.0], np.cumsum(x)])
    csq = np.concatenate([[0.0], np.cumsum(x * x)])
    a, b = edges[:-1], edges[1:]
    count = (b - a).astype(np.float64)
    has = count > 0
    mean = np.where(has, (csum[b] - csum[a]) / np.maximum(count, 1), 0.0)
    var = np.where(has, (csq[b] - csq[a]) / np.maximum(count, 1) - mean * mean, 0.0)
    rms = np.sqrt(np.maximum(var, 0.0))
    with np.errstate(divide="ignore"):
        db = 20.0 * np.log10(rms)
    out[has] = np.maximum(db[has], SILENCE_DB)
    return out.astype(np.float32)


def speech_envelope(
    pcm: np.ndarray,
    rate: int,
    fps: float,
    n_frames: int | None = None,
    floor_db: float = -50.0,
    full_db: float = -15.0,
) -> np.ndarray:
    """A 0..1 speech-energy envelope per video frame, same framing as :func:`frame_energy`.

    A fixed (causal, clip-independent) mapping: ``floor_db`` and below -> 0, ``full_db`` and
    above -> 1, linear in dB between. Piper speech peaks near 1 on vowels and falls to 0 in pauses.
    """
    if full_db <= floor_db:
        raise ValueError("full_db must be above floor_db")
    db = frame_energy(pcm, rate, fps, n_frames).astype(np.float64)
    return np.clip((db - floor_db) / (full_db - floor_db), 0.0, 1.0).astype(np.float32)


def chunk_audio(
    pcm: np.ndarray,
    rate: int,
    chunk_seconds: float = 0.5,
    start_pts: float = 0.0,
    start_sample: int | None = None,
) -> Iterator[AudioChunk]:
    """Cut a mono signal into consecutive :class:`AudioChunk` s on one stream clock.

    Chunk ``k`` starts at sample ``start_sample + k*step`` (``step = round(chunk_seconds*rate)``)
    with ``pts = start_pts + k*step/rate``; the last chunk may be shorter. ``start_sample``
    defaults to ``round(start_pts * rate)``. An empty signal yields nothing.
    """
    if chunk_seconds <= 0:
        raise ValueError("chunk_seconds must be positive")
    x = np.asarray(pcm, dtype=np.float32).reshape(-1)
    step = max(1, round(chunk_seconds * rate))
    first = round(start_pts * rate) if start_sample is None else int(start_sample)
    for off in range(0, x.shape[0], step):
        yield AudioChunk(
            pcm=x[off : off + step],
            sample_rate=int(rate),
            pts=start_pts + off / rate,
            sample_offset=first + off,
        )
