"""Lip sync at the RENDERED level: the whole offline pipeline as a user meets it, scored on real clips.

A real talking clip gives a photo (one of its own frames, :func:`clip_photo`) and its audio on the
video clock (16 kHz, frame ``i`` covers ``[i/25, (i+1)/25)``). :func:`render_clip` renders them with
:func:`vlogger.runtime.render_job.render_video` (the real pipeline: fit, motion engine, rig, renderer,
H.264/AAC MP4), strips the render's lead-in so that rendered frame ``i`` lines up with audio frame
``i``, reads the MP4 back with PyAV and re-detects the face with mediapipe FaceMesh
(``static_image_mode=False, refine_landmarks=True, max_num_faces=1``) on every frame: the RENDERED
mouth opening (:func:`vlogger.engines.metrics.mouth_opening`, NaN where no face is found).

Beside it, the COMMANDED opening: the same measure on the rig's posed face (``avatar.rig.pose``)
for the motion frames the render used. The motion engine render_video builds is wrapped (through
the config copy handed to it) so that the audio chunks it is pushed and the ``frames()`` calls it
receives are recorded; a fresh engine from the same config and seed then replays exactly that call
sequence (as render_job drives it) and its frames are posed. The replay is checked against the
frames the render used (``RenderedClip.rerun_max_diff`` = the largest absolute difference of any
motion value; 0 for a deterministic engine), and the best lag of rendered vs commanded is reported
(``RenderedClip.fidelity.lag``; it must be 0).

Scores: :func:`score` (Pearson r at the best lag within +-``max_lag`` frames, NaN ignored),
:func:`fidelity` (rendered vs commanded at lag 0: r, std ratio, mean difference) and
:func:`rest_and_std` (the mouth at rest in silence against the real closed mouth, the std ratio).

The library is used by ``benchmarks/lipsync.py``; the CLI scores one clip against the real opening
stored in ``training/data/real/<clip>.landmarks25.npz``::

    python benchmarks/lipsync_render.py --clip grid_gm01_01 [--motion network] [--frame 0]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias

import numpy as np

from vlogger.engines.metrics import best_lag, mouth_opening
from vlogger.engines.metrics import pearson as _pearson
from vlogger.engines.metrics import shifted_pairs as _shifted
from vlogger.runtime.config import VloggerConfig

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a script from benchmarks/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = [
    "FPS",
    "RENDER_HEIGHT",
    "SAMPLE_RATE",
    "Fidelity",
    "RenderedClip",
    "RestStd",
    "clip_audio",
    "clip_path",
    "clip_photo",
    "fidelity",
    "real_opening",
    "reference_frame",
    "render_clip",
    "rest_and_std",
    "score",
]

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "training" / "data" / "real"
FPS = 25.0
SAMPLE_RATE = 16_000
#: Output height used unless the caller sets one (the warp renderer's realtime size).
RENDER_HEIGHT = 256
#: Silence: frame RMS below this (dBFS) for at least SILENT_RUN consecutive frames.
SILENCE_DBFS = -45.0
SILENT_RUN = 5

ConfigSource: TypeAlias = VloggerConfig | Callable[[], VloggerConfig]


def default_data() -> Path:
    """The shared data folder (``$VLOGGER_SHARED_DATA`` or ``../shared/data`` next to the repo)."""
    env = os.environ.get("VLOGGER_SHARED_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


# ---------------------------------------------------------------------------------------------
# inputs


def clip_path(clip: str, data: Path | None = None) -> Path:
    """The MP4 of a real clip: ``<data>/real/<clip>.mp4`` or ``<data>/video/<clip>.mp4``."""
    data = default_data() if data is None else Path(data)
    for sub in ("real", "video"):
        p = data / sub / f"{clip}.mp4"
        if p.is_file():
            return p
    raise FileNotFoundError(f"no clip {clip!r} under {data}/real or {data}/video")


def clip_photo(clip_path: str | Path, frame_index: int = 0) -> np.ndarray:
    """Frame ``frame_index`` (in the clip's own frame numbering, decode order) as RGB uint8 (H, W, 3)."""
    import av

    if frame_index < 0:
        raise ValueError(f"frame_index must be >= 0, not {frame_index}")
    with av.open(str(clip_path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == frame_index:
                return np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
    raise IndexError(f"{clip_path} has only {i + 1} frames, not {frame_index + 1}")


def clip_audio(clip: str, corpus: str | Path = REAL) -> np.ndarray:
    """The clip's 16 kHz float32 audio on the video clock from the real-clip corpus (frame ``i``
    covers samples ``[640 i, 640 (i + 1))``)."""
    try:
        from training.corpus import Corpus
    except ImportError:  # run as a script from benchmarks/
        sys.path.insert(0, str(ROOT))
        from training.corpus import Corpus

    folder = Path(corpus)
    manifest = json.loads((folder / "manifest.json").read_text())
    index = 0
    for shard in manifest["shards"]:
        if shard.get("clip") == clip:
            item = Corpus(folder)[index]
            if item.source != f"clip:{clip}":
                raise RuntimeError(f"corpus item {index} is {item.source!r}, not clip:{clip}")
            return np.asarray(item.audio16k, np.float32)
        index += int(shard["items"])
    raise KeyError(f"clip {clip!r} is not in {folder / 'manifest.json'}")


def reference_frame(clip: str, corpus: str | Path = REAL, data: Path | None = None) -> int:
    """The clip's own frame (decode order) with the most closed mouth and open eyes: the corpus
    manifest's ``reference_frame`` (a 25 fps index) mapped by timestamps to the nearest decoded frame
    (some clips have a variable frame rate)."""
    import av

    manifest = json.loads((Path(corpus) / "manifest.json").read_text())
    ref = next(
        (int(r["reference_frame"]) for r in manifest.get("reports", []) if r.get("clip") == clip),
        None,
    )
    if ref is None:
        raise KeyError(f"no reference_frame for {clip!r} in {Path(corpus) / 'manifest.json'}")
    with av.open(str(clip_path(clip, data))) as container:
        stream = container.streams.video[0]
        start, base = stream.start_time, stream.time_base
        v0 = float(start * base) if start is not None and base is not None else 0.0
        times = [float(f.time) - v0 for f in container.decode(stream) if f.time is not None]
    return int(np.argmin(np.abs(np.asarray(times) - ref / FPS)))


def real_opening(clip: str, corpus: str | Path = REAL) -> np.ndarray:
    """The real clip's mouth opening per 25 fps frame from ``<clip>.landmarks25.npz`` (NaN where no
    face was detected within 0.1 s)."""
    with np.load(Path(corpus) / f"{clip}.landmarks25.npz") as z:
        real = np.asarray(z["real_mouth_opening"], np.float64)
        if "found" in z.files:
            real = np.where(z["found"], real, np.nan)
    return real


def write_wav(path: Path, pcm: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    """Mono float32 WAV (lossless: the pipeline reads back exactly these samples)."""
    import av

    x = np.ascontiguousarray(np.asarray(pcm, np.float32).reshape(1, -1))
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_f32le", rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(x, format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def write_png(path: Path, rgb: np.ndarray) -> Path:
    import cv2

    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1])):
        raise OSError(f"could not write {path}")
    return path


# ---------------------------------------------------------------------------------------------
# scores


score = best_lag
"""Pearson r at the best lag within +-``max_lag`` frames (:func:`vlogger.engines.metrics.best_lag`)."""


class Fidelity(NamedTuple):
    """How faithfully the rendered mouth follows the commanded one."""

    r: float
    """Pearson r at lag 0."""
    std_ratio: float
    """std(rendered) / std(commanded)."""
    mean_diff: float
    """mean(rendered) - mean(commanded)."""
    lag: int
    """Best lag of rendered vs commanded within +-2 frames (> 0: rendered earlier); must be 0."""
    r_best: float
    """r at that lag."""


def fidelity(rendered: np.ndarray, commanded: np.ndarray, max_lag: int = 2) -> Fidelity:
    """Rendered vs commanded opening: r at lag 0, the std ratio and mean difference (over frames
    where both are finite), and the best lag as an alignment check."""
    a, b = _shifted(commanded, rendered, 0)  # (commanded, rendered) pairs
    if len(a) == 0:
        nan = float("nan")
        return Fidelity(nan, nan, nan, 0, nan)
    r_best, lag = score(commanded, rendered, max_lag)
    std_c = float(np.std(a))
    return Fidelity(
        r=_pearson(a, b),
        std_ratio=float(np.std(b)) / std_c if std_c > 0 else float("nan"),
        mean_diff=float(np.mean(b) - np.mean(a)),
        lag=lag,
        r_best=r_best,
    )


def silent_frames(audio16k: np.ndarray, n_frames: int, fps: float = FPS) -> np.ndarray:
    """(n_frames,) bool: frames in runs of >= SILENT_RUN consecutive frames whose RMS is below
    SILENCE_DBFS (frames past the end of the audio count as silent)."""
    from vlogger.engines.audio import frame_energy

    quiet = frame_energy(audio16k, SAMPLE_RATE, fps, n_frames) < SILENCE_DBFS
    out = np.zeros(n_frames, bool)
    i = 0
    while i < n_frames:
        if not quiet[i]:
            i += 1
            continue
        j = i
        while j < n_frames and quiet[j]:
            j += 1
        if j - i >= SILENT_RUN:
            out[i:j] = True
        i = j
    return out


class RestStd(NamedTuple):
    """The mouth at rest and the size of its motion."""

    rest_rendered: float
    """Median rendered opening over silent frames (NaN when the clip has no silent run)."""
    rest_real: float
    """The real clip's closed mouth: 5th percentile of the real opening."""
    std_ratio: float
    """std(rendered) / std(real) over the clip (finite frames of each)."""
    silent_frames: int
    """How many frames counted as silent."""


def rest_and_std(rendered: np.ndarray, audio16k: np.ndarray, real: np.ndarray) -> RestStd:
    """The rendered mouth in silence (frame RMS < -45 dBFS for >= 5 frames; median) against the real
    closed mouth (5th percentile of ``real``), and std(rendered) / std(real)."""
    rendered = np.asarray(rendered, np.float64)
    real = np.asarray(real, np.float64)
    silent = silent_frames(audio16k, len(rendered))
    quiet = rendered[silent & np.isfinite(rendered)]
    sr = float(np.nanstd(real))
    return RestStd(
        rest_rendered=float(np.median(quiet)) if quiet.size else float("nan"),
        rest_real=float(np.nanpercentile(real, 5)) if np.isfinite(real).any() else float("nan"),
        std_ratio=float(np.nanstd(rendered)) / sr if sr > 0 else float("nan"),
        silent_frames=int(silent.sum()),
    )


# ---------------------------------------------------------------------------------------------
# rendering


class _RecordingEngine:
    """Wraps the motion engine render_video builds: records the calls it receives and the frames
    it hands out, so the same call sequence can be replayed on a fresh engine."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.calls: list[tuple[str, Any]] = []
        self.frames_out: list[Any] = []

    def push_audio(self, chunk: Any) -> None:
        self.calls.append(("push_audio", copy.deepcopy(chunk)))
        self._engine.push_audio(chunk)

    def end_of_input(self) -> None:
        self.calls.append(("end_of_input", None))
        self._engine.end_of_input()

    def clear_buffer(self) -> None:
        self.calls.append(("clear_buffer", None))
        self._engine.clear_buffer()

    def frames(self, until_pts: float) -> list[Any]:
        self.calls.append(("frames", until_pts))
        out = self._engine.frames(until_pts)
        self.frames_out.extend(out)
        return out

    def __getattr__(self, name: str) -> Any:  # ready_until, fps, latency_s, ...
        return getattr(self._engine, name)


def replay(engine: Any, calls: Sequence[tuple[str, Any]]) -> list[Any]:
    """Drive ``engine`` with a recorded call sequence; the frames it returns, in order."""
    out: list[Any] = []
    for name, arg in calls:
        if name == "frames":
            out.extend(engine.frames(arg))
        elif name == "push_audio":
            engine.push_audio(copy.deepcopy(arg))
        else:
            getattr(engine, name)()
    return out


def _motion_vector(frame: Any) -> np.ndarray:
    parts = [frame.expression, frame.head, frame.body]
    return np.concatenate([np.asarray(p, np.float64).reshape(-1) for p in parts])


def _max_diff(a: Sequence[Any], b: Sequence[Any]) -> float:
    if len(a) != len(b):
        return float("inf")
    if not a:
        return 0.0
    if any(x.index != y.index for x, y in zip(a, b, strict=True)):
        return float("inf")
    pairs = zip(a, b, strict=True)
    return float(max(np.max(np.abs(_motion_vector(x) - _motion_vector(y))) for x, y in pairs))


def _resolve(config: ConfigSource) -> VloggerConfig:
    cfg = config() if callable(config) else config
    if not isinstance(cfg, VloggerConfig):
        raise TypeError(f"expected a VloggerConfig (or a callable returning one), got {type(cfg).__name__}")
    return cfg


def _mesh_openings(path: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """Mouth opening per decoded frame (NaN where no face), the frames' pts in seconds, and fps.

    Rendered frames are measured with the project's face landmarker (tracking mode), which gives
    mediapipe FaceMesh(refine_landmarks=True)'s landmarks within 0.02% of the eye distance
    (``benchmarks/fit.py``); the real clips' mouths stay measured by mediapipe itself."""
    import av

    from vlogger.engines.avatar.landmarks import FaceLandmarker

    values: list[float] = []
    times: list[float] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate) if stream.average_rate else float("nan")
        with FaceLandmarker(static=False) as mesh:
            for frame in container.decode(stream):
                img = frame.to_ndarray(format="rgb24")
                times.append(float(frame.time) if frame.time is not None else float("nan"))
                found = mesh.process(img)
                values.append(mouth_opening(found[0][:, :2]) if found else float("nan"))
    return np.asarray(values), np.asarray(times), fps


