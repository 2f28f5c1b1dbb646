"""Offline rendering: photo + text or speech in, a talking-avatar MP4 out (the foundation slice).

Everything streams: TTS yields sentences, the motion engine turns them into frames as soon as its
lookahead allows, each frame is posed, rendered and encoded at once, so memory stays bounded on
long texts. Per-stage wall times are recorded for ``benchmarks/render_cpu.py``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlogger.engines.avatar import load_avatar
from vlogger.engines.errors import InputError
from vlogger.engines.render.base import Renderer
from vlogger.engines.render.factory import make_renderer
from vlogger.engines.stream import AvatarStream, StreamConfig, StreamFrame
from vlogger.engines.types import AudioChunk, PhonemeTiming
from vlogger.runtime.config import RENDERERS, VloggerConfig
from vlogger.runtime.mp4 import Mp4Writer

__all__ = ["RenderReport", "RenderRequest", "check_text", "render_video", "speech_chunks"]

#: Peak amplitude under which an audio file counts as silent.
SILENCE_PEAK = 1e-3


@dataclass
class RenderRequest:
    """One offline render."""

    out: Path
    """Where the MP4 goes (written atomically)."""
    image: str | Path | bytes | None = None
    """The photo; None for the shipped default portrait."""
    text: str | None = None
    """Text to speak (exclusive with ``audio``)."""
    audio: str | Path | None = None
    """Speech to lip-sync (exclusive with ``text``)."""


@dataclass
class RenderReport:
    """What a render did and how long each stage took."""

    path: Path
    frames: int
    fps: float
    video_duration: float
    audio_duration: float
    speech_duration: float
    timing_source: str
    """How phoneme timings were obtained: "tts", "alignment", "energy" or "silence"."""
    stage_seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def check_text(text: str, max_chars: int) -> str:
    """Refuse empty or over-long text with a message that names the problem."""
    if not text or not text.strip():
        raise InputError("text is empty: give at least one word to say")
    if len(text) > max_chars:
        raise InputError(f"text is {len(text):,} characters long; the limit is {max_chars:,}")
    return text


class _Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, t0: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - t0
        return now


def speech_chunks(
    request: RenderRequest,
    config: VloggerConfig,
    start_pts: float,
    warnings: list[str],
    needs_phonemes: bool = True,
) -> tuple[Iterator[AudioChunk], int, str]:
    """The speech of a request as timed chunks, its sample rate, and how timings were found
    (audio files are aligned only when ``needs_phonemes``: the motion engine's mouth reads them)."""
    if request.text is not None:
        from vlogger.engines.tts import PiperTTS

        tts = PiperTTS(config.tts)
        return tts.synthesize(request.text, start_pts=start_pts), tts.sample_rate, "tts"
    assert request.audio is not None
    from vlogger.engines.asr import WhisperASR
    from vlogger.engines.audio import load_audio
    from vlogger.engines.motion.align import align_audio

    pcm, rate = load_audio(request.audio)
    phonemes: list[PhonemeTiming] = []
    if float(np.max(np.abs(pcm - np.mean(pcm)), initial=0.0)) < SILENCE_PEAK:
        warnings.append("the audio is silent: the avatar idles for its whole length")
        source = "silence"
    elif not needs_phonemes:  # the learned mouth listens to the audio: no alignment needed
        source = "audio"
    else:
        phonemes = align_audio(pcm, rate, config=config.align, asr=WhisperASR(config.asr))
        source = "alignment" if phonemes else "energy"
        if not phonemes:
            follows = "the motion network" if config.motion_engine == "hybrid" else "loudness only"
            warnings.append(f"no words could be aligned in the audio: the mouth follows {follows}")
    shifted = [type(p)(p.phoneme, p.start + start_pts, p.end + start_pts, p.alphabet) for p in phonemes]
    chunk = AudioChunk(pcm=pcm, sample_rate=rate, pts=start_pts, phonemes=shifted)
    return iter([chunk]), rate, source


def render_video(
    request: RenderRequest,
    config: VloggerConfig,
    progress: Callable[[int, int | None], None] | None = None,
) -> RenderReport:
    """Render ``request`` to an MP4 and report on it. Raises InputError for bad input."""
    if (request.text is None) == (request.audio is None):
        raise InputError("give either text or audio (exactly one)")
    if request.text is not None:
        check_text(request.text, config.tts.max_text_length)
    if config.renderer not in RENDERERS:
        raise InputError(f"unknown renderer {config.renderer!r}; choose one of {', '.join(RENDERERS)}")
    out = Path(request.out)
    if not out.parent.is_dir():
        raise InputError(f"cannot write {out}: the folder {out.parent} does not exist")

    clock = _Clock()
    warnings: list[str] = []
    fps = config.output.fps
    t = time.perf_counter()
    avatar = load_avatar(request.image, height=config.output.height, config=config.avatar)
    t = clock.add("fit", t)
    if avatar.fit.faces > 1:
        warnings.append(f"the photo holds {avatar.fit.faces} faces: the largest one is the avatar")
    renderer: Renderer[np.ndarray] = make_renderer(
        config.renderer, avatar.image, avatar.fit, config.warp, config.diffusion
    )
    t = clock.add("renderer_setup", t)
    lead_in = config.output.lead_in
    motion = config.make_motion()
    chunks, rate, source = speech_chunks(request, config, lead_in, warnings, motion.needs_phonemes)
    t = clock.add("speech", t)

    height, width = avatar.image.shape[:2]
    stream = AvatarStream(
        avatar,
        motion,
        renderer,
        # files keep their own audio track; a windowed renderer may hold frames back for better windows
        StreamConfig(fps=fps, audio_rate=None, max_buffered_s=math.inf, causal=False),
    )
    writer = Mp4Writer(
        out, width, height, fps, rate, config.output.crf, config.output.preset, config.output.encoder_threads
    )
    written_samples = 0
    frames_done = 0

    def write(frames: list[StreamFrame[np.ndarray]]) -> None:
        nonlocal frames_done, t
        for f in frames:
            writer.write_frame(f.picture)
            frames_done += 1
            if progress is not None:
                progress(frames_done, None)
        t = clock.add("encode", t)

    def write_silence_until(pts: float) -> None:
        nonlocal written_samples
        gap = round(pts * rate) - written_samples
        if gap > 0:
            writer.write_audio(np.zeros(gap, dtype=np.float32))
            written_samples += gap

    try:
        speech_end = lead_in
        while True:
            t = time.perf_counter()
            chunk = next(chunks, None)
            t = clock.add("speech", t)
            if chunk is None:
                break
            write_silence_until(chunk.pts)
            writer.write_audio(chunk.pcm)
            written_samples += chunk.num_samples
            speech_end = chunk.end
            stream.push_audio(chunk)
            t = clock.add("encode", t)
            ready = stream.frames(min(stream.ready_until(), speech_end))
            t = clock.add("animate", t)
            write(ready)
        stream.end_of_segment()
        total = speech_end + config.output.tail
        n_frames = max(1, math.ceil(total * fps - 1e-6))
        end_pts = n_frames / fps
        t = time.perf_counter()
        rest = stream.frames(end_pts - 0.5 / fps) + stream.flush()
        t = clock.add("animate", t)
        write(rest)
        write_silence_until(end_pts)
        t = time.perf_counter()
        path = writer.close()
        clock.add("encode", t)
    except BaseException:
        writer.abort()
        raise
    finally:
        stream.close()
    return RenderReport(
        path=path,
        frames=frames_done,
        fps=fps,
        video_duration=frames_done / fps,
        audio_duration=written_samples / rate,
        speech_duration=speech_end - lead_in,
        timing_source=source,
        stage_seconds=clock.seconds,
        warnings=warnings,
    )
