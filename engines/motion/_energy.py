"""A small streaming loudness envelope: per-hop sums of squares on the stream clock.

Private to the motion engine until ``engines/audio.py`` (``frame_energy``) is shared. Sums are kept
per absolute hop of the stream clock, so splitting the same audio into chunks differently gives the
same envelope (up to float rounding).
"""

from __future__ import annotations

import math

import numpy as np

from vlogger.engines.types import AudioChunk

__all__ = ["EnergyBins"]


class EnergyBins:
    """Per-hop energy (sum of squares), a high-frequency proxy (sum of squared first differences)
    and sample counts, keyed by the absolute hop index ``floor(t / hop_s)``."""

    def __init__(self, hop_s: float = 0.01) -> None:
        self.hop_s = float(hop_s)
        self._bins: dict[int, np.ndarray] = {}
        self._min_bin = -(2**62)
        self._lo: int | None = None
        self._last_end = -math.inf
        self._last_sample = 0.0
        self._last_rate = 0

    def add(self, chunk: AudioChunk) -> None:
        """Accumulate a chunk (mono float samples)."""
        pcm = np.asarray(chunk.pcm, dtype=np.float64).reshape(-1)
        n = pcm.shape[0]
        if n == 0:
            return
        rate = int(chunk.sample_rate)
        contiguous = rate == self._last_rate and abs(chunk.pts - self._last_end) < 0.5 / rate
        prev = self._last_sample if contiguous else pcm[0]
        diff = np.diff(pcm, prepend=prev)
        # The small epsilon puts a sample that lies on a hop boundary in the same hop however the
        # stream was cut into chunks (pts + k / rate rounds differently from chunk to chunk).
        idx = np.floor((chunk.pts + np.arange(n) / rate) / self.hop_s + 1e-6).astype(np.int64)
        lo = int(idx[0])
        self._lo = lo if self._lo is None else min(self._lo, lo)
        rel = idx - lo
        size = int(rel[-1]) + 1
        sq = np.bincount(rel, weights=pcm * pcm, minlength=size)
        dq = np.bincount(rel, weights=diff * diff, minlength=size)
        cnt = np.bincount(rel, minlength=size).astype(np.float64)
        for k in np.nonzero(cnt)[0]:
            b = lo + int(k)
            if b < self._min_bin:
                continue
            acc = self._bins.get(b)
            if acc is None:
                self._bins[b] = np.array([sq[k], dq[k], cnt[k]])
            else:
                acc += (sq[k], dq[k], cnt[k])
        self._last_end = chunk.pts + n / rate
        self._last_sample = float(pcm[-1])
        self._last_rate = rate

    def window(self, t0: float, t1: float) -> tuple[float, float]:
        """RMS and high-frequency ratio (0..1, ~0 for voiced low sounds, ~1 for hiss) over [t0, t1)."""
        b0 = math.floor(t0 / self.hop_s + 1e-6)
        b1 = max(b0 + 1, math.floor(t1 / self.hop_s + 1e-6))
        sq = dq = cnt = 0.0
        for b in range(b0, b1):
            acc = self._bins.get(b)
            if acc is not None:
                sq += acc[0]
                dq += acc[1]
                cnt += acc[2]
        if cnt <= 0.0:
            return 0.0, 0.0
        rms = math.sqrt(sq / cnt)
        # The first difference has 4x the power of a signal at Nyquist and ~0 at DC.
        hf = min(1.0, dq / (4.0 * sq + 1e-12)) if sq > 0.0 else 0.0
        return rms, hf

    def prune(self, before_t: float) -> None:
        """Forget hops that end before ``before_t`` (keeps memory constant on long streams)."""
        new_min = math.floor(before_t / self.hop_s)
        if new_min <= self._min_bin:
            return
        if self._lo is not None and self._lo < new_min:
            if new_min - self._lo > 4 * len(self._bins):
                for b in [b for b in self._bins if b < new_min]:
                    del self._bins[b]
            else:
                for b in range(self._lo, new_min):
                    self._bins.pop(b, None)
            self._lo = new_min
        self._min_bin = new_min

    def drop_after(self, t: float) -> None:
        """Forget hops from ``t`` on (an interruption drops audio not yet turned into frames)."""
        first = math.floor(t / self.hop_s)
        for b in [b for b in self._bins if b >= first]:
            del self._bins[b]
        self._last_end = -math.inf

    def __len__(self) -> int:
        return len(self._bins)
