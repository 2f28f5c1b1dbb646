"""Speech recognition: the :class:`ASR` interface; faster-whisper with the packaged tiny.en model."""

from vlogger.engines.asr.base import ASR, ASR_SAMPLE_RATE, Segment, Word
from vlogger.engines.asr.whisper import ASRConfig, WhisperASR

__all__ = ["ASR", "ASR_SAMPLE_RATE", "ASRConfig", "Segment", "WhisperASR", "Word"]
