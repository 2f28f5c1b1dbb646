"""Text to speech: the :class:`TTS` interface; piper voices streamed by sentence (or bounded unit),
with phoneme timings."""

from vlogger.engines.tts.base import TTS
from vlogger.engines.tts.piper_tts import SILENCE_PHONEME, PiperTTS, TTSConfig, split_sentences, split_units

__all__ = ["SILENCE_PHONEME", "TTS", "PiperTTS", "TTSConfig", "split_sentences", "split_units"]
