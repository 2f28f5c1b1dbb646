"""Text to speech: piper voices streamed by sentence (or bounded unit), with phoneme timings."""

from vlogger.engines.tts.piper_tts import SILENCE_PHONEME, PiperTTS, TTSConfig, split_sentences, split_units

__all__ = ["SILENCE_PHONEME", "PiperTTS", "TTSConfig", "split_sentences", "split_units"]
