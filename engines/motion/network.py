"""The learned motion network at run time: streaming audio -> MotionFrame with onnxruntime.

Per frame: the frame's audio feature (causal, ``lookahead_frames`` of lookahead, see
:mod:`vlogger.engines.motion.features`), Gaussian initial noise (fresh per frame by default, or
an AR(1) process across frames: ``noise_correlation``; see :func:`ar1_noise`), then ``steps`` DDIM steps
(:class:`~vlogger.engines.diffusion.DDIMScheduler` over the network's x0 prediction) of the
transformer against a KV cache of the ``window - 1`` previous CLEAN frames, with classifier-free
guidance (cond and uncond in one batch of 2). The previous frame's cache entry is computed in the
same call as the first step (2 tokens), so a frame costs exactly ``steps`` calls. Memory is
constant: the cache has a fixed size and the audio kept is bounded. Where no audio is pushed the
network runs on silence (idle).

Mouth: with ``mouth="readout"`` (the default) the 9 mouth channels come from the read-out trained
on real speakers (:mod:`vlogger.engines.motion.mouth`, on the same features); with
``mouth="network"`` the diffusion network's own (learned from the phoneme generator) are used.

Blinks and gaze: with ``eyes="procedural"`` (the default) the teacher's blink and gaze processes
(:mod:`vlogger.engines.motion.procedural`) replace the network's eye channels; with
``eyes="network"`` the network's own are used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from vlogger.engines.audio import StreamResampler
from vlogger.engines.backends.base import Runner
from vlogger.engines.diffusion import DDIMScheduler, cosine_alpha_bar
from vlogger.engines.errors import InputError
from vlogger.engines.loudness import LoudnessTracker
from vlogger.engines.motion.base import checked_pcm
from vlogger.engines.motion.config import TeacherConfig
from vlogger.engines.motion.features import (
    FEATURE_RATE,
    FeatureConfig,
    FeatureStream,
    load_whisper_encoder,
)
from vlogger.engines.motion.mouth import EnergyGate, MouthModel, MouthReadout, load_mouth_model
from vlogger.engines.motion.procedural import BlinkProcess, GazeProcess, SpeechActivity
from vlogger.engines.types import BODY_KEYPOINTS, EXPRESSION_NAMES, HEAD_DIMS, AudioChunk, MotionFrame
from vlogger.export.motion import METADATA_KEY

__all__ = [
    "DEFAULT_MODEL",
    "MotionModels",
    "NetworkConfig",
    "NetworkMotionEngine",
    "ar1_noise",
    "load_motion_model",
    "load_motion_models",
    "noise_correlations",
    "noise_scales",
    "offline_rollout",
]

#: File name of the packaged model under ``engines/motion/assets``.
DEFAULT_MODEL = "motion_network.onnx"
_NE = len(EXPRESSION_NAMES)
_EYES = [EXPRESSION_NAMES.index(n) for n in ("blink_l", "blink_r", "gaze_x", "gaze_y")]


@dataclass(frozen=True)
class NetworkConfig:
    """Settings of :class:`NetworkMotionEngine`."""

    model_path: str | Path | None = None
    """ONNX motion network; ``None`` = the packaged ``engines/motion/assets/motion_network.onnx``."""
    steps: int = 2
    """DDIM steps per frame (each is one network call; 2 keeps a frame within the 3 ms budget)."""
    guidance: float = 2.0
    """Classifier-free guidance weight (1 = no guidance, one batch row; the paper used 5). Picked on
    held-out synthetic speech: 1 damps the mouth (std 0.65 of the teacher's), 2 matches it (1.15),
    3.5 exaggerates it (1.6) and lowers r."""
    eta: float = 0.0
    """DDIM stochasticity (0 = deterministic given the initial noise)."""
    noise_correlation: float = 0.0
    """Frame-to-frame correlation ``rho`` of the initial noise of the head, body, brow and eye
    channels: an AR(1) process ``z_i = rho z_(i-1) + sqrt(1 - rho^2) eps_i`` (stationary, unit
    variance, so every frame's noise is still N(0, 1) and seeds still differ) instead of fresh noise
    per frame (``0``). With few DDIM steps fresh noise makes the sampled head jump from frame to
    frame (the head carries most of the landmark jitter)."""
    mouth_noise_correlation: float = 0.0
    """The same for the 9 mouth channels (kept low: slow mouth noise makes two seeds' mouths
    disagree, while the mouth adds little jitter)."""
    mouth_noise_scale: float = 1.0
    """Scale of the mouth channels' initial noise (a sampling temperature): 1 = the model's own
    spread; below 1 the mouth keeps closer to what the audio implies while the head, brows and
    body stay fully stochastic."""
    x0_clip: float = 6.0
    """Clip of the x0 prediction in normalised units (keeps bad input from running away)."""
    threads: int = 1
    """onnxruntime intra-op threads."""
    backend: str = "onnxruntime"
    """Backend runner of the network (``vlogger.engines.backends.ort``): ``"onnxruntime"`` (CPU),
    ``"onnxruntime-cuda"`` or ``"onnxruntime-trt"``."""
    eyes: str = "procedural"
    """``"procedural"``: blinks and gaze from the teacher's processes; ``"network"``: the model's."""
    mouth: str = "readout"
    """``"readout"``: the mouth read-out trained on real speakers (speaker-disjoint lip sync r 0.6+
    vs 0.4 for the network's own mouth, ``benchmarks/lipsync.py``); ``"network"``: the diffusion
    network's mouth channels (trained on the phoneme generator's targets)."""
    mouth_model_path: str | Path | None = None
    """ONNX mouth read-out; ``None`` = the packaged ``engines/motion/assets/mouth_readout.onnx``."""
    diffusion: bool = True
    """Run the diffusion network (head, brows, eyes, body). ``False`` (needs ``mouth="readout"``):
    only the features and the mouth read-out run, the other channels stay at the model's mean;
    the ``hybrid`` engine, which takes nothing but the mouth from this engine, saves the network's
    two calls per frame."""
    speech_threshold_db: float = -38.0
    """Frame loudness (dBFS) above which a frame counts as speech (flag, gaze and blink timing)."""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise InputError(f"NetworkConfig.steps must be >= 1, not {self.steps}")
        if self.eyes not in ("procedural", "network"):
            raise InputError(f"NetworkConfig.eyes must be 'procedural' or 'network', not {self.eyes!r}")
        if self.mouth not in ("readout", "network"):
            raise InputError(f"NetworkConfig.mouth must be 'readout' or 'network', not {self.mouth!r}")
        if not self.diffusion and self.mouth != "readout":
            raise InputError("NetworkConfig.diffusion=False needs mouth='readout' (no other mouth)")
        if not (self.guidance >= 0 and math.isfinite(self.guidance)):
            raise InputError(f"NetworkConfig.guidance must be a finite number >= 0, not {self.guidance!r}")
        if not 0.0 <= self.mouth_noise_scale <= 1.0:
            raise InputError(
                f"NetworkConfig.mouth_noise_scale must be in [0, 1], not {self.mouth_noise_scale!r}"
            )
        for name in ("noise_correlation", "mouth_noise_correlation"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise InputError(f"NetworkConfig.{name} must be in [0, 1), not {v!r}")


#: The mouth channels of the motion vector (expression 0..8).
MOUTH = slice(0, 9)


def noise_correlations(config: NetworkConfig, motion_dim: int) -> np.ndarray:
    """Per-channel AR(1) coefficients of the initial noise, (motion_dim,) float32."""
    rho = np.full(motion_dim, config.noise_correlation, np.float32)
    rho[MOUTH] = config.mouth_noise_correlation
    return rho


def noise_scales(config: NetworkConfig, motion_dim: int) -> np.ndarray:
    """Per-channel scale of the initial noise, (motion_dim,) float32 (applied after the AR(1))."""
    scale = np.ones(motion_dim, np.float32)
    scale[MOUTH] = config.mouth_noise_scale
    return scale


def _ar1_step(prev: np.ndarray | None, eps: np.ndarray, rho: np.ndarray | float) -> np.ndarray:
    """The next value of the unit-variance AR(1) noise process (``eps`` itself for the first frame);
    ``rho`` a number or one per channel."""
    eps = eps.astype(np.float32)
    r = np.asarray(rho, np.float32)
    if prev is None or not np.any(r):
        return eps
    return (r * prev + np.sqrt(1.0 - r * r).astype(np.float32) * eps).astype(np.float32)


def ar1_noise(eps: np.ndarray, rho: np.ndarray | float) -> np.ndarray:
    """Per-frame initial noises (n, dim) from independent standard normals ``eps`` (n, dim), exactly
    as :class:`NetworkMotionEngine` forms them (``rho``: :func:`noise_correlations` of its config)."""
    out = np.empty(eps.shape, np.float32)
    z: np.ndarray | None = None
    for i in range(len(eps)):
        z = out[i] = _ar1_step(z, eps[i], rho)
    return out


def _default_model_path() -> Path:
    return Path(str(resources.files("vlogger.engines.motion").joinpath("assets", DEFAULT_MODEL)))


def load_motion_model(
    path: str | Path | None = None, threads: int = 1, backend: str = "onnxruntime"
) -> tuple[Runner, dict]:
    """The motion network in a backend runner (``OrtRunner``) and its metadata (mean, std, configs)."""
    from vlogger.engines.backends.ort import load_with_metadata

    p = Path(path) if path is not None else _default_model_path()
    runner, meta = load_with_metadata(p, "motion network", METADATA_KEY, threads, backend)
    meta["mean"] = np.asarray(meta["mean"], np.float32)
    meta["std"] = np.asarray(meta["std"], np.float32)
    return runner, meta


class _Net:
    """The ONNX step plus guidance and the DDIM loop for one frame (shared by the engine and the
    offline rollout)."""

    def __init__(self, runner: Runner, meta: dict, cfg: NetworkConfig) -> None:
        self.runner = runner
        self.cfg = cfg
        mc = meta["model_config"]
        self.window = int(mc["window"])
        self.layers, self.heads = int(mc["layers"]), int(mc["heads"])
        self.head_dim = int(mc["width"]) // self.heads
        self.motion_dim = int(mc["motion_dim"])
        train_steps = int(mc["diffusion_steps"])
        # the network predicts x0; it was trained with the schedule as a float32 table
        self.sampler = DDIMScheduler(
            train_steps,
            cfg.eta,
            prediction_type="sample",
            alpha_bar=cosine_alpha_bar(train_steps, dtype=np.float32),
        )
        self.sampler.set_timesteps(cfg.steps)
        self.batch = 1 if cfg.guidance == 1.0 else 2
        self.keep = np.array([1.0, 0.0][: self.batch], np.float32)

    def run(
        self,
        x: np.ndarray,
        audio: np.ndarray,
        t: np.ndarray,
        pk: np.ndarray,
        pv: np.ndarray,
        valid: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b = self.batch
        out = self.runner.infer(
            {
                "x": np.ascontiguousarray(np.broadcast_to(x, (b, *x.shape)), np.float32),
                "audio": np.ascontiguousarray(np.broadcast_to(audio, (b, *audio.shape)), np.float32),
                "t": np.ascontiguousarray(np.broadcast_to(t, (b, len(t))), np.float32),
                "keep": self.keep,
                "past_k": pk,
                "past_v": pv,
                "past_valid": valid,
            }
        )
        x0 = out["x0"][:, -1]
        if b == 2:
            g = self.cfg.guidance
            x0 = x0[1] + g * (x0[0] - x0[1])
        else:
            x0 = x0[0]
        x0 = np.clip(np.nan_to_num(x0, nan=0.0), -self.cfg.x0_clip, self.cfg.x0_clip)
        return x0.astype(np.float32), out["k"], out["v"]

    def denoise(
        self,
        noise: np.ndarray,
        feat: np.ndarray,
        prev: tuple[np.ndarray, np.ndarray] | None,
        pk: np.ndarray,
        pv: np.ndarray,
        valid: np.ndarray,
        step_noise: list[np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """x0 of one frame; with ``prev`` = (clean previous frame, its feature) the first call also
        returns that frame's keys and values (to append to the cache before the next calls)."""
        x = noise
        k_prev = v_prev = None
        for n, t in enumerate(self.sampler.timesteps):
            if n == 0 and prev is not None:
                xs = np.stack([prev[0], x])
                fs = np.stack([prev[1], feat])
                ts = np.array([0.0, float(t)], np.float32)
                x0, k, v = self.run(xs, fs, ts, pk, pv, valid)
                k_prev, v_prev = k[:, :, :, :1], v[:, :, :, :1]
                pk, pv, valid = _append(pk, pv, valid, k_prev, v_prev)
            else:
                x0, _, _ = self.run(x[None], feat[None], np.array([float(t)], np.float32), pk, pv, valid)
            extra = step_noise[n] if step_noise is not None else None
            x = self.sampler.step(x0, t, x, variance_noise=extra)
        return x, k_prev, v_prev


def _append(
    pk: np.ndarray, pv: np.ndarray, valid: np.ndarray, k: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cache with one frame appended (the oldest dropped), as new arrays."""
    pk = np.concatenate([pk[:, :, :, 1:], k], axis=3)
    pv = np.concatenate([pv[:, :, :, 1:], v], axis=3)
    valid = np.concatenate([valid[:, 1:], np.ones((valid.shape[0], 1), np.float32)], axis=1)
    return pk, pv, valid


@dataclass(frozen=True)
class MotionModels:
    """What every :class:`NetworkMotionEngine` of one configuration can share: the ONNX session, its
    metadata and the Whisper encoder. A server loads them once (:func:`load_motion_models`) and
    passes them to each session's engine, so a new session loads nothing."""

    runner: Runner
    """The motion network's backend runner (``infer`` is safe from several threads)."""
    meta: dict
    """The model's metadata (mean, std, model and feature configs)."""
    whisper: Any
    """The Whisper encoder for the features, or ``None`` (log-mel features need none)."""
    path: str
    """The model file these were loaded from (checked against an engine's config)."""
    threads: int
    """Intra-op threads both were loaded with."""
    mouth: MouthModel | None = None
    """The mouth read-out (``NetworkConfig.mouth == "readout"``), or ``None``."""
    backend: str = "onnxruntime"
    """The backend both ONNX models run on."""


def load_motion_models(config: NetworkConfig | None = None, parallel: int = 1) -> MotionModels:
    """Load the motion network and its feature encoder once, for many engines (``parallel``:
    encoder calls that may run at the same time, e.g. the machine's cores)."""
    cfg = config if config is not None else NetworkConfig()
    runner, meta = load_motion_model(cfg.model_path, cfg.threads, cfg.backend)
    fc = FeatureConfig(**{**meta["feature_config"], "threads": cfg.threads})
    whisper = load_whisper_encoder(fc, parallel) if fc.kind == "whisper" else None
    path = str(cfg.model_path) if cfg.model_path is not None else str(_default_model_path())
    mouth = None
    if cfg.mouth == "readout":
        mouth = load_mouth_model(cfg.mouth_model_path, cfg.threads, cfg.backend)
        if fc.kind != "whisper" or mouth.lookahead_frames != fc.lookahead_frames:
            raise InputError(
                f"the mouth read-out {mouth.path!r} reads Whisper features with {mouth.lookahead_frames} "
                f"frames of lookahead; the motion network's are {fc.kind} with {fc.lookahead_frames}"
            )
    return MotionModels(
        runner=runner,
        meta=meta,
        whisper=whisper,
        path=path,
        threads=int(cfg.threads),
        mouth=mouth,
        backend=cfg.backend,
    )


class NetworkMotionEngine:
    """A :class:`~vlogger.engines.motion.base.MotionEngine` running the learned motion network.

    ``NetworkMotionEngine(config, fps=25.0, seed=0)``: deterministic for a given seed.
    ``models``: loaded by :func:`load_motion_models` for the same config, shared with other engines
    (``None`` = load them for this engine).
    """

    @property
    def needs_phonemes(self) -> bool:
        """The network listens to the audio (Whisper features): no timings needed."""
        return False

    def __init__(
        self,
        config: NetworkConfig | None = None,
        fps: float = 25.0,
        seed: int = 0,
        models: MotionModels | None = None,
    ) -> None:
        self.config = cfg = config if config is not None else NetworkConfig()
        if models is None:
            models = load_motion_models(cfg)
        elif (
            models.threads != int(cfg.threads)
            or models.backend != cfg.backend
            or models.path != str(cfg.model_path if cfg.model_path is not None else _default_model_path())
        ):
            raise ValueError(
                "the shared motion models were loaded for another model path, thread count or backend"
            )
        if (cfg.mouth == "readout") != (models.mouth is not None) or (
            models.mouth is not None
            and cfg.mouth_model_path is not None
            and models.mouth.path != str(cfg.mouth_model_path)
        ):
            raise ValueError("the shared motion models were loaded for another mouth setting")
        self._models = models
        self._mouth = MouthReadout(models.mouth) if models.mouth is not None else None
        self._energy = EnergyGate(models.mouth.lookahead_frames) if models.mouth is not None else None
        runner, meta = models.runner, models.meta
        self.meta = meta
        self.feature_config = FeatureConfig(**{**meta["feature_config"], "threads": cfg.threads})
        if abs(float(fps) - self.feature_config.fps) > 1e-9:
            raise InputError(f"this motion network runs at {self.feature_config.fps:g} fps, not {fps!r}")
        self.fps = float(fps)
        self.seed = int(seed)
        self._net = _Net(runner, meta, cfg)
        self._mean, self._std = meta["mean"], meta["std"]
        self._spf = self.feature_config.samples_per_frame
        self._rng = np.random.default_rng([self.seed, 0x4E7])
        self._eye_rng = np.random.default_rng([self.seed, 0xE7E])
        tcfg = TeacherConfig()
        self._tcfg = tcfg
        self._blink = BlinkProcess(tcfg, self.fps)
        self._gaze = GazeProcess(tcfg)
        self._activity = SpeechActivity(tcfg, self.fps)
        self._reset_stream()
        n = self._net
        shape = (n.layers, n.batch, n.heads, n.window - 1, n.head_dim)
        self._pk = np.zeros(shape, np.float32)
        self._pv = np.zeros(shape, np.float32)
        self._valid = np.zeros((n.batch, n.window - 1), np.float32)
        self._prev: tuple[np.ndarray, np.ndarray] | None = None
        self._noise: np.ndarray | None = None
        self._rho = noise_correlations(cfg, n.motion_dim)
        self._scale = noise_scales(cfg, n.motion_dim)
        self._next_index = 0
        self._pending = False

    # ---- audio in -------------------------------------------------------------------------
    def _reset_stream(self, keep_samples: int = 0) -> None:
        self._fs = FeatureStream(self.feature_config, whisper=self._models.whisper)
        self._feat_queue: list[np.ndarray] = []
        self._loud = LoudnessTracker(self.fps)  # per-frame loudness of the 16 kHz audio
        self._resampler: StreamResampler | None = None
        self._seg_next = 0  # global 16 kHz index where the resampler's next output lands
        self._fill_from: int | None = None  # where idle silence pushed ahead of any input begins
        if keep_samples:
            self._fs.push(np.zeros(keep_samples, np.float32))

    def _feed(self, start: int, pcm16: np.ndarray) -> None:
        """Place 16 kHz samples at global index ``start`` (silence fills gaps; audio that lands on the
        idle silence pushed ahead for the lookahead replaces it, as far as no frame has been made
        from it; other overlap is dropped)."""
        have = self._fs.samples_pushed
        if self._fill_from is not None and start < have:
            cut = self._fs.truncate(max(start, self._fill_from))
            if cut < have:
                first = cut // self._spf
                self._loud.forget_from(first)
                if self._energy is not None:
                    self._energy.forget_from(max(first, self._next_index))
            have = cut
        self._fill_from = None
        if start > have:
            self._feed_silence(start - have)
            have = start
        pcm16 = pcm16[have - start :]
        if pcm16.size:
            self._loud.add(pcm16, FEATURE_RATE, have)
            self._fs.push(pcm16)

    def _feed_silence(self, n: int) -> None:
        if n > 0:
            self._fs.push(np.zeros(n, np.float32))

    def push_audio(self, chunk: AudioChunk) -> None:
        pcm = checked_pcm(chunk)
        rate = int(chunk.sample_rate)
        start16 = round(chunk.pts * FEATURE_RATE)
        r = self._resampler
        contiguous = r is not None and r.rate_in == rate and abs(start16 - self._seg_end16()) <= 2
        if not contiguous:
            self._flush_resampler()
            self._resampler = StreamResampler(rate, FEATURE_RATE) if rate != FEATURE_RATE else None
            self._seg_next = start16
            self._seg_src_total = 0
            self._seg_start16 = start16
        self._seg_src_total += len(pcm)
        out = self._resampler.process(pcm) if self._resampler is not None else pcm
        self._feed(self._seg_next, out)
        self._seg_next += len(out)
        self._pending = True

    def _seg_end16(self) -> float:
        r = self._resampler
        if r is None:
            return self._seg_next
        return self._seg_start16 + self._seg_src_total * FEATURE_RATE / r.rate_in

    def _flush_resampler(self) -> None:
        if self._resampler is not None:
            out = self._resampler.flush()
            self._feed(self._seg_next, out)
            self._seg_next += len(out)
            self._resampler = None

    def end_of_input(self) -> None:
        self._flush_resampler()
        self._pending = False

    def clear_buffer(self) -> None:
        """Drop audio not yet turned into frames (the avatar calms down to idle from here)."""
        self._resampler = None
        self._fs.rewind(self._next_index)
        self._fill_from = None
        self._feat_queue = []
        self._loud.forget_from(self._next_index)
        if self._energy is not None:
            self._energy.forget_from(self._next_index)
        self._pending = False

    def ready_until(self) -> float:
        if not self._pending:
            return math.inf
        return (
            self._next_index + len(self._feat_queue) + self._fs.frames_ready() - self._fs._next_frame
        ) / self.fps

    # ---- frames out -------------------------------------------------------------------------
    def frames(self, until_pts: float) -> list[MotionFrame]:
        limit = min(until_pts, self.ready_until())
        n_target = 0
        while (self._next_index + n_target) / self.fps < limit - 1e-9:
            n_target += 1
        if n_target == 0:
            return []
        if not self._pending:
            # Idle past the input: silence up to what the frames' lookahead needs.
            fc = self.feature_config
            need = (self._next_index + n_target + 1 + fc.lookahead_frames) * self._spf + 400
            if fc.kind == "whisper":  # whole encoder hops
                need += fc.whisper_hop_frames * self._spf
            if need > self._fs.samples_pushed and self._fill_from is None:
                self._fill_from = self._fs.samples_pushed
            self._feed_silence(need - self._fs.samples_pushed)
        out = []
        for k in range(n_target):
            if not self._feat_queue:
                self._feat_queue = list(self._fs.pop(limit=n_target - k))
            if not self._feat_queue:
                break
            out.append(self._frame(self._feat_queue.pop(0)))
        return out

    def _loudness_db(self, index: int) -> float:
        """Loudness of a frame's audio (dBFS; -100 without audio); the frame's audio is done with."""
        db = self._loud.db(index)
        self._loud.forget_before(index + 1)
        return db

    def _frame(self, feat: np.ndarray) -> MotionFrame:
        i = self._next_index
        if not self.config.diffusion and self._mouth is not None:
            self._next_index += 1
            m = self._mean.astype(np.float32).copy()
            m[MOUTH] = self._learned_mouth(i, feat)
            return self._to_frame(i, m)
        eps = self._rng.standard_normal(self._net.motion_dim).astype(np.float32)
        self._noise = _ar1_step(self._noise, eps, self._rho)
        noise = self._noise * self._scale
        step_noise = None
        if self.config.eta > 0:
            step_noise = [
                self._rng.standard_normal(self._net.motion_dim).astype(np.float32)
                for _ in range(self.config.steps)
            ]
        x0, k, v = self._net.denoise(noise, feat, self._prev, self._pk, self._pv, self._valid, step_noise)
        if k is not None and v is not None:
            self._pk, self._pv, self._valid = _append(self._pk, self._pv, self._valid, k, v)
        self._prev = (x0, feat)
        self._next_index += 1
        m = x0 * self._std + self._mean
        if self._mouth is not None:
            m[MOUTH] = self._learned_mouth(i, feat)
        return self._to_frame(i, m)

    def _learned_mouth(self, i: int, feat: np.ndarray) -> np.ndarray:
        """The read-out's mouth for frame ``i``, closed where the sound has stopped (:class:`EnergyGate`)."""
        assert self._mouth is not None and self._energy is not None
        mouth = self._mouth.step(feat)
        for j in range(max(self._energy.next_frame, i - 1), i + self._energy.lookahead + 1):
            self._energy.push(j, self._frame_db(j))
        return mouth * self._energy.gate(i)

    def _frame_db(self, index: int) -> float:
        """Loudness of a frame's audio so far (dBFS; -100 without audio), without consuming it."""
        return self._loud.db(index)

    def _to_frame(self, i: int, m: np.ndarray) -> MotionFrame:
        t = i / self.fps
        expr = m[:_NE].astype(np.float32).copy()
        expr[:13] = np.clip(expr[:13], 0.0, 1.0)
        expr[13:] = np.clip(expr[13:], -1.0, 1.0)
        loud = self._loudness_db(i)
        speaking = loud > self.config.speech_threshold_db
        phrase_start, phrase_end = self._activity.step(t, speaking)
        bl, br = self._blink.step(t, self._eye_rng, phrase_end)
        gaze = self._gaze.step(t, self._eye_rng, self._activity.level, phrase_start)
        if self.config.eyes == "procedural":
            expr[_EYES] = [bl, br, float(np.clip(gaze[0], -1, 1)), float(np.clip(gaze[1], -1, 1))]
        head = m[_NE : _NE + HEAD_DIMS].astype(np.float32)
        body = m[_NE + HEAD_DIMS :].astype(np.float32).reshape(BODY_KEYPOINTS, 2)
        return MotionFrame(index=i, pts=t, expression=expr, head=head, body=body, speaking=bool(speaking))


def offline_rollout(
    features: np.ndarray, noises: np.ndarray, config: NetworkConfig | None = None
) -> np.ndarray:
    """Normalised x0 of every frame by a causal rollout WITHOUT a cache: for each frame, the whole
    clean history so far plus the noisy frame go through the network in one call per DDIM step.
    Same noise as the engine (``noises`` (n, motion_dim)) -> the same result as streaming. O(n^2):
    for tests and debugging."""
    cfg = config if config is not None else NetworkConfig()
    runner, meta = load_motion_model(cfg.model_path, cfg.threads, cfg.backend)
    net = _Net(runner, meta, cfg)
    shape = (net.layers, net.batch, net.heads, net.window - 1, net.head_dim)
    empty_k = np.zeros(shape, np.float32)
    empty_valid = np.zeros((net.batch, net.window - 1), np.float32)
    done: list[np.ndarray] = []
    for i in range(len(features)):
        x = noises[i]
        for t in net.sampler.timesteps:
            xs = np.stack([*done, x])
            ts = np.array([0.0] * len(done) + [float(t)], np.float32)
            x0, _, _ = net.run(xs, features[: i + 1], ts, empty_k, empty_k, empty_valid)
            x = net.sampler.step(x0, t, x)
        done.append(x)
    return np.stack(done)
