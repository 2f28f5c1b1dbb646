"""Write H.264 + AAC MP4 files with PyAV, atomically (nothing half-written at the target path)."""

from __future__ import annotations

import contextlib
import fractions
import os
import tempfile
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from vlogger.engines.audio import StreamResampler

__all__ = ["AAC_RATES", "Mp4Writer"]

#: Sample rates the AAC encoder accepts; others are resampled to 48 kHz.
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)


class Mp4Writer:
    """Streams RGB frames and mono float32 audio into an MP4 (H.264 yuv420p + AAC).

    Frames are written as they arrive (constant memory). The file appears at ``path`` only when
    ``close()`` succeeds; on error (or ``abort()``) the temporary file is removed.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float,
        sample_rate: int | None,
        crf: int = 20,
        preset: str = "veryfast",
        threads: int = 1,
    ) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"H.264 yuv420p needs even sizes, got {width}x{height}")
        self.path = Path(path)
        self.fps = fps
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".mp4")
        os.close(fd)
        self._tmp = Path(tmp)
        self._container = av.open(str(self._tmp), mode="w", format="mp4")
        rate = fractions.Fraction(fps).limit_denominator(1001)
        self._time_base = fractions.Fraction(rate.denominator, rate.numerator)
        self._video = self._container.add_stream("libx264", rate=rate)
        self._video.width = width
        self._video.height = height
        self._video.pix_fmt = "yuv420p"
        self._video.time_base = self._time_base
        self._video.codec_context.thread_count = threads
        self._video.options = {"crf": str(crf), "preset": preset}
        self._audio: av.AudioStream | None = None
        self.sample_rate = 0
        if sample_rate is not None:
            self.sample_rate = sample_rate if sample_rate in AAC_RATES else 48000
            self._audio = self._container.add_stream("aac", rate=self.sample_rate)
            self._audio.layout = "mono"
            self._audio_pts = 0
        self._src_rate = sample_rate or 0
        self._resampler = (
            StreamResampler(self._src_rate, self.sample_rate) if self._src_rate != self.sample_rate else None
        )
        self.frames_written = 0
        self.samples_written = 0
        self._closed = False

    def write_frame(self, rgb: np.ndarray) -> None:
        """Append one uint8 RGB frame (H, W, 3)."""
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames_written
        frame.time_base = self._time_base
        for packet in self._video.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def write_audio(self, pcm: np.ndarray) -> None:
        """Append mono float32 samples at the rate given to the constructor (a rate AAC lacks is
        resampled as one stream across calls: its last few samples come out at :meth:`close`)."""
        if self._audio is None:
            raise RuntimeError("this writer has no audio stream")
        if self._resampler is not None:
            pcm = self._resampler.process(pcm)
        self._encode_audio(pcm)

    def _encode_audio(self, pcm: np.ndarray) -> None:
        assert self._audio is not None
        pcm = np.clip(np.asarray(pcm, dtype=np.float32), -1.0, 1.0)
        step = 1024 * 16
        for start in range(0, len(pcm), step):
            block = pcm[start : start + step]
            frame = av.AudioFrame.from_ndarray(block[None, :], format="fltp", layout="mono")
            frame.sample_rate = self.sample_rate
            frame.pts = self._audio_pts
            frame.time_base = fractions.Fraction(1, self.sample_rate)
            self._audio_pts += len(block)
            for packet in self._audio.encode(frame):
                self._container.mux(packet)
        self.samples_written += len(pcm)

    def close(self) -> Path:
        """Flush the encoders and move the file into place."""
        if self._closed:
            return self.path
        try:
            for packet in self._video.encode(None):
                self._container.mux(packet)
            if self._audio is not None:
                if self._resampler is not None:
                    self._encode_audio(self._resampler.flush())
                for packet in self._audio.encode(None):
                    self._container.mux(packet)
            self._container.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Drop the partial file."""
        self._closed = True
        with contextlib.suppress(Exception):
            self._container.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
