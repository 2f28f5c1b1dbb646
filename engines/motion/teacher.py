"""The phoneme-driven motion generator (the "teacher"): audio + phoneme timings -> MotionFrame.

Mouth: Cohen-Massaro style coarticulation. Every viseme segment spreads a dominance weight
(full inside the segment, falling to 0 ``anticipation_s`` before it and ``carryover_s`` after it);
the mouth at time t is the dominance-weighted mean of the visemes' targets at t + ``lookahead_s``,
with a small always-present weight on the closed, relaxed mouth. Chunks without phonemes (or
``mode="energy"``) drive the mouth from loudness and brightness instead.
Non-verbal motion (blinks, gaze, head, torso) comes from :mod:`vlogger.engines.motion.procedural`,
livelier while speaking (an activity envelope of loudness and phonemes), with nods at energy
onsets and stressed vowels, a look away at some phrase starts and extra blinks at phrase ends.

Streaming: frames at time t need the input up to ``t + latency_s``; ``ready_until`` says how far
that is, ``frames`` never goes past it, and frames are the same however the input and the requests
are split.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable

import numpy as np

from vlogger.engines.errors import InputError
from vlogger.engines.loudness import LoudnessTracker, db_level
from vlogger.engines.motion.base import checked_pcm
from vlogger.engines.motion.config import TeacherConfig
from vlogger.engines.motion.procedural import (
    BlinkProcess,
    BodyProcess,
    GazeProcess,
    HeadProcess,
    SpeechActivity,
    euler_to_rotation6d,
)
from vlogger.engines.motion.visemes import (
    MOUTH_NAMES,
    OPENING_NAMES,
    VISEMES,
    VisemeSegment,
    segments_from_phonemes,
)
from vlogger.engines.types import EXPRESSION_NAMES, HEAD_DIMS, AudioChunk, MotionFrame

__all__ = ["PhonemeMotionEngine", "TeacherConfig", "generate_motion"]

_IX = {n: i for i, n in enumerate(EXPRESSION_NAMES)}
_MOUTH_IX = np.array([_IX[n] for n in MOUTH_NAMES])
_OPEN_MASK = np.array([n in OPENING_NAMES for n in MOUTH_NAMES])
_NM = len(MOUTH_NAMES)
_HOPS_PER_S = 100.0  # the loudness envelope's 10 ms hops on the stream clock


class PhonemeMotionEngine:
    """A :class:`~vlogger.engines.motion.base.MotionEngine` driven by phonemes (or energy).

    ``PhonemeMotionEngine(config, fps=25.0, seed=0)``: deterministic for a given seed.
    """

    @property
    def needs_phonemes(self) -> bool:
        """The viseme mouth reads phoneme timings (``mode`` "phonemes" or "auto"); "energy" does not."""
        return self.config.mode != "energy"

    def __init__(self, config: TeacherConfig | None = None, fps: float = 25.0, seed: int = 0) -> None:
        if not (fps > 0 and math.isfinite(fps)):
            raise InputError(f"fps must be a positive number, not {fps!r}")
        self.config = config if config is not None else TeacherConfig()
        self.fps = float(fps)
        self.seed = int(seed)
        c = self.config
        self._dt = 1.0 / self.fps
        self._rng = np.random.default_rng([self.seed, 0x7EAC])
        self._targets = {
            name: np.clip(v.vector() * c.mouth_gain * c.viseme_amplitude.get(name, 1.0), 0.0, 1.0)
            for name, v in VISEMES.items()
        }
        self._segments: list[VisemeSegment] = []
        self._seg_starts: list[float] = []
        self._seg_lo = 0
        self._energy = LoudnessTracker(_HOPS_PER_S)
        self._known_end = -math.inf
        self._pending = False
        self._next_index = 0
        # Streaming state of the mouth and the activity envelope.
        self._mouth = np.zeros(_NM)
        self._mouth_in = np.zeros(_NM)
        self._energy_state = np.zeros(_NM)
        self._release_start = -math.inf
        self._release_from = np.zeros(_NM)
        self._activity = SpeechActivity(c, self.fps)
        self._loud_hist: deque[float] = deque(maxlen=max(2, round(c.nod_onset_window_s * self.fps)))
        self._blink = BlinkProcess(c, self.fps)
        self._gaze = GazeProcess(c)
        self._head = HeadProcess(c, self.fps)
        self._body = BodyProcess(c, self._rng)
        self._gaze_smooth = np.zeros(2)

    # ---- the MotionEngine interface ------------------------------------------------------
    @property
    def latency_s(self) -> float:
        """How far past a frame's time the input must reach before the frame can be made."""
        c = self.config
        return c.lookahead_s + max(c.anticipation_s, 0.5 * c.energy_window_s) + 0.01

    def push_audio(self, chunk: AudioChunk) -> None:
        pcm = checked_pcm(chunk)
        chunk = AudioChunk(pcm, chunk.sample_rate, chunk.pts, chunk.sample_offset, chunk.phonemes, chunk.text)
        self._energy.add(pcm, chunk.sample_rate, round(chunk.pts * chunk.sample_rate))
        end = chunk.end
        if chunk.phonemes and self.config.mode != "energy":
            segs = segments_from_phonemes(chunk.phonemes)
            for g in segs:
                k = bisect.bisect_right(self._seg_starts, g.start)
                self._segments.insert(k, g)
                self._seg_starts.insert(k, g.start)
                self._seg_lo = min(self._seg_lo, k)
        self._known_end = max(self._known_end, end)
        self._pending = True

    def end_of_input(self) -> None:
        self._pending = False

    def clear_buffer(self) -> None:
        t = self._next_index * self._dt
        self._segments = [g for g in self._segments if g.end <= t]
        self._seg_starts = [g.start for g in self._segments]
        self._seg_lo = min(self._seg_lo, len(self._segments))
        self._energy.forget_from(self._energy.bin_at(t))
        self._energy_state = np.zeros(_NM)
        self._known_end = min(self._known_end, t)
        self._pending = False
        self._release_start = t
        self._release_from = self._mouth.copy()

    def ready_until(self) -> float:
        if not self._pending:
            return math.inf
        return self._known_end - self.latency_s

    def frames(self, until_pts: float) -> list[MotionFrame]:
        limit = min(until_pts, self.ready_until())
        out: list[MotionFrame] = []
        while self._next_index * self._dt < limit - 1e-9:
            out.append(self._frame(self._next_index))
            self._next_index += 1
        return out

    # ---- per-frame -------------------------------------------------------------------------
    def _phoneme_mouth(self, t: float) -> tuple[np.ndarray, float, bool, list[VisemeSegment]]:
        """Coarticulated mouth at time t (already shifted by lookahead), how much speech phonemes
        reach t (0..1: 0 = only silence or nothing), whether a non-silent phoneme covers
        ``t - lookahead``, and the stressed vowels starting in this frame."""
        c = self.config
        now = t - c.lookahead_s
        back = max(c.carryover_s, c.lookahead_s)
        segs = self._segments
        while self._seg_lo < len(segs) and segs[self._seg_lo].end + back < t:
            self._seg_lo += 1
        if self._seg_lo > 512:  # keep memory constant on long streams
            del segs[: self._seg_lo]
            del self._seg_starts[: self._seg_lo]
            self._seg_lo = 0
        num = np.zeros(_NM)
        den = np.full(_NM, c.rest_dominance)
        speaking = False
        coverage = 0.0
        stressed: list[VisemeSegment] = []
        for k in range(self._seg_lo, len(segs)):
            g = segs[k]
            if g.start - c.anticipation_s > t:
                break
            if g.start <= now < g.end and not VISEMES[g.viseme].is_silence:
                speaking = True
            if g.stressed and now <= g.start < now + self._dt:
                stressed.append(g)
            v = VISEMES[g.viseme]
            if t < g.start:
                u = (g.start - t) / (c.anticipation_s * v.reach)
            elif t > g.end:
                u = (t - g.end) / (c.carryover_s * v.reach)
            else:
                u = 0.0
            if u >= 1.0:
                continue
            k_w = (1.0 - u) ** c.dominance_power
            if not v.is_silence:
                coverage += k_w
            w = np.where(_OPEN_MASK, v.dominance, v.rounding_dominance) * k_w
            target = self._targets[g.viseme]
            if g.stressed:
                target = np.minimum(target * c.stress_gain, 1.0)
            num += w * target
            den += w
        return num / den, min(1.0, c.coverage_gain * coverage), speaking, stressed

    def _energy_mouth(self, loud: float, hf: float) -> np.ndarray:
        """Mouth from loudness and brightness, low-passed (the jaw is slower than the envelope)."""
        c = self.config
        m = np.zeros(_NM)
        # Hiss (s, f, sh) is loud but made with a nearly closed jaw.
        m[MOUTH_NAMES.index("jaw_open")] = (
            c.energy_jaw_gain * loud**c.energy_gamma * (1.0 - c.energy_hiss_jaw_reduction * hf)
        )
        m[MOUTH_NAMES.index("lower_lip_down")] = c.energy_lower_lip_gain * loud
        m[MOUTH_NAMES.index("lip_stretch")] = c.energy_stretch_gain * loud * hf
        m[MOUTH_NAMES.index("lip_funnel")] = c.energy_funnel_gain * loud * (1.0 - hf) ** 2
        if c.energy_smoothing_s > 0:
            a = 1.0 - math.exp(-self._dt / c.energy_smoothing_s)
            self._energy_state = self._energy_state + a * (m - self._energy_state)
        else:
            self._energy_state = m
        return np.clip(self._energy_state, 0.0, 1.0)

    def _frame(self, index: int) -> MotionFrame:
        c = self.config
        t = index * self._dt
        la = t + c.lookahead_s
        db_ahead, hf = self._window(la - 0.5 * c.energy_window_s, la + 0.5 * c.energy_window_s)
        # Loudness of the sound at t itself (no lookahead) drives activity and nods.
        db_now, _ = self._window(t - 0.5 * c.energy_window_s, t + 0.5 * c.energy_window_s)
        if index % 25 == 0:
            self._energy.forget_before(self._energy.bin_at(t - 1.0))
        loud_ahead = self._loudness(db_ahead)
        loud = self._loudness(db_now)

        stressed: list[VisemeSegment] = []
        speaking_ph = False
        coverage = 0.0
        energy_mouth = self._energy_mouth(loud_ahead, hf)
        if c.mode == "energy":
            mouth = energy_mouth
        else:
            mouth, coverage, speaking_ph, stressed = self._phoneme_mouth(la)
            if c.mode == "auto" and coverage < 1.0:
                # No phonemes here (a chunk without them, or speech the aligner missed): energy.
                mouth = coverage * mouth + (1.0 - coverage) * energy_mouth
        if c.mouth_smoothing_s > 0:
            a = 1.0 - math.exp(-self._dt / c.mouth_smoothing_s)
            self._mouth_in = self._mouth_in + a * (mouth - self._mouth_in)
        else:
            self._mouth_in = mouth
        # Interruption: ease from the mouth at the interruption to what the input says now.
        u = (t - self._release_start + self._dt) / c.release_s
        if u < 1.0:
            e = 0.5 * (1.0 + math.cos(math.pi * max(u, 0.0)))
            self._mouth = e * self._release_from + (1.0 - e) * self._mouth_in
        else:
            self._mouth = self._mouth_in
        speaking = speaking_ph or loud > c.speech_threshold

        # Speech activity envelope and phrase boundaries.
        phrase_start, phrase_end = self._activity.step(t, speaking)
        activity = self._activity.level

        # Nods at energy onsets and (some) stressed vowels.
        rise = loud - min(self._loud_hist) if self._loud_hist else 0.0
        self._loud_hist.append(loud)
        if speaking and rise > c.nod_onset_rise:
            self._head.nod(t, c.nod_deg * (0.5 + 0.5 * loud) * self._rng.uniform(0.7, 1.2))
        for _g in stressed:
            if self._rng.random() < c.nod_stress_prob:
                self._head.nod(t, c.nod_deg * self._rng.uniform(0.6, 1.1))

        blink_l, blink_r = self._blink.step(t, self._rng, phrase_end)
        gaze = self._gaze.step(t, self._rng, activity, phrase_start)
        angles, nod_strength = self._head.step(t, self._rng, activity)
        follow = 1.0 - math.exp(-self._dt / c.head_follows_gaze_s)
        self._gaze_smooth += (gaze - self._gaze_smooth) * follow
        yaw = angles[0] + c.head_follows_gaze_deg * self._gaze_smooth[0]
        pitch = angles[1] + c.head_follows_gaze_deg * 0.5 * self._gaze_smooth[1]
        roll = angles[2]
        body, sway = self._body.step(t, activity, roll)

        expr = np.zeros(len(EXPRESSION_NAMES), dtype=np.float32)
        expr[_MOUTH_IX] = np.clip(self._mouth, 0.0, 1.0)
        expr[_IX["blink_l"]] = blink_l
        expr[_IX["blink_r"]] = blink_r
        expr[_IX["brow_up"]] = min(1.0, c.brow_per_nod * nod_strength + c.brow_per_loudness * activity * loud)
        expr[_IX["gaze_x"]] = float(np.clip(gaze[0], -1.0, 1.0))
        expr[_IX["gaze_y"]] = float(np.clip(gaze[1], -1.0, 1.0))
        head = np.zeros(HEAD_DIMS, dtype=np.float32)
        head[:6] = euler_to_rotation6d(yaw, pitch, roll)
        k = c.head_translation_per_deg
        head[6] = k * yaw + c.head_follows_torso * sway
        head[7] = k * pitch
        return MotionFrame(
            index=index,
            pts=t,
            expression=expr,
            head=head,
            body=body,
            speaking=bool(speaking),
            phoneme_share=float(coverage),
        )

    def _window(self, t0: float, t1: float) -> tuple[float, float]:
        """Loudness (dBFS) and brightness of the 10 ms hops over ``[t0, t1)`` (at least one hop)."""
        k0 = self._energy.bin_at(t0)
        return self._energy.window(k0, max(k0 + 1, self._energy.bin_at(t1)))

    def _loudness(self, db: float) -> float:
        c = self.config
        return float(db_level(db, c.energy_floor_db, c.energy_ceiling_db))


def generate_motion(
    chunks: Iterable[AudioChunk],
    n_frames: int,
    fps: float = 25.0,
    seed: int = 0,
    config: TeacherConfig | None = None,
) -> list[MotionFrame]:
    """Offline: push all chunks, then make exactly ``n_frames`` frames (idle past the audio)."""
    if n_frames < 0:
        raise InputError(f"n_frames must be >= 0, not {n_frames}")
    engine = PhonemeMotionEngine(config, fps=fps, seed=seed)
    for chunk in chunks:
        engine.push_audio(chunk)
    engine.end_of_input()
    return engine.frames(n_frames / engine.fps - 0.5 / engine.fps)