def _av_offset(path: Path, pcm: np.ndarray, lead_in: float, max_shift_s: float = 0.2) -> float:
    """Seconds by which the MP4's audio track is LATE relative to the input speech placed at
    ``lead_in`` (0 = in sync), by cross-correlating the decoded AAC with the input."""
    from scipy.signal import correlate

    from vlogger.engines.audio import load_audio

    decoded, rate = load_audio(path, target_rate=SAMPLE_RATE)
    x = np.asarray(pcm, np.float64)
    start = round(lead_in * rate)
    shift = round(max_shift_s * rate)
    lo = max(0, start - shift)
    seg = np.asarray(decoded[lo : start + shift + len(x)], np.float64)
    if len(seg) < len(x) or not np.any(x):
        return float("nan")
    c = correlate(seg, x, mode="valid", method="fft")  # c[k] = sum seg[k + j] x[j]
    best_k = int(np.argmax(c)) + lo - start
    return best_k / rate


def _warp_lips_flipped(avatar: Any, config: VloggerConfig) -> bool:
    """Whether the warp renderer's mouth model for this avatar has the inner-lip chains swapped
    (its "upper" chain does not hold landmark 13, the upper inner lip's middle)."""
    from vlogger.engines.avatar.topology import face_topology
    from vlogger.engines.render.warp.mouth import MouthModel

    face = np.asarray(avatar.fit.face, np.float64)[:, :2]
    mouth = MouthModel(avatar.image, face, face_topology().lips_inner, config.warp)
    return 13 not in mouth.upper.tolist()


