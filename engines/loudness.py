"""Loudness of audio per time bin (video frames, 10 ms hops), offline or streaming (numpy only).

One :class:`LoudnessTracker` serves every loudness reading in the engines: the per-frame dBFS of
:func:`vlogger.engines.audio.frame_energy`, the learned motion engine's per-frame loudness (its
speech flag and the mouth's :class:`~vlogger.engines.motion.mouth.EnergyGate`) and the phoneme
teacher's 10 ms envelope (loudness and a brightness proxy). :func:`db_level` is the fixed dB -> 0..1
mapping of the speech envelopes.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

__all__ = ["SILENCE_DB", "LoudnessTracker", "db_level"]

#: The loudness reported for digital silence or bins without audio (dBFS).
SILENCE_DB = -100.0

# slots of a bin's sums
_SUM, _SQ, _DSQ, _N = range(4)


def _to_db(power: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        db = 10.0 * np.log10(np.maximum(power, 0.0))
    return np.maximum(db, SILENCE_DB)


def db_level(db: np.ndarray | float, floor_db: float, full_db: float) -> np.ndarray:
    """``floor_db`` and below -> 0, ``full_db`` and above -> 1, linear in dB between."""
    if full_db <= floor_db:
        raise ValueError("full_db must be above floor_db")
    return np.clip((np.asarray(db, np.float64) - floor_db) / (full_db - floor_db), 0.0, 1.0)


class LoudnessTracker:
    """Sums of one audio stream per bin of ``1 / bins_per_second`` seconds, on the stream's clock.

    At ``rate`` Hz bin ``k`` holds the samples ``[floor(k*P + 1/2), floor((k+1)*P + 1/2))`` of the
    stream (``P = rate / bins_per_second``; sample ``i`` is at ``i / rate`` seconds), so a 25 fps
    bin is video frame ``k``'s audio ``[k/25, (k+1)/25)``. Audio may arrive in pieces of any size,
    at any rate, with gaps or overlaps (overlapping audio adds up); each bin keeps the sum, the sum
    of squares, the sum of squared first differences and the count of its samples, so cutting the
    same audio differently gives the same readings up to float rounding. Memory grows with the bins
    held: :meth:`forget_before` drops old ones on long streams.
    """

    def __init__(self, bins_per_second: float) -> None:
        if not (bins_per_second > 0 and math.isfinite(bins_per_second)):
            raise ValueError(f"bins_per_second must be positive, not {bins_per_second!r}")
        self.bins_per_second = float(bins_per_second)
        q = Fraction(self.bins_per_second).limit_denominator(1_000_000)
        self._num, self._den = q.numerator, q.denominator
        self._bins: dict[int, np.ndarray] = {}
        self._floor = -(2**62)  # bins below this were forgotten
        self._last_end: tuple[int, int] | None = None  # (rate, sample index) where the last piece ended
        self._last_sample = 0.0

    # ---- input ------------------------------------------------------------------------------
    def bin_of(self, sample: np.ndarray | int, rate: int) -> np.ndarray:
        """Bin of sample index ``sample`` at ``rate`` Hz (integer arithmetic: no rounding drift)."""
        i = np.asarray(sample, dtype=np.int64)
        d = 2 * int(rate) * self._den
        return -((-(2 * i + 1) * self._num) // d) - 1  # ceil((i + 1/2) / P) - 1

    def bin_edge(self, k: int, rate: int) -> int:
        """The first sample index of bin ``k`` at ``rate`` Hz."""
        return (2 * int(k) * int(rate) * self._den + self._num) // (2 * self._num)

    def bin_at(self, t: float) -> int:
        """The bin that stream second ``t`` falls in (a time on a bin edge opens the next bin)."""
        return math.floor(t * self.bins_per_second + 1e-6)

    def add(self, pcm: np.ndarray, rate: int, start: int) -> None:
        """Mono samples at ``rate`` Hz whose first has sample index ``start`` (= its time * rate).

        The first difference continues from the previous piece when this one follows it directly
        (same rate, next sample); otherwise the piece's first sample has a difference of 0.
        """
        x = np.asarray(pcm, dtype=np.float64).reshape(-1)
        n = x.shape[0]
        if n == 0:
            return
        rate, start = int(rate), int(start)
        prev = self._last_sample if self._last_end == (rate, start) else x[0]
        diff = np.diff(x, prepend=prev)
        idx = self.bin_of(start + np.arange(n, dtype=np.int64), rate)
        lo = int(idx[0])
        rel = idx - lo
        size = int(rel[-1]) + 1
        sums = np.stack(
            [
                np.bincount(rel, weights=x, minlength=size),
                np.bincount(rel, weights=x * x, minlength=size),
                np.bincount(rel, weights=diff * diff, minlength=size),
                np.bincount(rel, minlength=size).astype(np.float64),
            ],
            axis=1,
        )
        for k in np.nonzero(sums[:, _N])[0]:
            b = lo + int(k)
            if b < self._floor:
                continue
            acc = self._bins.get(b)
            if acc is None:
                self._bins[b] = sums[k].copy()
            else:
                acc += sums[k]
        self._last_end = (rate, start + n)
        self._last_sample = float(x[-1])

    # ---- readings ---------------------------------------------------------------------------
    def db(self, k: int) -> float:
        """Loudness of bin ``k`` in dBFS: RMS after removing the bin's mean (DC offset does not read
        as loudness); :data:`SILENCE_DB` for digital silence or a bin without samples."""
        return float(self.db_range(k, k + 1)[0])

    def db_range(self, k0: int, k1: int) -> np.ndarray:
        """:meth:`db` of bins ``k0 .. k1 - 1`` as float64 (k1 - k0,)."""
        n = max(0, k1 - k0)
        acc = np.zeros((n, 4))
        if n <= len(self._bins):
            for k in range(k0, k0 + n):
                a = self._bins.get(k)
                if a is not None:
                    acc[k - k0] = a
        else:
            for k, a in self._bins.items():
                if k0 <= k < k1:
                    acc[k - k0] = a
        count = acc[:, _N]
        has = count > 0
        c = np.maximum(count, 1.0)
        mean = acc[:, _SUM] / c
        var = np.where(has, acc[:, _SQ] / c - mean * mean, 0.0)
        return _to_db(var)

    def window(self, k0: int, k1: int) -> tuple[float, float]:
        """Over bins ``k0 .. k1 - 1`` together: loudness in dBFS (RMS with the mean kept;
        :data:`SILENCE_DB` without audio) and a brightness ratio 0..1 (~0 for voiced low sounds, ~1
        for hiss: the first difference has 4x the power of a signal at Nyquist and ~0 at DC)."""
        sq = dq = cnt = 0.0
        for k in range(k0, k1):
            a = self._bins.get(k)
            if a is not None:
                sq += a[_SQ]
                dq += a[_DSQ]
                cnt += a[_N]
        if cnt <= 0.0:
            return SILENCE_DB, 0.0
        hf = min(1.0, dq / (4.0 * sq + 1e-12)) if sq > 0.0 else 0.0
        return float(_to_db(np.array(sq / cnt))), hf

    # ---- forgetting -------------------------------------------------------------------------
    def forget_before(self, k: int) -> None:
        """Drop bins before ``k`` for good (audio arriving for them later is ignored)."""
        if k <= self._floor:
            return
        for b in [b for b in self._bins if b < k]:
            del self._bins[b]
        self._floor = k

    def forget_from(self, k: int) -> None:
        """Drop bins from ``k`` on (audio that an interruption discarded); they may fill again."""
        for b in [b for b in self._bins if b >= k]:
            del self._bins[b]
        self._last_end = None

    def __len__(self) -> int:
        return len(self._bins)
