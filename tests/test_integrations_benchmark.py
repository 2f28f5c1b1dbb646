"""The definitions of ``benchmarks/integrations.py`` on a synthetic timeline (no framework, no model):
first frame out, A/V lag at the receiving end minus offline, interruption figures, CPU, and the
lines-of-code count. The benchmark itself takes minutes (``python benchmarks/integrations.py
--quick``), too long for the suite."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.integrations import DT, Run, Utterance, analyse, match_frames, user_lines


def syllables(t: np.ndarray, start: float, end: float) -> np.ndarray:
    """A speech-like envelope: 4 Hz bursts between ``start`` and ``end``, silence elsewhere."""
    on = (t >= start) & (t < end)
    return np.where(on, 0.05 + 0.2 * np.abs(np.sin(2 * np.pi * 2.0 * (t - start))), 0.0)


def synthetic_run(video_lag: float) -> Run:
    run = Run("synthetic")
    said = Utterance(clip=0, duration=1.0, pushed=10.0)
    cut = Utterance(clip=-1, duration=3.0, pushed=20.0, interrupted=21.2)
    run.utterances = [said, cut]
    for t in np.arange(9.0, 23.0, DT):
        covers = bool(10.06 <= t < 11.06)  # the first frame covering speech (10.08 s) leaves 80 ms after
        drawn = covers or bool(20.06 <= t < 21.24)  # the last stale one 40 ms after the interruption
        run.out.append((float(t), "video", covers, drawn))
        if covers:
            run.out.append((float(t) + 0.001, "audio", True, True))
    # receiving end: sound from 10.1 s (and 20.1 s to 21.25 s), the mouth video_lag behind it
    at = np.arange(8.0, 24.0, 0.02)
    env = syllables(at, 10.1, 11.1) + syllables(at, 20.1, 21.25)
    run.rx_audio = list(zip(at.tolist(), env.tolist(), strict=True))
    vt = np.arange(8.0, 24.0, DT)
    mouth = 0.02 + 0.5 * (syllables(vt - video_lag, 10.1, 11.1) + syllables(vt - video_lag, 20.1, 21.25))
    run.rx_faces = (vt, mouth)
    run.rx_video = [(float(t), None) for t in vt]
    run.cpu_s, run.wall_s = 1.0, 4.0
    return run


def test_figures_of_a_synthetic_run() -> None:
    r = analyse(synthetic_run(video_lag=0.04), offline_ms=[10.0])
    assert r["first_frame_ms"] == pytest.approx([80.0], abs=0.5)
    assert r["first_frame_frames_median"] == pytest.approx(2.0, abs=0.02)
    assert 100.0 <= r["first_open_mouth_rx_ms_median"] <= 160.0  # the mouth opens with the lagged sound
    assert r["av_offset_rx_ms"] == pytest.approx([40.0], abs=10.0)  # video 40 ms later than sound
    assert r["av_offset_minus_offline_ms"] == pytest.approx([30.0], abs=10.0)
    assert r["interrupt_last_stale_out_ms"] == pytest.approx([40.0], abs=1.0)
    assert r["interrupt_last_stale_rx_ms"] == pytest.approx([40.0], abs=20.0)
    assert not r["interrupt_stale_over_80ms_out"] and not r["interrupt_stale_over_80ms_rx"]
    assert r["cpu_cores"] == pytest.approx(0.25)


def test_video_earlier_than_sound_is_negative() -> None:
    r = analyse(synthetic_run(video_lag=-0.06), offline_ms=[0.0])
    assert r["av_offset_minus_offline_ms"] == pytest.approx([-60.0], abs=10.0)


def test_lines_of_user_code_come_from_the_readme() -> None:
    lines = user_lines()
    assert set(lines) == {"pipecat", "livekit"}
    for entry in lines.values():
        if "readme" in entry:
            assert entry["count"] == len(entry["readme"]["code_lines"]) + len(
                entry["readme"]["settings_named_in_comments"]
            )
            assert entry["count"] >= 2


def test_received_frames_are_matched_by_content_across_drops() -> None:
    sent = [1, 2, 3, 2, 5, 6]
    assert match_frames(sent, [0, 1, 2, 2, 6]) == [-1, 0, 1, 3, 5]  # an extra, a drop, a repeat
