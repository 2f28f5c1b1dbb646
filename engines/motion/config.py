"""All parameters of the phoneme-driven motion generator (the "teacher") in one dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field

from vlogger.engines.errors import InputError
from vlogger.engines.motion.visemes import VISEMES

__all__ = ["TeacherConfig"]


def _unit_amplitudes() -> dict[str, float]:
    return {name: 1.0 for name in VISEMES}


@dataclass
class TeacherConfig:
    """Parameters of :class:`~vlogger.engines.motion.teacher.PhonemeMotionEngine`.

    Times are seconds, head angles degrees, gaze in the [-1, 1] units of ``gaze_x``/``gaze_y``,
    body offsets in image heights. Defaults follow the literature on conversational behaviour
    (blink rate 15-20/min, blink closing ~90 ms and opening ~150 ms, lips leading sound by 40-80 ms).
    """

    # --- mouth ---------------------------------------------------------------------------
    mode: str = "auto"
    """Mouth driver: ``"phonemes"`` (viseme coarticulation; silence where a chunk has no phonemes),
    ``"energy"`` (loudness and brightness of the audio only) or ``"auto"`` (phonemes where speech
    phonemes reach, energy elsewhere: chunks without phonemes and speech an aligner missed)."""
    lookahead_s: float = 0.06
    """Lips move this much before the sound: the mouth at time t shows the speech at t + lookahead."""
    anticipation_s: float = 0.14
    """Reach of a viseme's dominance before its start (anticipatory coarticulation)."""
    carryover_s: float = 0.10
    """Reach of a viseme's dominance after its end (carry-over coarticulation)."""
    dominance_power: float = 2.0
    """Shape of the dominance fall-off ``(1 - d / reach) ** power`` outside a segment (higher = tighter)."""
    coverage_gain: float = 2.0
    """``"auto"`` mode: the phoneme mouth's share is ``min(1, coverage_gain * sum of the speech
    visemes' dominance fall-offs at t)``; the energy mouth fills the rest."""
    rest_dominance: float = 0.08
    """Weight of the closed, relaxed mouth everywhere: far from any phoneme the mouth rests."""
    mouth_gain: float = 1.0
    """Global scale of the mouth targets (articulation strength)."""
    viseme_amplitude: dict[str, float] = field(default_factory=_unit_amplitudes)
    """Per-viseme scale of its targets (keys are the names in ``visemes.VISEMES``)."""
    stress_gain: float = 1.15
    """Extra scale of a stressed vowel's targets."""
    mouth_smoothing_s: float = 0.02
    """Time constant of a light one-pole smoother on the mouth (0 disables it)."""
    release_s: float = 0.10
    """After ``clear_buffer`` the mouth eases closed over this time."""

    # --- energy mode ---------------------------------------------------------------------
    energy_window_s: float = 0.04
    """Window of the loudness measure around each frame (centred at t + lookahead)."""
    energy_floor_db: float = -45.0
    """RMS level (dBFS) mapped to loudness 0."""
    energy_ceiling_db: float = -12.0
    """RMS level (dBFS) mapped to loudness 1."""
    energy_jaw_gain: float = 0.7
    """jaw_open at loudness 1 (energy mode)."""
    energy_gamma: float = 0.8
    """jaw_open follows loudness ** gamma (energy mode)."""
    energy_lower_lip_gain: float = 0.25
    """lower_lip_down at loudness 1 (energy mode)."""
    energy_stretch_gain: float = 0.4
    """lip_stretch at loudness 1 for hiss-like (bright) sounds (energy mode)."""
    energy_funnel_gain: float = 0.3
    """lip_funnel at loudness 1 for dark voiced sounds (energy mode)."""
    energy_hiss_jaw_reduction: float = 0.6
    """Share by which the jaw closes on hiss-like sounds (s, f, sh are loud but nearly closed)."""
    energy_smoothing_s: float = 0.06
    """Time constant of a one-pole low-pass on the energy-driven mouth (the jaw is slower than the
    loudness envelope; 0 disables it)."""
    speech_threshold: float = 0.2
    """Loudness above which a frame counts as speech (drives activity, nods, speaking flag)."""

    # --- speech activity -------------------------------------------------------------------
    activity_attack_s: float = 0.15
    """How fast head/gaze liveliness rises when speech starts."""
    activity_release_s: float = 0.8
    """How fast it decays back to idle after speech stops."""
    phrase_gap_s: float = 0.4
    """Silence at least this long separates phrases (phrase starts and ends trigger gaze and blinks)."""

    # --- blinks ----------------------------------------------------------------------------
    blink_rate_per_min: float = 17.0
    """Mean spontaneous blink rate (a refractory-period Poisson process)."""
    blink_refractory_s: float = 1.2
    """No two blinks start closer than this."""
    blink_phrase_end_prob: float = 0.5
    """Chance of an extra blink 0.1-0.4 s after a phrase ends."""
    blink_close_s: float = 0.09
    """Closing time of a blink."""
    blink_hold_s: float = 0.04
    """Time fully closed (at least one frame period, so every blink shows a closed frame)."""
    blink_open_s: float = 0.15
    """Opening time of a blink."""
    blink_asymmetry: float = 0.04
    """Largest difference between the two eyelids during a blink."""

    # --- gaze --------------------------------------------------------------------------------
    fixation_idle_s: float = 1.4
    """Mean fixation duration when idle (exponential above 0.3 s)."""
    fixation_speaking_s: float = 2.0
    """Mean fixation duration when speaking (speakers hold the listener's eyes longer)."""
    gaze_center_prob: float = 0.6
    """Chance that a saccade returns to the camera (near 0, 0)."""
    saccade_amplitude: float = 0.25
    """Std of a saccade target away from the camera (horizontal; vertical uses 0.6 of it)."""
    saccade_duration_s: float = 0.045
    """Duration of one saccade."""
    think_prob: float = 0.5
    """Chance of looking away (up and aside) at a phrase start, "thinking"."""
    think_duration_s: float = 0.7
    """How long the look-away lasts before the eyes come back to the camera."""
    think_gaze: tuple[float, float] = (0.35, -0.3)
    """Look-away target (|x| with a random side, y; negative y looks up)."""
    head_follows_gaze_deg: float = 4.0
    """Head yaw (and half of it as pitch) in degrees per unit of gaze: the head turns a little with
    the eyes."""
    head_follows_gaze_s: float = 0.3
    """Time constant of the head following the gaze."""

    # --- head ----------------------------------------------------------------------------------
    head_idle_deg: tuple[float, float, float] = (1.0, 0.8, 0.5)
    """Std of yaw, pitch, roll when idle."""
    head_speaking_deg: tuple[float, float, float] = (3.0, 2.5, 1.5)
    """Std of yaw, pitch, roll when speaking at full activity."""
    head_time_constant_s: float = 0.9
    """Time constant of the Ornstein-Uhlenbeck head process."""
    head_smoothing_s: float = 0.15
    """Extra low-pass on the head angles (no jitter)."""
    nod_deg: float = 3.0
    """Pitch of a nod (chin down) at full loudness."""
    nod_duration_s: float = 0.45
    """Duration of a nod (down and back)."""
    nod_min_interval_s: float = 0.6
    """Nods at least this far apart."""
    nod_onset_rise: float = 0.25
    """Loudness rise within ``nod_onset_window_s`` that counts as an energy onset (a nod)."""
    nod_onset_window_s: float = 0.12
    """Window of the loudness rise that detects an onset."""
    nod_stress_prob: float = 0.35
    """Chance of a nod at the start of a stressed vowel (phoneme mode)."""
    brow_per_nod: float = 0.25
    """brow_up that goes with a full nod (emphasis)."""
    brow_per_loudness: float = 0.08
    """brow_up at full loudness and full speech activity."""
    head_translation_per_deg: float = 0.004
    """Head translation in face widths per degree (tx from yaw, ty from pitch)."""
    head_follows_torso: float = 5.0
    """Head translation in face widths per image height of torso sway."""

    # --- torso ---------------------------------------------------------------------------------
    sway_amplitude: float = 0.003
    """Torso sway of the shoulders (x), image heights."""
    sway_period_s: float = 7.0
    """Period of the sway."""
    breath_amplitude: float = 0.0025
    """Shoulder rise when breathing in, image heights."""
    breath_period_s: float = 4.0
    """Breathing period when idle."""
    breath_period_speaking_s: float = 3.0
    """Breathing period while speaking."""
    shoulder_tilt_per_deg: float = 0.0003
    """Shoulder tilt (image heights per degree of head roll)."""
    elbow_follow: float = 0.7
    """Share of the shoulder motion that elbows (13, 14) follow."""
    hand_follow: float = 0.5
    """Share of the shoulder motion that wrists, hand landmarks and hand keypoints follow."""

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "phonemes", "energy"):
            raise InputError(f"TeacherConfig.mode must be 'auto', 'phonemes' or 'energy', not {self.mode!r}")
        for name in ("anticipation_s", "carryover_s", "release_s", "energy_window_s", "head_time_constant_s"):
            if getattr(self, name) <= 0:
                raise InputError(f"TeacherConfig.{name} must be > 0")
        if self.lookahead_s < 0:
            raise InputError("TeacherConfig.lookahead_s must be >= 0")
        if self.energy_ceiling_db <= self.energy_floor_db:
            raise InputError("TeacherConfig.energy_ceiling_db must be above energy_floor_db")
        unknown = set(self.viseme_amplitude) - set(VISEMES)
        if unknown:
            raise InputError(f"TeacherConfig.viseme_amplitude has unknown visemes: {sorted(unknown)}")
