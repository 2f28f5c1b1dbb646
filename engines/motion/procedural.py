"""Procedural non-verbal motion: blinks, gaze saccades, head motion with nods, torso sway.

Each process is stepped once per frame, in order, with one shared ``numpy.random.Generator``; the
draws depend only on the sequence of frames and inputs, so the motion is deterministic per seed
however the frames are requested.
"""

from __future__ import annotations

import math

import numpy as np

from vlogger.engines.motion.config import TeacherConfig
from vlogger.engines.types import BODY_KEYPOINTS

__all__ = [
    "BlinkProcess",
    "BodyProcess",
    "GazeProcess",
    "HeadProcess",
    "SpeechActivity",
    "euler_to_rotation6d",
]


def _smoothstep(u: float) -> float:
    u = min(1.0, max(0.0, u))
    return u * u * (3.0 - 2.0 * u)


class SpeechActivity:
    """Speech activity envelope (0..1, attack/release) and phrase boundaries, one step per frame."""

    def __init__(self, config: TeacherConfig, fps: float) -> None:
        self.config = config
        self._dt = 1.0 / fps
        self.level = 0.0
        """The envelope: rises towards 1 while speaking, falls towards 0 in pauses."""
        self._in_phrase = False
        self._speaking_since = -math.inf

    def step(self, t: float, speaking: bool) -> tuple[bool, bool]:
        """Advance to time ``t``; returns (phrase started, phrase ended) at this frame."""
        c = self.config
        tau = c.activity_attack_s if speaking else c.activity_release_s
        self.level += (float(speaking) - self.level) * (1.0 - math.exp(-self._dt / tau))
        phrase_start = phrase_end = False
        if speaking:
            phrase_start = not self._in_phrase
            self._in_phrase = True
            self._speaking_since = t
        elif self._in_phrase and t - self._speaking_since >= c.phrase_gap_s:
            self._in_phrase = False
            phrase_end = True
        return phrase_start, phrase_end


class BlinkProcess:
    """Spontaneous blinks (refractory Poisson process) plus extra blinks at phrase ends."""

    def __init__(self, cfg: TeacherConfig, fps: float) -> None:
        self.cfg = cfg
        self.hold = max(cfg.blink_hold_s, 1.0 / fps)
        mean_interval = 60.0 / max(cfg.blink_rate_per_min, 1e-6)
        self.extra_mean = max(mean_interval - cfg.blink_refractory_s, 0.05)
        self.next_start: float | None = None
        self.start = -math.inf
        self.asym = 0.0

    def _shape(self, u: float) -> float:
        c = self.cfg
        if u < 0.0:
            return 0.0
        if u < c.blink_close_s:
            x = u / c.blink_close_s
            return x * x  # accelerating lid, fully closed at the end of closing
        u -= c.blink_close_s
        if u < self.hold:
            return 1.0
        u -= self.hold
        if u < c.blink_open_s:
            return 1.0 - _smoothstep(u / c.blink_open_s)
        return 0.0

    def step(self, t: float, rng: np.random.Generator, phrase_end: bool) -> tuple[float, float]:
        c = self.cfg
        if self.next_start is None:
            self.next_start = t + rng.uniform(0.3, c.blink_refractory_s + self.extra_mean)
        if phrase_end and rng.random() < c.blink_phrase_end_prob:
            candidate = max(t + rng.uniform(0.1, 0.4), self.start + c.blink_refractory_s * 0.5)
            self.next_start = min(self.next_start, candidate)
        if t >= self.next_start:
            self.start = self.next_start
            self.asym = rng.uniform(-c.blink_asymmetry, c.blink_asymmetry)
            self.next_start = self.start + c.blink_refractory_s + rng.exponential(self.extra_mean)
        v = self._shape(t - self.start)
        d = self.asym * math.sin(math.pi * v)
        return min(1.0, max(0.0, v + d)), min(1.0, max(0.0, v - d))


class GazeProcess:
    """Fixations and fast saccades, mostly at the camera; a look away at some phrase starts."""

    def __init__(self, cfg: TeacherConfig) -> None:
        self.cfg = cfg
        self.pos = np.zeros(2)
        self.src = np.zeros(2)
        self.dst = np.zeros(2)
        self.sacc_start = -math.inf
        self.next_saccade: float | None = None

    def _saccade(self, t: float, target: np.ndarray) -> None:
        self.src = self.pos.copy()
        self.dst = np.clip(target, -1.0, 1.0)
        self.sacc_start = t

    def step(self, t: float, rng: np.random.Generator, activity: float, phrase_start: bool) -> np.ndarray:
        c = self.cfg
        mean_fix = c.fixation_idle_s + (c.fixation_speaking_s - c.fixation_idle_s) * activity
        if self.next_saccade is None:
            self.next_saccade = t + 0.3 + rng.exponential(mean_fix)
        if phrase_start and rng.random() < c.think_prob:
            side = 1.0 if rng.random() < 0.5 else -1.0
            tx, ty = c.think_gaze
            self._saccade(t, np.array([side * tx, ty]) + rng.normal(0.0, 0.05, 2))
            self.next_saccade = t + c.think_duration_s * rng.uniform(0.7, 1.3)
        elif t >= self.next_saccade:
            if rng.random() < c.gaze_center_prob:
                target = rng.normal(0.0, 0.03, 2)
            else:
                target = rng.normal(0.0, c.saccade_amplitude, 2) * np.array([1.0, 0.6])
            self._saccade(t, target)
            self.next_saccade = t + 0.3 + rng.exponential(mean_fix)
        u = (t - self.sacc_start) / c.saccade_duration_s
        self.pos = self.src + (self.dst - self.src) * _smoothstep(u)
        return self.pos