@dataclass
class RenderedClip:
    """One clip rendered by the real pipeline and measured."""

    rendered: np.ndarray
    """(n,) mouth opening re-detected on the rendered MP4, frame i = audio [i/fps, (i+1)/fps); NaN
    where FaceMesh found no face."""
    commanded: np.ndarray
    """(n,) the same measure on the rig's posed face for the motion frames of the render."""
    fps: float
    n_frames: int
    timing_source: str
    """render_video's report: "alignment", "energy", "audio" (network) or "silence"."""
    wall_seconds: float
    """The whole of render_clip (render, decode + FaceMesh, replay and posing)."""
    render_seconds: float = 0.0
    """render_video alone."""
    mesh_seconds: float = 0.0
    """Decoding the MP4 and FaceMesh on every frame."""
    rerun_seconds: float = 0.0
    """Replaying the motion engine and posing its frames."""
    stage_seconds: dict[str, float] = field(default_factory=dict)
    lead_frames: int = 0
    """Rendered frames dropped from the start (the lead-in)."""
    video_frames: int = 0
    """Frames in the MP4 (lead-in and tail included)."""
    rerun_max_diff: float = float("nan")
    """Largest |difference| of any motion value between the replayed engine and the frames the render
    used (0 when the engine is deterministic); NaN when not checked."""
    face_found: float = 0.0
    """Fraction of the n frames where FaceMesh found a face."""
    av_offset_s: float = float("nan")
    """How late the MP4's audio is against its video (cross-correlation with the input speech)."""
    pts_ok: bool = True
    """Whether the decoded frames' pts are i / fps."""
    height: int = 0
    fidelity: Fidelity | None = None
    warp_lips_flipped: bool | None = None
    """Whether the warp renderer's mouth model has its upper and lower inner-lip chains swapped
    (``eye_chains`` picks "upper" by mean y, a coin toss when the photo's lips touch); then the
    interior is never drawn and the rendered mouth barely opens. None for other renderers."""
    warnings: list[str] = field(default_factory=list)
    video: Path | None = None
    """The MP4 (inside ``workdir``)."""

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("rendered", "commanded"):
            d.pop(k)
        d["fidelity"] = self.fidelity._asdict() if self.fidelity is not None else None
        d["video"] = str(self.video) if self.video is not None else None
        return d


