"""End to end: the default portrait says a sentence; the MP4 is checked on its streams and pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from media import SHARED_DATA, count_dips, decode_frames, face_track, probe

from vlogger.engines.avatar import load_avatar
from vlogger.runtime.config import VloggerConfig
from vlogger.runtime.render_job import RenderRequest, render_video

TEXT = (
    "Hello, and welcome aboard. My name is Eileen, and I flew the space shuttle. "
    "Today I will tell you what it is like to look down at the blue planet."
)
LEAD_IN = 2.5  # seconds of silence before the speech: the mouth must stay nearly still there


def _face_box(height: int) -> tuple[int, int, int, int]:
    avatar = load_avatar(None, height=height)
    face = avatar.fit.face[:, :2]
    (x0, y0), (x1, y1) = face.min(0), face.max(0)
    pad = 0.6 * (x1 - x0)
    h, w = avatar.image.shape[:2]
    return (max(0, int(x0 - pad)), max(0, int(y0 - pad)), min(w, int(x1 + pad)), min(h, int(y1 + pad)))


@pytest.fixture(scope="module")
def text_render(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("render") / "hello.mp4"
    config = VloggerConfig()
    config.output.lead_in = LEAD_IN
    config.seed = 3
    report = render_video(RenderRequest(out=out, text=TEXT), config)
    frames = decode_frames(out)
    track = face_track(frames, _face_box(config.output.height))
    return out, report, frames, track


def test_mp4_streams_and_durations(text_render) -> None:  # type: ignore[no-untyped-def]
    out, report, frames, _ = text_render
    info = probe(out)
    assert info["video"].codec == "h264"
    assert info["audio"].codec == "aac"
    assert info["video"].rate == pytest.approx(25.0)
    assert len(frames) == report.frames
    assert frames[0].shape == (512, 512, 3)
    # audio and video durations agree within one frame (40 ms at 25 fps)
    assert abs(info["video"].duration - info["audio"].duration) <= 0.040
    assert info["video"].duration == pytest.approx(len(frames) / 25.0, abs=1e-6)
    # the speech is all there: ~8 s of speech, after the lead-in
    assert report.speech_duration > 5.0
    assert info["video"].duration >= LEAD_IN + report.speech_duration


def test_mouth_moves_with_speech_and_rests_in_silence(text_render) -> None:  # type: ignore[no-untyped-def]
    _, report, _, track = text_render
    assert np.mean(np.isfinite(track.mouth)) > 0.95, "the face must be found in the rendered frames"
    fps = report.fps
    silent = track.mouth[int(0.3 * fps) : int((LEAD_IN - 0.2) * fps)]
    speech = track.mouth[int((LEAD_IN + 0.3) * fps) : int((LEAD_IN + report.speech_duration - 0.2) * fps)]
    silent, speech = silent[np.isfinite(silent)], speech[np.isfinite(speech)]
    # while speaking the mouth opens wide and closes again, many times. piper samples its noise (the
    # same text comes out with other durations each time), so the speech differs from run to run:
    # over 9 runs (OpenCV 4.14, 5.0, 5.1) this 10-90% range was 0.075-0.099; a mouth that does not
    # move reads as the landmarks' jitter, about 0.02
    assert np.percentile(speech, 90) - np.percentile(speech, 10) > 0.06
    opens = count_dips(-speech, -np.percentile(speech, 75), min_gap=2)
    assert opens >= 6, f"mouth opened only {opens} times in {report.speech_duration:.1f} s of speech"
    # in silence it barely moves: the 5-95% spread of the reading (not its peak-to-peak, which one
    # frame of landmark jitter on a moving head decides; OpenCV 4 and 5 render pixels differently)
    spread = np.percentile(silent, 95) - np.percentile(silent, 5)
    assert spread < 0.35 * (np.percentile(speech, 90) - np.percentile(speech, 10))
    assert np.median(silent) < np.percentile(speech, 75)


def test_blinks_and_head_motion_visible(text_render) -> None:  # type: ignore[no-untyped-def]
    _, report, _, track = text_render
    assert report.video_duration >= 10.0
    eyes = track.eyes
    # mediapipe reads a rendered closed eye at ~55-65% of the open value (its landmark prior keeps
    # lids apart); open-eye frames, speech and smiles included, stay above ~80%
    blinks = count_dips(eyes, 0.72 * np.nanmedian(eyes))
    assert 1 <= blinks <= 8, f"{blinks} blinks in {report.video_duration:.1f} s"
    # the head moves a little (nose tip travels), but stays in place overall
    nose = track.nose[np.isfinite(track.nose[:, 0])]
    travel = np.ptp(nose, axis=0).max()
    assert 0.5 < travel < 40


@pytest.mark.skipif(
    not (SHARED_DATA / "audio").is_dir(), reason="../shared/data is absent (real speech clips)"
)
def test_render_from_real_speech(tmp_path: Path) -> None:
    wav = SHARED_DATA / "audio" / "speech_f_5s.wav"
    out = tmp_path / "real.mp4"
    config = VloggerConfig()
    config.output.height = 256
    report = render_video(RenderRequest(out=out, audio=wav), config)
    assert report.timing_source == "audio"  # the learned mouth listens: nothing to align
    config.mouth = "phonemes"  # the engine says whether it reads timings; the runtime does not guess
    assert config.make_motion().needs_phonemes and not VloggerConfig().make_motion().needs_phonemes
    info = probe(out)
    assert abs(info["video"].duration - info["audio"].duration) <= 0.040
    assert report.speech_duration == pytest.approx(5.0, abs=0.3)
    assert decode_frames(out)[0].shape[0] == 256


def test_learned_motion_network_drives_a_render(tmp_path: Path) -> None:
    """``motion_engine = "network"``: the diffusion transformer hears the TTS audio (no phonemes)."""
    out = tmp_path / "net.mp4"
    config = VloggerConfig()
    config.output.height = 256
    config.output.lead_in = 1.5
    config.motion_engine = "network"
    report = render_video(
        RenderRequest(out=out, text="Hello there! Can you see my lips moving today?"), config
    )
    info = probe(out)
    assert abs(info["video"].duration - info["audio"].duration) <= 0.040
    track = face_track(decode_frames(out), _face_box(256))
    fps = report.fps
    silent = track.mouth[int(0.3 * fps) : int(1.3 * fps)]
    speech = track.mouth[int(1.8 * fps) : int((1.5 + report.speech_duration - 0.2) * fps)]
    silent, speech = silent[np.isfinite(silent)], speech[np.isfinite(speech)]
    assert silent.size > 15 and speech.size > 40
    spread = np.percentile(speech, 90) - np.percentile(speech, 10)
    assert spread > 0.05, "the network's mouth hardly moves while speaking"
    opens = count_dips(-speech, -np.percentile(speech, 75), min_gap=2)
    assert opens >= 3, f"mouth opened only {opens} times in {report.speech_duration:.1f} s of speech"
    assert np.median(silent) < np.percentile(speech, 75)  # closed before the speech starts
