"""The ``vlogger render`` command as a user meets it: good runs, and bad input refused cleanly."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import cv2
import numpy as np
from media import decode_frames, probe

from vlogger.engines.avatar.topology import NUM_LANDMARKS

PORTRAIT = Path(__file__).resolve().parents[1] / "engines" / "avatar" / "assets" / "default_portrait.png"


def vlogger(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vlogger.runtime", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> Path:
    data = np.clip(pcm, -1, 1)
    channels = 1 if data.ndim == 1 else data.shape[1]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((data * 32767).astype("<i2").tobytes())
    return path


def refused(result: subprocess.CompletedProcess[str], out: Path, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    low = result.stderr.lower()
    for word in words:
        assert word in low, f"{word!r} not in {result.stderr!r}"
    assert not out.exists(), "nothing may be left at --out"
    assert not any(p.name.startswith(f".{out.name}") for p in out.parent.iterdir()), "temp file left"


def test_no_face_in_photo(tmp_path: Path) -> None:
    img = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    photo = tmp_path / "gradient.png"
    cv2.imwrite(str(photo), cv2.merge([img, img // 2, 255 - img]))
    out = tmp_path / "o.mp4"
    refused(
        vlogger("render", "--image", str(photo), "--text", "Hi there.", "--out", str(out)), out, "no face"
    )


def test_fake_image_and_missing_paths(tmp_path: Path) -> None:
    fake = tmp_path / "photo.png"
    fake.write_text("this is not a picture")
    out = tmp_path / "o.mp4"
    refused(vlogger("render", "--image", str(fake), "--text", "Hi.", "--out", str(out)), out, "photo.png")
    refused(
        vlogger("render", "--image", str(tmp_path / "nope.jpg"), "--text", "Hi.", "--out", str(out)),
        out,
        "not found",
    )
    refused(vlogger("render", "--audio", str(tmp_path / "nope.wav"), "--out", str(out)), out, "not found")


def test_bad_text(tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    refused(vlogger("render", "--text", "", "--out", str(out)), out, "empty")
    refused(vlogger("render", "--text", "   \n\t ", "--out", str(out)), out, "empty")
    refused(vlogger("render", "--text", "a" * 20_001, "--out", str(out)), out, "20,001", "20,000")


def test_corrupt_audio(tmp_path: Path) -> None:
    fake = tmp_path / "speech.wav"
    fake.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" + bytes(300))
    out = tmp_path / "o.mp4"
    refused(vlogger("render", "--audio", str(fake), "--out", str(out)), out, "speech.wav")


def test_silent_audio_idles_with_a_warning(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "silence.wav", np.zeros(44100 * 2), 44100)
    out = tmp_path / "idle.mp4"
    result = vlogger("render", "--audio", str(wav), "--size", "256", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr.lower() and "silent" in result.stderr.lower()
    info = probe(out)
    assert abs(info["video"].duration - info["audio"].duration) <= 0.040
    assert info["video"].duration >= 2.0
    frames = decode_frames(out)
    # the avatar is alive while idle: frames differ over time (blinks, head drift), never frozen
    diffs = [
        np.abs(frames[i].astype(int) - frames[i + 5].astype(int)).mean() for i in range(0, len(frames) - 5, 5)
    ]
    assert max(diffs) > 0.2


def test_odd_photos_and_audio_are_accepted(tmp_path: Path) -> None:
    """RGBA and grayscale photos, stereo 48 kHz audio with DC offset and clipping: all render."""
    from vlogger.engines.avatar import load_avatar

    bgr = cv2.imread(str(PORTRAIT))
    rgba = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    rgba[:, :, 3] = 200
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    cv2.imwrite(str(tmp_path / "gray.jpg"), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    for name in ("rgba.png", "gray.jpg"):
        avatar = load_avatar(tmp_path / name, height=256)
        assert avatar.fit.face.shape == (NUM_LANDMARKS, 3)
        assert avatar.image.shape[2] == 3

    t = np.arange(48000 * 2) / 48000
    tone = 0.3 + 1.4 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)  # DC + clipping
    wav = write_wav(tmp_path / "stereo.wav", np.stack([tone, 0.8 * tone], axis=1), 48000)
    out = tmp_path / "stereo.mp4"
    result = vlogger(
        "render",
        "--audio",
        str(wav),
        "--image",
        str(tmp_path / "gray.jpg"),
        "--size",
        "256",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    info = probe(out)
    assert abs(info["video"].duration - info["audio"].duration) <= 0.040
    assert decode_frames(out)[0].shape == (256, 256, 3)
