"""Audio in: decode any file or bytes to mono float32, resample (whole or streaming), per-frame
loudness, chunking.

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
from vlogger.engines.loudness import SILENCE_DB, LoudnessTracker, db_level
from vlogger.engines.types import AudioChunk

__all__ = [
    "SILENCE_DB",
    "StreamResampler",
    "chunk_audio",
    "frame_energy",
    "frame_to_mono",
    "load_audio",
    "resample",
    "speech_envelope",
]

# Scale of each integer sample format to [-1, 1] (PyAV names; planar variants end in "p").
_INT_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


def frame_to_mono(frame: object) -> np.ndarray:
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
                    mono = frame_to_mono(frame)
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
    """Band-limited resampling of a whole signal: :class:`StreamResampler` fed it in one piece.

    Output length is ``round(len * dst / src)`` (halves up); a 1 kHz tone keeps its amplitude
    within 0.1 dB between 8, 16, 22.05, 44.1 and 48 kHz. Returns float32.
    """
    r = StreamResampler(src_rate, dst_rate)
    head = r.process(pcm)
    tail = r.flush()
    return np.concatenate([head, tail]) if tail.size else head


class StreamResampler:
    """Band-limited resampling of one stream in pieces, from ``rate_in`` to ``rate_out`` Hz.

    A polyphase FIR (``scipy.signal.upfirdn``) with ``scipy.signal.resample_poly``'s filter: with
    ``up / down = rate_out / rate_in`` in lowest terms, a Kaiser-windowed (beta 5) sinc of
    ``10 * max(up, down)`` upsampled taps each side, cut off at the lower Nyquist frequency. Output
    ``m`` is the filtered signal at input time ``m * rate_in / rate_out`` (zero phase, no delay on
    the stream's clock); :meth:`process` returns each output once the input it reads has arrived
    (:attr:`lookahead` input samples after its time), keeping the input history and the phase
    between pieces. :meth:`flush` ends the stream as if silence followed: the output then totals
    ``round(n * rate_out / rate_in)`` samples for ``n`` in, and the resampler starts a new stream.

    However the input is cut into pieces, the concatenated output is the same, sample for sample,
    as :func:`resample` of the whole (each output sums the same products in the same order), so
    pieces join without clicks. Mono float input (any shape, flattened); float32 output.
    """

    def __init__(self, rate_in: int, rate_out: int) -> None:
        if int(rate_in) <= 0 or int(rate_out) <= 0:
            raise ValueError(f"sample rates must be positive (got {rate_in} -> {rate_out})")
        self.rate_in, self.rate_out = int(rate_in), int(rate_out)
        ratio = Fraction(self.rate_out, self.rate_in)
        self.up, self.down = ratio.numerator, ratio.denominator
        self._half = 10 * max(self.up, self.down)
        self._h = np.zeros(0)
        if not self.identity:
            from scipy.signal import firwin

            self._h = firwin(2 * self._half + 1, 1.0 / max(self.up, self.down), window=("kaiser", 5.0))
            self._h = self._h * self.up
        # input samples one output reads, and the input offsets where an upfirdn window may start
        # so that its outputs fall on ours (s * up = half, modulo down)
        self._taps = -(-len(self._h) // self.up) if not self.identity else 1
        self._start_mod = self._half * pow(self.up, -1, self.down) % self.down if self.down > 1 else 0
        self.reset()

    @property
    def identity(self) -> bool:
        """Both rates are equal: pieces pass through unchanged."""
        return self.up == self.down

    @property
    def lookahead(self) -> int:
        """Input samples past an output's time that must arrive before it is returned."""
        return 0 if self.identity else -(-self._half // self.up)

    def reset(self) -> None:
        """Forget the stream (its pending output is dropped); the next piece starts a new one."""
        pad = self._taps + self.down  # zeros before the stream (the filter reads them)
        self._buf = np.zeros(pad)
        self._base = -pad  # input index of _buf[0]
        self._n_in = 0  # input samples received
        self._next = 0  # index of the next output

    def process(self, pcm: np.ndarray) -> np.ndarray:
        """The outputs that the input so far completes (float32; may be empty)."""
        x = np.asarray(pcm, dtype=np.float64).reshape(-1)
        if self.identity:
            return x.astype(np.float32)
        self._buf = np.concatenate([self._buf, x])
        self._n_in += x.size
        # output m reads the input up to index (m * down + half) // up
        return self._emit((self.up * self._n_in - 1 - self._half) // self.down + 1)

    def flush(self) -> np.ndarray:
        """The rest of the output, as if the input were followed by silence; then a new stream."""
        if self.identity:
            return np.zeros(0, np.float32)
        total = (2 * self._n_in * self.up + self.down) // (2 * self.down)
        last_read = ((total - 1) * self.down + self._half) // self.up
        pad = last_read + 1 - (self._base + self._buf.size)
        if pad > 0:
            self._buf = np.concatenate([self._buf, np.zeros(pad)])
        out = self._emit(total)
        self.reset()
        return out

    def _emit(self, stop: int) -> np.ndarray:
        """Outputs ``self._next`` up to ``stop`` (their input is in the buffer)."""
        from scipy.signal import upfirdn

        first = self._next
        if stop <= first:
            return np.zeros(0, np.float32)
        up, down, half = self.up, self.down, self._half
        lo = (first * down + half) // up - self._taps + 1  # the first input the first output reads
        s = lo - (lo - self._start_mod) % down  # a window start on our output grid, at or before lo
        end = ((stop - 1) * down + half) // up + 1
        y = upfirdn(self._h, self._buf[s - self._base : end - self._base], up, down)
        i0 = (first * down + half - s * up) // down
        out = y[i0 : i0 + stop - first].astype(np.float32)
        self._next = stop
        # keep what the next window needs
        lo = (stop * down + half) // up - self._taps + 1 - down
        if lo > self._base:
            self._buf = self._buf[lo - self._base :]
            self._base = lo
        return out


def frame_energy(pcm: np.ndarray, rate: int, fps: float, n_frames: int | None = None) -> np.ndarray:
    """Loudness of each video frame as RMS in dBFS (0 dBFS = a full-scale square wave).

    Value ``i`` covers samples ``[floor(i*rate/fps + 1/2), floor((i+1)*rate/fps + 1/2))``, i.e. the
    time span ``[i/fps, (i+1)/fps)`` (a :class:`~vlogger.engines.loudness.LoudnessTracker` bin).
    Each frame's mean is removed first, so DC offset does not read as loudness. Frames with no
    samples (past the end) or digital silence read :data:`SILENCE_DB`. ``n_frames`` defaults to
    enough frames to cover the audio. Returns float32 shape (n_frames,). A full-scale sine reads
    about -3 dBFS; speech from piper about -20 to -12 dBFS.
    """
    if fps <= 0 or rate <= 0:
        raise ValueError(f"fps and rate must be positive (got fps={fps}, rate={rate})")
    x = np.asarray(pcm, dtype=np.float64).reshape(-1)
    if n_frames is None:
        n_frames = math.ceil(x.shape[0] * fps / rate - 1e-9)
    tracker = LoudnessTracker(fps)
    tracker.add(x, rate, 0)
    return tracker.db_range(0, n_frames).astype(np.float32)


def speech_envelope(
    pcm: np.ndarray,
    rate: int,
    fps: float,
    n_frames: int | None = None,
    floor_db: float = -50.0,
    full_db: float = -15.0,
) -> np.ndarray:
    """A 0..1 speech-energy envelope per video frame, same framing as :func:`frame_energy`.

    A fixed (causal, clip-independent) mapping (:func:`~vlogger.engines.loudness.db_level`):
    ``floor_db`` and below -> 0, ``full_db`` and above -> 1, linear in dB between. Piper speech
    peaks near 1 on vowels and falls to 0 in pauses.
    """
    if full_db <= floor_db:
        raise ValueError("full_db must be above floor_db")
    return db_level(frame_energy(pcm, rate, fps, n_frames), floor_db, full_db).astype(np.float32)


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