def render_clip(
    photo_rgb: np.ndarray,
    audio16k: np.ndarray,
    config: ConfigSource,
    workdir: str | Path,
    height: int | None = RENDER_HEIGHT,
    verify: bool = True,
    av_check: bool = True,
) -> RenderedClip:
    """Render ``photo_rgb`` saying ``audio16k`` (16 kHz float32) through ``render_video`` and measure
    the rendered and commanded mouth openings per frame of the audio (n = ceil(len / 640) at 25 fps).

    ``config``: a VloggerConfig (or a callable returning one); it is copied, never changed. Its
    motion engine, renderer, seed etc. are used as they are; the output height is ``height`` (256 by
    default; ``None`` keeps ``config.output.height``). The lead-in is rounded to whole frames and
    its frames are dropped, so rendered frame i covers audio [i/fps, (i+1)/fps). ``verify``: replay
    the motion engine on the recorded calls and compare. ``av_check``: measure the MP4's audio/video
    offset.
    """
    from vlogger.engines.avatar import load_avatar
    from vlogger.runtime.render_job import RenderRequest, render_video

    t_start = time.perf_counter()
    base = _resolve(config)
    cfg = copy.copy(base)
    if height is None:
        height = base.output.height
    fps = float(base.output.fps)
    lead_frames = round(base.output.lead_in * fps)
    warnings: list[str] = []
    if abs(lead_frames - base.output.lead_in * fps) > 1e-6:
        warnings.append(f"lead_in {base.output.lead_in} s rounded to {lead_frames} whole frames")
    cfg.output = replace(base.output, height=int(height), lead_in=lead_frames / fps)

    recorders: list[_RecordingEngine] = []

    def make_motion(seed: int | None = None, models: Any = None) -> Any:
        rec = _RecordingEngine(type(base).make_motion(cfg, seed, models))
        recorders.append(rec)
        return rec

    cfg.make_motion = make_motion  # type: ignore[method-assign,unused-ignore]

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    pcm = np.asarray(audio16k, np.float32).reshape(-1)
    wav = write_wav(work / "speech.wav", pcm)
    png = write_png(work / "photo.png", np.asarray(photo_rgb, np.uint8))
    out = work / "render.mp4"
    n = math.ceil(len(pcm) * fps / SAMPLE_RATE - 1e-9)

    t0 = time.perf_counter()
    report = render_video(RenderRequest(out=out, image=png, audio=wav), cfg)
    render_seconds = time.perf_counter() - t0
    warnings.extend(report.warnings)
    if len(recorders) != 1:
        raise RuntimeError(f"render_video built {len(recorders)} motion engines; expected 1")
    rec = recorders[0]

    t0 = time.perf_counter()
    values, times, file_fps = _mesh_openings(out)
    mesh_seconds = time.perf_counter() - t0
    video_frames = len(values)
    if video_frames != report.frames:
        warnings.append(f"decoded {video_frames} frames, the report says {report.frames}")
    pts_ok = bool(np.allclose(times, np.arange(video_frames) / fps, atol=0.25 / fps))
    if not pts_ok:
        warnings.append("decoded frame times are not i / fps")
    if abs(file_fps - fps) > 1e-3:
        warnings.append(f"the MP4 runs at {file_fps} fps, the config at {fps}")
    if video_frames < lead_frames + n:
        warnings.append(f"the MP4 has {video_frames} frames, fewer than lead-in {lead_frames} + {n}")
    rendered = np.full(n, np.nan)
    got = values[lead_frames : lead_frames + n]
    rendered[: len(got)] = got

    # commanded: the frames the engine produced, by frame index (frame k at pts k / fps)
    t0 = time.perf_counter()
    used = rec.frames_out
    if [int(f.index) for f in used] != list(range(len(used))):
        warnings.append("the render's motion frames are not numbered 0, 1, 2, ... in order")
    rerun_max_diff = float("nan")
    frames = used
    if verify:
        fresh = type(base).make_motion(cfg)
        frames = replay(fresh, rec.calls)
        rerun_max_diff = _max_diff(used, frames)
        if rerun_max_diff > 1e-6:
            warnings.append(
                f"the replayed motion engine differs from the render's (max |diff| {rerun_max_diff:.3g})"
            )
    avatar = load_avatar(png, height=cfg.output.height, config=cfg.avatar)
    lips_flipped = _warp_lips_flipped(avatar, cfg) if cfg.renderer == "warp" else None
    if lips_flipped:
        warnings.append(
            "the warp renderer took the photo's LOWER inner lip for the upper one (eye_chains on a "
            "closed mouth): it will not draw the mouth interior"
        )
    by_index = {int(f.index): f for f in frames}
    commanded = np.full(n, np.nan)
    for i in range(n):
        f = by_index.get(lead_frames + i)
        if f is not None:
            commanded[i] = mouth_opening(avatar.rig.pose(f).face)
    rerun_seconds = time.perf_counter() - t0
    if not np.isfinite(commanded).all():
        warnings.append(f"{int(np.isnan(commanded).sum())} frames without a motion frame")

    av_offset = _av_offset(out, pcm, cfg.output.lead_in) if av_check else float("nan")
    if av_check and abs(av_offset) > 0.5 / fps:
        warnings.append(f"the MP4's audio is {1000 * av_offset:+.0f} ms off its video")

    fid = fidelity(rendered, commanded)
    if fid.lag != 0:
        warnings.append(f"rendered vs commanded best lag is {fid.lag} frames (expected 0)")
    return RenderedClip(
        rendered=rendered,
        commanded=commanded,
        fps=fps,
        n_frames=n,
        timing_source=report.timing_source,
        wall_seconds=time.perf_counter() - t_start,
        render_seconds=render_seconds,
        mesh_seconds=mesh_seconds,
        rerun_seconds=rerun_seconds,
        stage_seconds=dict(report.stage_seconds),
        lead_frames=lead_frames,
        video_frames=video_frames,
        rerun_max_diff=rerun_max_diff,
        face_found=float(np.isfinite(rendered).mean()) if n else 0.0,
        av_offset_s=av_offset,
        pts_ok=pts_ok,
        height=int(cfg.output.height),
        fidelity=fid,
        warp_lips_flipped=lips_flipped,
        warnings=warnings,
        video=out,
    )


