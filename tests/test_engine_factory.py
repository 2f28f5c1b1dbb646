"""The EngineFactory contract: every factory declares all of it (nothing is probed), and
RealEngines takes everything from its one VloggerConfig."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conversation_fakes import EnergyVAD, ListeningFakeEngines, ScriptedASR
from fakes import FakeEngines, FakeTTS
from warp_inputs import default_fit

from vlogger.engines.asr import ASR, ASRConfig, WhisperASR
from vlogger.engines.asr.vad import SileroVAD
from vlogger.engines.errors import InputError
from vlogger.engines.tts import TTS, PiperTTS
from vlogger.runtime.config import VloggerConfig
from vlogger.runtime.engine_factory import EngineFactory, RealEngines


@pytest.mark.parametrize("factory", [FakeEngines, ListeningFakeEngines])
def test_test_factories_declare_the_whole_contract(factory: type[FakeEngines]) -> None:
    engines = factory()
    assert isinstance(engines, EngineFactory)
    assert isinstance(engines.make_tts(), TTS)
    engines.prepare()
    engines.close()


def test_a_factory_without_ears_says_so_and_one_with_ears_hears() -> None:
    deaf = FakeEngines()
    assert deaf.make_vad() is None and deaf.make_asr() is None
    hearing = ListeningFakeEngines()
    assert isinstance(hearing.make_vad(), EnergyVAD) and isinstance(hearing.make_asr(), ScriptedASR)


def test_the_implementations_satisfy_their_protocols() -> None:
    assert isinstance(PiperTTS(), TTS) and isinstance(FakeTTS(0.0, 0.0), TTS)
    assert isinstance(WhisperASR(), ASR) and isinstance(ScriptedASR(), ASR)
    assert isinstance(RealEngines(_config()), EngineFactory)


def _config() -> VloggerConfig:
    config = VloggerConfig()
    config.server.render_processes = False  # nothing started
    return config


def test_real_engines_take_size_photo_and_seed_from_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config()
    config.output.height = 200
    config.server.default_image = "/photos/me.png"
    config.motion_engine = "teacher"  # no model to load
    config.seed = 40
    loaded: list[tuple[Any, int]] = []

    def load_avatar(source: Any, height: int, config: Any) -> str:
        loaded.append((source, height))
        return "avatar"

    monkeypatch.setattr("vlogger.engines.avatar.load_avatar", load_avatar)
    engines = RealEngines(config)
    assert engines.load_avatar(None) == engines.load_avatar(None) == "avatar"  # fitted once
    engines.load_avatar(b"photo bytes")
    assert loaded == [("/photos/me.png", 200), (b"photo bytes", 200)]
    assert [engines.make_motion(i).seed for i in (0, 1, 2)] == [40, 41, 42]


def test_real_engines_listen_as_the_config_says(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config()
    config.asr = ASRConfig(cpu_threads=3)
    monkeypatch.setattr(WhisperASR, "warmup", lambda self: None)  # the model is not needed here
    engines = RealEngines(config)
    asr = engines.make_asr()
    assert isinstance(asr, WhisperASR) and asr.config is config.asr and engines.make_asr() is asr
    vad = engines.make_vad()
    assert isinstance(vad, SileroVAD) and vad.config is config.server.listen.vad
    other = engines.make_vad()  # one per microphone (state of its own) over one loaded model
    assert isinstance(other, SileroVAD) and other is not vad and other.runner is vad.runner


def test_a_render_process_that_cannot_build_its_renderer_fails_in_make_renderer() -> None:
    config = VloggerConfig()
    config.renderer = "marble"
    config.server.spare_render_processes = 0
    engines = RealEngines(config)
    image, fit = default_fit()
    try:
        with pytest.raises(InputError, match="marble"):
            engines.make_renderer(SimpleNamespace(image=image, fit=fit))
        assert not multiprocessing.active_children()  # its render process was stopped
    finally:
        engines.close()


def test_the_tensorrt_caches_live_in_the_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import onnxruntime as ort

    from vlogger.engines.backends import OrtConfig, ort_providers
    from vlogger.export.trt import default_cache_dir

    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["TensorrtExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setenv("VLOGGER_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "trt"  # vlogger export's engines
    name, opts = ort_providers("onnxruntime-trt", OrtConfig())[0]  # the TensorRT provider's
    assert name == "TensorrtExecutionProvider" and opts["trt_engine_cache_path"] == str(tmp_path / "trt")
    mine = tmp_path / "mine"
    assert ort_providers("onnxruntime-trt", OrtConfig(cache_dir=str(mine)))[0][1][
        "trt_engine_cache_path"
    ] == str(mine)
