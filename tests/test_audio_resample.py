"""The one streaming resampler (``engines.audio.StreamResampler``) and the one-shot ``resample``."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import chirp, resample_poly

from vlogger.engines.audio import StreamResampler, resample

PAIRS = [(16000, 48000), (24000, 48000), (22050, 16000), (44100, 16000), (48000, 16000), (8000, 48000)]
MORE = [(11025, 16000), (16000, 22050), (48000, 44100), (22050, 48000)]


def _chirp(rate: int, seconds: float = 2.0) -> np.ndarray:
    """A sweep from 50 Hz to 90% of the lower Nyquist frequency of the pairs it is used with."""
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * chirp(t, 50.0, t[-1], 0.45 * 8000)).astype(np.float32)


def _pieces(r: StreamResampler, x: np.ndarray, step: int) -> list[np.ndarray]:
    return [r.process(x[o : o + step]) for o in range(0, len(x), step)] + [r.flush()]


@pytest.mark.parametrize(("src", "dst"), PAIRS + MORE)
def test_a_chirp_in_40ms_pieces_equals_the_whole(src: int, dst: int) -> None:
    x = _chirp(src)
    whole = resample(x, src, dst)
    streamed = np.concatenate(_pieces(StreamResampler(src, dst), x, round(0.04 * src)))
    assert streamed.dtype == np.float32 and streamed.shape == whole.shape
    assert np.abs(streamed - whole).max() <= 1e-4
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-6)  # in fact sample for sample here


@pytest.mark.parametrize(("src", "dst"), [(22050, 16000), (16000, 48000), (44100, 16000)])
def test_any_cut_gives_the_same_output(src: int, dst: int) -> None:
    x = np.random.default_rng(3).standard_normal(src).astype(np.float32) * 0.2
    whole = resample(x, src, dst)
    rng = np.random.default_rng(4)
    r = StreamResampler(src, dst)
    out, o = [], 0
    while o < len(x):
        k = int(rng.integers(0, 900))  # empty and one-sample pieces too
        out.append(r.process(x[o : o + k]))
        o += k
    out.append(r.flush())
    np.testing.assert_allclose(np.concatenate(out), whole, rtol=0, atol=1e-6)  # float32 rounding


@pytest.mark.parametrize(("src", "dst"), PAIRS + MORE)
def test_the_filter_is_resample_polys(src: int, dst: int) -> None:
    x = _chirp(src, 0.5)
    g = math.gcd(src, dst)
    ref = resample_poly(x.astype(np.float64), dst // g, src // g)
    y = resample(x, src, dst)
    n = min(len(y), len(ref))  # resample_poly rounds the length up, we round it to the nearest
    np.testing.assert_allclose(y[:n], ref[:n], atol=1e-6)


@pytest.mark.parametrize(("src", "dst"), PAIRS + MORE)
@pytest.mark.parametrize("n", [0, 1, 2, 3, 147, 441, 12345])
def test_output_length_is_the_rounded_ratio(src: int, dst: int, n: int) -> None:
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    want = math.floor(n * dst / src + 0.5)
    assert len(resample(x, src, dst)) == want
    r = StreamResampler(src, dst)
    assert sum(len(p) for p in _pieces(r, x, 100)) == want


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_no_clicks_at_piece_boundaries(src: int, dst: int) -> None:
    x = _chirp(src)
    step = round(0.04 * src)

    def jumps(pieces: list[np.ndarray]) -> tuple[float, float]:
        y = np.concatenate(pieces)
        d = np.abs(np.diff(y.astype(np.float64)))
        edges = np.cumsum([len(p) for p in pieces])[:-1]
        edges = edges[(edges > 0) & (edges < len(y))]
        at = np.zeros(len(d), bool)
        at[edges - 1] = True
        return float(d[at].max()), float(d[~at].max())

    at_edges, inside = jumps(_pieces(StreamResampler(src, dst), x, step)[:-1])
    assert at_edges <= inside
    # the per-piece resampling without state that this replaces: each piece's edges fade to 0
    y = resample(x, src, dst)
    naive = np.concatenate(
        [resample_poly(x[o : o + step], *_ratio(src, dst)) for o in range(0, len(x), step)]
    )
    assert np.abs(naive[: len(y)] - y).max() > 0.01  # 100x the tolerance above


def _ratio(src: int, dst: int) -> tuple[int, int]:
    g = math.gcd(src, dst)
    return dst // g, src // g


@pytest.mark.parametrize(("src", "dst"), PAIRS + MORE)
@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.4])
def test_a_tone_in_the_passband_keeps_its_amplitude(src: int, dst: int, fraction: float) -> None:
    f = fraction * min(src, dst)  # up to 80% of the lower Nyquist frequency
    n = 2 * src
    x = (0.5 * np.sin(2 * np.pi * f * np.arange(n) / src)).astype(np.float32)
    r = StreamResampler(src, dst)
    y = np.concatenate(_pieces(r, x, round(0.04 * src)))
    mid = y[len(y) // 4 : 3 * len(y) // 4].astype(np.float64)
    amp = math.sqrt(2.0 * np.mean(mid * mid))
    assert abs(amp / 0.5 - 1.0) < 0.01


def test_outputs_come_once_their_input_is_in_and_flush_starts_a_new_stream() -> None:
    r = StreamResampler(22050, 16000)
    x = _chirp(22050, 0.3)
    first = np.concatenate(_pieces(r, x, 882))
    again = np.concatenate(_pieces(r, x, 882))  # the same object after flush: a fresh stream
    np.testing.assert_allclose(first, again, rtol=0, atol=1e-6)
    out = r.process(x[:882])
    # output m sits at input time m * 441/320 and reads the input up to 4410/320 samples past it
    # (the filter's half length): of 882 samples in, outputs 0..629 are complete
    assert len(out) == 630 and r.lookahead == 14
    assert len(r.process(x[882:1764])) == 640


def test_equal_rates_pass_through_and_bad_rates_are_refused() -> None:
    x = _chirp(16000, 0.1)
    r = StreamResampler(16000, 16000)
    assert r.identity and r.lookahead == 0
    np.testing.assert_array_equal(r.process(x), x)
    assert r.flush().size == 0
    np.testing.assert_array_equal(resample(x, 16000, 16000), x)
    with pytest.raises(ValueError):
        StreamResampler(0, 16000)
    with pytest.raises(ValueError):
        resample(x, 16000, -1)