# ---------------------------------------------------------------------------------------------
# CLI


def _config(args: argparse.Namespace) -> VloggerConfig:
    config = VloggerConfig()
    config.seed = args.seed
    if args.motion is not None:
        config.motion_engine = args.motion
    config.output.height = args.size
    config.output.encoder_threads = args.threads
    config.warp = replace(config.warp, threads=args.threads)
    config.network = replace(config.network, threads=args.threads)
    extra = {"mouth": args.mouth, "mouth_model_path": args.mouth_model}
    extra = {k: v for k, v in extra.items() if v is not None}
    if extra:
        names = {f.name for f in fields(config.network)}
        missing = sorted(set(extra) - names)
        if missing:
            raise SystemExit(f"this NetworkConfig has no field(s) {', '.join(missing)}")
        config.network = replace(config.network, **extra)
    return config


def _rest_dict(rest: RestStd) -> dict[str, Any]:
    d = rest._asdict()
    d["rest"] = d.pop("rest_rendered")  # the series measured: rendered or commanded
    return d


def evaluate(
    clip: str,
    config: ConfigSource,
    workdir: str | Path,
    frame: int | str = 0,
    data: Path | None = None,
    corpus: str | Path = REAL,
    max_lag: int = 2,
    height: int | None = RENDER_HEIGHT,
) -> dict[str, Any]:
    """Render one real clip from its own frame ``frame`` (an index, or "reference": the manifest's most
    closed-mouth frame) and score it against its real mouth."""
    real = real_opening(clip, corpus)
    audio = clip_audio(clip, corpus)
    index = reference_frame(clip, corpus, data) if frame == "reference" else int(frame)
    photo = clip_photo(clip_path(clip, data), index)
    rc = render_clip(photo, audio, config, workdir, height=height)
    n = min(len(real), rc.n_frames)
    r_rend, lag_rend = score(real[:n], rc.rendered[:n], max_lag)
    r_cmd, lag_cmd = score(real[:n], rc.commanded[:n], max_lag)
    rest = rest_and_std(rc.rendered[:n], audio, real[:n])
    rest_cmd = rest_and_std(rc.commanded[:n], audio, real[:n])
    return {
        "clip": clip,
        "photo_frame": index,
        "frames": n,
        "real_frames": len(real),
        "rendered": {"r": r_rend, "lag": lag_rend, **_rest_dict(rest)},
        "commanded": {"r": r_cmd, "lag": lag_cmd, **_rest_dict(rest_cmd)},
        "render": rc.summary(),
        "seconds_audio": len(audio) / SAMPLE_RATE,
        "wall_per_audio_second": rc.wall_seconds / (len(audio) / SAMPLE_RATE),
    }


