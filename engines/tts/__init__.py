"""Text to speech: piper voices streamed by sentence, with phoneme timings."""

from vlogger.engines.tts.piper_tts import SILENCE_PHONEME, PiperTTS, TTSConfig, split_sentences

__all__ = ["SILENCE_PHONEME", "PiperTTS", "TTSConfig", "split_sentences"]
