"""Every ONNX model of the engines runs in the backend runner (``OrtRunner``), with the outputs the
models' own onnxruntime sessions gave before (same inputs, bit for bit)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from vlogger.engines.backends.base import BackendUnavailable
from vlogger.engines.backends.ort import OrtRunner


def _plain_session(model: str | bytes, threads: int = 1) -> ort.InferenceSession:
    """The session each engine used to open itself."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def test_the_motion_network_gives_what_its_own_session_gave() -> None:
    from vlogger.engines.motion.features import FeatureConfig, feature_dim
    from vlogger.engines.motion.network import NetworkConfig, _default_model_path, _Net, load_motion_model

    cfg = NetworkConfig()
    runner, meta = load_motion_model(None, 1)
    assert isinstance(runner, OrtRunner)
    net = _Net(runner, meta, cfg)
    rng = np.random.default_rng(1)
    shape = (net.layers, net.batch, net.heads, net.window - 1, net.head_dim)
    xs = rng.standard_normal((2, net.motion_dim)).astype(np.float32)
    fs = rng.standard_normal((2, feature_dim(FeatureConfig(**meta["feature_config"])))).astype(np.float32)
    ts = np.array([0.0, 500.0], np.float32)
    pk, pv = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)
    valid = (rng.random((net.batch, net.window - 1)) > 0.3).astype(np.float32)
    x0, k, v = net.run(xs, fs, ts, pk, pv, valid)

    sess = _plain_session(str(_default_model_path()))
    b = net.batch
    out = sess.run(
        None,
        {
            "x": np.ascontiguousarray(np.broadcast_to(xs, (b, *xs.shape))),
            "audio": np.ascontiguousarray(np.broadcast_to(fs, (b, *fs.shape))),
            "t": np.ascontiguousarray(np.broadcast_to(ts, (b, len(ts)))),
            "keep": net.keep,
            "past_k": pk,
            "past_v": pv,
            "past_valid": valid,
        },
    )
    ref = out[0][:, -1]
    ref = ref[1] + cfg.guidance * (ref[0] - ref[1]) if b == 2 else ref[0]
    np.testing.assert_array_equal(x0, np.clip(ref, -cfg.x0_clip, cfg.x0_clip))
    np.testing.assert_array_equal(k, out[1])
    np.testing.assert_array_equal(v, out[2])


def test_the_vad_gives_what_its_own_session_gave() -> None:
    from vlogger.engines.asr.vad import VAD_CHUNK, SileroVAD, VADConfig, silero_model_path

    rng = np.random.default_rng(2)
    t = np.arange(16000 * 3) / 16000
    x = (0.2 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    x += 0.01 * rng.standard_normal(len(x)).astype(np.float32)
    vad = SileroVAD()
    assert isinstance(vad.runner, OrtRunner)
    got = [vad(x[k : k + VAD_CHUNK]) for k in range(0, len(x) - VAD_CHUNK + 1, VAD_CHUNK)]

    sess = _plain_session(str(silero_model_path()))
    h = c = np.zeros((1, 1, 128), np.float32)
    context = np.zeros(64, np.float32)
    want = []
    for k in range(0, len(x) - VAD_CHUNK + 1, VAD_CHUNK):
        chunk = x[k : k + VAD_CHUNK]
        out, h, c = sess.run(None, {"input": np.concatenate([context, chunk])[None], "h": h, "c": c})
        context = chunk[-64:]
        want.append(float(np.asarray(out).reshape(-1)[0]))
    assert got == want
    # one runner for many streams, as the server shares it
    shared = SileroVAD(runner=vad.runner)
    assert shared.runner is vad.runner
    with pytest.raises(BackendUnavailable):
        SileroVAD(VADConfig(backend="no-such-backend"))


def test_piper_speaks_through_the_runner_as_through_its_own_session() -> None:
    from piper.config import PiperConfig
    from piper.voice import PiperVoice

    from vlogger.engines.tts.piper_tts import PiperTTS, _aligned_model

    tts = PiperTTS()
    text = "Hello there. This is a test of the voice, with a clause."
    got = np.concatenate([c.pcm for c in tts.synthesize(text)])
    assert isinstance(tts._voice.session.runner, OrtRunner)

    # piper with the session it would open itself (the voice's random noise comes out the same for
    # every session of one process, not across processes: both run here)
    voice = PiperVoice(
        session=_plain_session(_aligned_model(tts._model_path, True)),
        config=PiperConfig.from_dict(tts._voice_json),
    )
    tts._voice = voice
    want = np.concatenate([c.pcm for c in tts.synthesize(text)])
    np.testing.assert_array_equal(got, want)