class HeadProcess:
    """Head angles (yaw, pitch, roll in degrees): an Ornstein-Uhlenbeck process whose amplitude
    rises with speech activity, low-passed, plus nods (chin down and back) at emphasis."""

    def __init__(self, cfg: TeacherConfig, fps: float) -> None:
        self.cfg = cfg
        self.dt = 1.0 / fps
        self.x = np.zeros(3)
        self.y = np.zeros(3)
        self.idle = np.asarray(cfg.head_idle_deg, dtype=np.float64)
        self.speak = np.asarray(cfg.head_speaking_deg, dtype=np.float64)
        self.decay = math.exp(-self.dt / cfg.head_time_constant_s)
        self.smooth = 1.0 - math.exp(-self.dt / cfg.head_smoothing_s) if cfg.head_smoothing_s > 0 else 1.0
        self.nods: list[tuple[float, float]] = []
        self.last_nod = -math.inf

    def nod(self, t: float, amplitude_deg: float) -> bool:
        """Start a nod at ``t`` unless one started less than ``nod_min_interval_s`` ago."""
        if t - self.last_nod < self.cfg.nod_min_interval_s:
            return False
        self.nods.append((t, amplitude_deg))
        self.last_nod = t
        return True

    def step(self, t: float, rng: np.random.Generator, activity: float) -> tuple[np.ndarray, float]:
        """Angles in degrees and the current nod strength (0..1, for the brows)."""
        sigma = self.idle + (self.speak - self.idle) * activity
        # Exact OU discretisation with stationary std ``sigma``.
        self.x = self.x * self.decay + sigma * math.sqrt(1.0 - self.decay**2) * rng.standard_normal(3)
        self.y = self.y + (self.x - self.y) * self.smooth
        angles = self.y.copy()
        strength = 0.0
        dur = self.cfg.nod_duration_s
        self.nods = [(s, a) for (s, a) in self.nods if t - s < dur]
        for s, a in self.nods:
            u = (t - s) / dur
            k = 0.5 * (1.0 - math.cos(2.0 * math.pi * u))
            angles[1] += a * k
            strength = max(strength, k * a / max(self.cfg.nod_deg, 1e-6))
        return angles, min(1.0, strength)


def euler_to_rotation6d(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """6D rotation (first two columns of R, column-major) of ``R = Rz(roll) @ Rx(pitch) @ Ry(-yaw)``
    in camera space (+x right, +y down, +z away): positive yaw turns the nose toward the image's
    right, positive pitch moves the nose down (a nod), positive roll tilts the head's top toward
    the image's right."""
    y, p, r = (math.radians(v) for v in (yaw_deg, pitch_deg, roll_deg))
    cy, sy, cp, sp, cr, sr = math.cos(y), math.sin(y), math.cos(p), math.sin(p), math.cos(r), math.sin(r)
    ry = np.array([[cy, 0.0, -sy], [0.0, 1.0, 0.0], [sy, 0.0, cy]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    # Top of the head is -y; tilting it toward +x rotates -y toward +x.
    rz = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    rot = rz @ rx @ ry
    return np.concatenate([rot[:, 0], rot[:, 1]]).astype(np.float32)


#: mediapipe pose indices.
_SHOULDERS = (11, 12)
_ELBOWS = (13, 14)
_WRISTS_AND_HANDS = (15, 16, 17, 18, 19, 20, 21, 22)


class BodyProcess:
    """Shoulder breathing and sway (image heights), shoulders tilting a little with the head."""

    def __init__(self, cfg: TeacherConfig, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.sway_phase = rng.uniform(0.0, 2.0 * math.pi)
        self.breath_phase = rng.uniform(0.0, 2.0 * math.pi)
        self.last_t: float | None = None

    def step(self, t: float, activity: float, roll_deg: float) -> tuple[np.ndarray, float]:
        """Body residuals (BODY_KEYPOINTS, 2) and the torso sway in x (image heights)."""
        c = self.cfg
        dt = 0.0 if self.last_t is None else t - self.last_t
        self.last_t = t
        period = c.breath_period_s + (c.breath_period_speaking_s - c.breath_period_s) * activity
        self.breath_phase += 2.0 * math.pi * dt / period
        sway = c.sway_amplitude * (
            0.8 * math.sin(2.0 * math.pi * t / c.sway_period_s + self.sway_phase)
            + 0.2 * math.sin(2.0 * math.pi * t / (0.37 * c.sway_period_s) + 2.0 * self.sway_phase)
        )
        rise = -c.breath_amplitude * 0.5 * (1.0 - math.cos(self.breath_phase))
        tilt = c.shoulder_tilt_per_deg * roll_deg
        out = np.zeros((BODY_KEYPOINTS, 2), dtype=np.float32)
        # 11 is the person's left shoulder (image right): a head tilt to the image right lowers it.
        shoulder = {11: (sway, rise + tilt), 12: (sway, rise - tilt)}
        for i in _SHOULDERS:
            out[i] = shoulder[i]
        for i, s in zip(_ELBOWS, _SHOULDERS, strict=True):
            out[i] = c.elbow_follow * out[s]
        mid = 0.5 * (out[11] + out[12])
        for i in _WRISTS_AND_HANDS:
            out[i] = c.hand_follow * mid
        out[33:] = c.hand_follow * mid
        return out, sway
