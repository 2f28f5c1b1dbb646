"""Audio decoding, resampling, per-frame loudness and chunking on files made here."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from scipy.io import wavfile

from vlogger.engines.audio import (
    SILENCE_DB,
    chunk_audio,
    frame_energy,
    load_audio,
    resample,
    speech_envelope,
)
from vlogger.engines.errors import InputError


def tone(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_freq(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def encode(path: Path, pcm: np.ndarray, rate: int, codec: str) -> None:
    """Write mono float pcm with PyAV (aac in .m4a, mp3 in .mp3, ...)."""
    with av.open(str(path), "w") as out:
        stream: Any = out.add_stream(codec, rate=rate, layout="mono")
        fmt = stream.codec_context.codec.audio_formats[0].name
        step = 1024
        for i in range(0, len(pcm), step):
            block = pcm[i : i + step]
            if fmt == "fltp":
                frame = av.AudioFrame.from_ndarray(block[None, :], format="fltp", layout="mono")
            else:
                ints = (block * 32767).astype(np.int16)
                frame = av.AudioFrame.from_ndarray(ints[None, :], format="s16p", layout="mono")
            frame.sample_rate = rate
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def test_wav_int16_float_and_uint8_decode_to_the_same_samples(tmp_path: Path) -> None:
    x = tone(440, 16000, 0.5, amp=0.6)
    ints = np.round(x * 32767).astype(np.int16)
    wavfile.write(tmp_path / "i16.wav", 16000, ints)
    wavfile.write(tmp_path / "f32.wav", 16000, x)
    wavfile.write(tmp_path / "u8.wav", 8000, (np.round(x[::2] * 127) + 128).astype(np.uint8))

    a, ra = load_audio(tmp_path / "i16.wav")
    b, rb = load_audio(str(tmp_path / "f32.wav"))
    c, rc = load_audio(tmp_path / "u8.wav")
    assert (ra, rb, rc) == (16000, 16000, 8000)
    assert a.dtype == np.float32 and a.shape == x.shape
    np.testing.assert_allclose(a, ints / 32768.0, atol=1e-7)
    np.testing.assert_allclose(b, x, atol=1e-7)
    np.testing.assert_allclose(c, x[::2], atol=1.5 / 128)


def test_stereo_48k_is_downmixed_by_averaging_and_resampled(tmp_path: Path) -> None:
    left = tone(1000, 48000, 1.0, amp=0.8)
    right = np.full_like(left, 0.2)
    stereo = np.stack([left, right], axis=1)
    wavfile.write(tmp_path / "st.wav", 48000, (stereo * 32767).astype(np.int16))

    mono, rate = load_audio(tmp_path / "st.wav")
    assert rate == 48000
    np.testing.assert_allclose(mono, (left + right) / 2, atol=2e-4)

    at16, rate16 = load_audio(tmp_path / "st.wav", target_rate=16000)
    assert rate16 == 16000 and abs(at16.shape[0] - 16000) <= 1
    core = at16[800:-800] - np.mean(at16[800:-800])  # skip filter edges, drop the DC of the right channel
    assert abs(peak_freq(core, 16000) - 1000) < 2
    assert 20 * np.log10(rms(core) / (0.4 / np.sqrt(2))) == pytest.approx(0.0, abs=0.1)


@pytest.mark.parametrize(("src", "dst"), [(48000, 16000), (22050, 16000), (16000, 44100), (8000, 22050)])
def test_resample_keeps_a_1khz_tone(src: int, dst: int) -> None:
    y = resample(tone(1000, src, 1.0, amp=0.5), src, dst)
    assert y.dtype == np.float32 and abs(y.shape[0] - dst) <= 1
    core = y[dst // 10 : -dst // 10]
    assert abs(peak_freq(core, dst) - 1000) < 2
    assert 20 * np.log10(rms(core) / (0.5 / np.sqrt(2))) == pytest.approx(0.0, abs=0.1)


def test_dc_offset_and_clipping_are_accepted_as_is(tmp_path: Path) -> None:
    x = 0.3 + tone(300, 16000, 0.4, amp=0.2)
    wavfile.write(tmp_path / "dc.wav", 16000, x.astype(np.float32))
    clipped = np.clip(tone(300, 16000, 0.4, amp=3.0), -1, 1)
    wavfile.write(tmp_path / "clip.wav", 16000, (clipped * 32767).astype(np.int16))
    dc, _ = load_audio(tmp_path / "dc.wav")
    cl, _ = load_audio(tmp_path / "clip.wav")
    assert np.mean(dc) == pytest.approx(0.3, abs=1e-3)
    assert np.max(cl) <= 1.0 and np.min(cl) >= -1.0 and np.mean(np.abs(cl) > 0.99) > 0.5
    # DC does not read as loudness: a constant-offset frame is as quiet as silence
    flat = np.full(16000, 0.3, dtype=np.float32)
    assert np.all(frame_energy(flat, 16000, 25) <= SILENCE_DB + 1)


@pytest.mark.parametrize(("suffix", "codec"), [(".m4a", "aac"), (".mp3", "mp3")])
def test_compressed_files_decode_to_the_same_tone(tmp_path: Path, suffix: str, codec: str) -> None:
    x = tone(440, 44100, 1.0, amp=0.5)
    path = tmp_path / f"tone{suffix}"
    encode(path, x, 44100, codec)
    y, rate = load_audio(path)
    assert rate == 44100
    assert abs(len(y) / rate - 1.0) < 0.06  # encoder priming/padding only
    assert abs(peak_freq(y, rate) - 440) < 3
    mid = y[len(y) // 4 : 3 * len(y) // 4]  # away from encoder priming and padding
    assert rms(mid) == pytest.approx(rms(x), rel=0.1)  # lossy: within 1 dB
    # the same through bytes, resampled
    z, rz = load_audio(path.read_bytes(), target_rate=16000)
    assert rz == 16000 and abs(peak_freq(z, 16000) - 440) < 3


def test_bad_inputs_raise_input_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.wav.*does not exist"):
        load_audio(tmp_path / "nope.wav")
    fake = tmp_path / "fake.wav"
    fake.write_text("this is not audio, just text renamed to .wav\n" * 20)
    with pytest.raises(InputError, match=r"fake\.wav.*not a readable audio file"):
        load_audio(fake)
    with pytest.raises(InputError, match="audio data"):
        load_audio(b"\x00\x01garbage" * 100)
    empty = tmp_path / "empty.wav"
    wavfile.write(empty, 16000, np.zeros(0, dtype=np.int16))
    with pytest.raises(InputError, match=r"empty\.wav.*no audio samples"):
        load_audio(empty)
    with pytest.raises(InputError, match="folder"):
        load_audio(tmp_path)


def test_video_without_sound_has_no_audio_stream(tmp_path: Path) -> None:
    path = tmp_path / "silent.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for i in range(5):
            img = np.full((64, 64, 3), i * 40, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with pytest.raises(InputError, match=r"silent\.mp4.*no audio stream"):
        load_audio(path)


def test_max_seconds_refuses_long_audio(tmp_path: Path) -> None:
    wavfile.write(tmp_path / "long.wav", 8000, np.zeros(8000 * 3, dtype=np.int16))
    with pytest.raises(InputError, match="longer than the limit of 2 s"):
        load_audio(tmp_path / "long.wav", max_seconds=2)
    assert load_audio(tmp_path / "long.wav", max_seconds=5)[0].shape == (24000,)


def test_frame_energy_is_aligned_to_video_frames() -> None:
    rate, fps = 16000, 25
    x = np.concatenate([np.zeros(8000, np.float32), tone(500, rate, 0.5, amp=1.0)])  # tone from 0.5 s
    db = frame_energy(x, rate, fps)
    assert db.shape == (25,)
    assert np.all(db[:12] == SILENCE_DB)  # frames 0..11 cover [0, 0.48)
    assert db[12] == pytest.approx(-3.01 - 3.01, abs=0.3)  # [0.48, 0.52): half the power
    np.testing.assert_allclose(db[13:], -3.01, atol=0.05)  # full-scale sine: -3 dBFS
    longer = frame_energy(x, rate, fps, n_frames=30)
    assert np.all(longer[25:] == SILENCE_DB) and np.array_equal(longer[:25], db)
    env = speech_envelope(x, rate, fps)
    assert np.all(env[:12] == 0.0) and np.all(env[12:] == 1.0)
    quiet = speech_envelope(tone(500, rate, 1.0, amp=0.01), rate, fps)  # -43 dBFS: barely open
    assert np.all((quiet > 0.1) & (quiet < 0.3))


def test_chunk_audio_tiles_the_signal_on_one_clock() -> None:
    x = np.arange(22050 + 100, dtype=np.float32) / 1e5
    chunks = list(chunk_audio(x, 22050, chunk_seconds=0.2, start_pts=2.0))
    assert len(chunks) == 6 and chunks[-1].num_samples == 100
    np.testing.assert_array_equal(np.concatenate([c.pcm for c in chunks]), x)
    for prev, cur in itertools.pairwise(chunks):
        assert cur.pts == pytest.approx(prev.end)
        assert cur.sample_offset == prev.sample_offset + prev.num_samples
    assert chunks[0].pts == 2.0 and chunks[0].sample_offset == 44100