def _fmt(x: float) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _mouth_note(config: VloggerConfig) -> str:
    if config.motion_engine == "teacher" or not hasattr(config.network, "mouth"):
        return ""
    path = getattr(config.network, "mouth_model_path", None)
    return f" (mouth {config.network.mouth}{f' {path}' if path else ''})"


def main(argv: Sequence[str] | None = None) -> int:
    from vlogger.engines.motion.factory import MOTION_ENGINES

    p = argparse.ArgumentParser(description="Rendered-level lip sync of one real clip.")
    p.add_argument("--clip", required=True, help="clip name, e.g. grid_gm01_01")
    p.add_argument("--motion", choices=MOTION_ENGINES, default=None, help="motion engine (default: config's)")
    p.add_argument(
        "--frame",
        default="0",
        help="the clip's frame used as the photo: an index (default 0) or 'reference' (the corpus "
        "manifest's closed-mouth, open-eyes frame)",
    )
    p.add_argument("--size", type=int, default=RENDER_HEIGHT, help=f"output height (default {RENDER_HEIGHT})")
    p.add_argument("--mouth", default=None, help="NetworkConfig.mouth (readout | network) where it exists")
    p.add_argument("--mouth-model", default=None, help="NetworkConfig.mouth_model_path (a per-fold ONNX)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-lag", type=int, default=2)
    p.add_argument("--data", type=Path, default=None, help="shared data folder (default ../shared/data)")
    p.add_argument("--corpus", type=Path, default=REAL, help="real-clip corpus with landmarks25 files")
    p.add_argument("--keep", type=Path, default=None, help="keep the render in this folder")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = p.parse_args(argv)

    from vlogger.engines.threads import pin_native_threads

    pin_native_threads(args.threads)
    config = _config(args)
    with tempfile.TemporaryDirectory(prefix="lipsync_render_") as tmp:
        work = args.keep if args.keep is not None else Path(tmp)
        frame = args.frame if args.frame == "reference" else int(args.frame)
        res = evaluate(args.clip, config, work, frame, args.data, args.corpus, args.max_lag, args.size)
    rd = res["render"]
    fid = rd["fidelity"]
    if args.json:
        print(json.dumps(res, indent=1, default=float))
        return 0
    print(
        f"{res['clip']}: motion {config.motion_engine}{_mouth_note(config)}, {res['frames']} frames "
        f"({res['seconds_audio']:.2f} s), timings from {rd['timing_source']}, {rd['height']} px, "
        f"photo = frame {res['photo_frame']}"
    )
    for key in ("rendered", "commanded"):
        s = res[key]
        print(
            f"  {key:9s} vs real: r {_fmt(s['r'])} at lag {s['lag']:+d}; rest {_fmt(s['rest'])} "
            f"(real closed {_fmt(s['rest_real'])}, {s['silent_frames']} silent frames); "
            f"std ratio {_fmt(s['std_ratio'])}"
        )
    print(
        f"  fidelity rendered vs commanded: r {_fmt(fid['r'])}, std ratio {_fmt(fid['std_ratio'])}, "
        f"mean diff {fid['mean_diff']:+.4f}, best lag {fid['lag']:+d} (r {_fmt(fid['r_best'])})"
    )
    print(
        f"  checks: replay max |diff| {rd['rerun_max_diff']:.3g}, A/V offset "
        f"{1000 * rd['av_offset_s']:+.1f} ms, pts ok {rd['pts_ok']}, face found {rd['face_found']:.2f}, "
        f"lead-in {rd['lead_frames']} frames dropped of {rd['video_frames']}, "
        f"warp lips flipped {rd['warp_lips_flipped']}"
    )
    stages = ", ".join(f"{k} {v:.2f}" for k, v in rd["stage_seconds"].items())
    print(
        f"  time: {rd['wall_seconds']:.1f} s wall = {res['wall_per_audio_second']:.2f} x real time "
        f"(render {rd['render_seconds']:.1f} [{stages}], decode+FaceMesh {rd['mesh_seconds']:.1f}, "
        f"replay+pose {rd['rerun_seconds']:.1f})"
    )
    for w in rd["warnings"]:
        print(f"  warning: {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
