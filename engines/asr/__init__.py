"""Speech recognition: faster-whisper with the packaged tiny.en model."""

from vlogger.engines.asr.whisper import ASR_SAMPLE_RATE, ASRConfig, Segment, WhisperASR, Word

__all__ = ["ASR_SAMPLE_RATE", "ASRConfig", "Segment", "WhisperASR", "Word"]
