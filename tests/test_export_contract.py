"""One export contract type for both models: dynamic axes, TensorRT (min, opt, max) profiles and the
shipped graphs' shapes agree, without torch."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from vlogger.engines.backends import OrtConfig, ort_providers
from vlogger.engines.motion.network import _default_model_path
from vlogger.engines.render.diffusion import TEST_MODEL
from vlogger.export.contract import OnnxContract, TensorSpec
from vlogger.export.motion import METADATA_KEY as MOTION_KEY
from vlogger.export.motion import MOTION_RANGES, MOTION_STEP, motion_sizes
from vlogger.export.renderer import METADATA_KEY as RENDER_KEY
from vlogger.export.renderer import RENDER_DENOISER, renderer_sizes

needs_motion_model = pytest.mark.skipif(not _default_model_path().exists(), reason="no motion network")

#: The packaged motion network's model_config (what ``motion_sizes`` reads).
MOTION_CONFIG = {"audio_dim": 768, "motion_dim": 174, "width": 256, "layers": 4, "heads": 4, "window": 50}
RENDER_RANGES = {"batch": (1, 1, 2), "frames": (1, 8, 8)}


def test_both_models_share_one_contract_type() -> None:
    assert type(MOTION_STEP) is type(RENDER_DENOISER) is OnnxContract
    assert MOTION_STEP.opset == RENDER_DENOISER.opset == 18
    assert (MOTION_STEP.metadata_key, RENDER_DENOISER.metadata_key) == (MOTION_KEY, RENDER_KEY)
    assert MOTION_STEP.input_names == ["x", "audio", "t", "keep", "past_k", "past_v", "past_valid"]
    assert MOTION_STEP.output_names == ["x0", "k", "v"]
    assert RENDER_DENOISER.input_names == ["x", "t", "ref", "control"]
    assert RENDER_DENOISER.output_names == ["eps"]


def test_onnx_dynamic_axes() -> None:
    bq = {0: "batch", 1: "q"}
    assert MOTION_STEP.dynamic_axes() == {
        "x": bq,
        "audio": bq,
        "t": bq,
        "keep": {0: "batch"},
        "past_k": {1: "batch"},
        "past_v": {1: "batch"},
        "past_valid": {0: "batch"},
        "x0": bq,
        "k": {1: "batch", 3: "q"},
        "v": {1: "batch", 3: "q"},
    }
    bf = {0: "batch", 1: "frames"}
    assert RENDER_DENOISER.dynamic_axes() == {
        "x": bf,
        "t": {0: "batch"},
        "ref": {0: "batch"},
        "control": bf,
        "eps": bf,
    }


def test_tensorrt_profiles_of_both_models() -> None:
    sizes = motion_sizes(MOTION_CONFIG)
    assert sizes == {
        "layers": 4,
        "heads": 4,
        "window-1": 49,
        "head_dim": 64,
        "motion_dim": 174,
        "audio_dim": 768,
    }
    kv = ((4, 1, 4, 49, 64), (4, 2, 4, 49, 64), (4, 2, 4, 49, 64))
    assert MOTION_STEP.profiles(sizes, MOTION_RANGES) == {
        "x": ((1, 1, 174), (2, 1, 174), (2, 2, 174)),
        "audio": ((1, 1, 768), (2, 1, 768), (2, 2, 768)),
        "t": ((1, 1), (2, 1), (2, 2)),
        "keep": ((1,), (2,), (2,)),
        "past_k": kv,
        "past_v": kv,
        "past_valid": ((1, 49), (2, 49), (2, 49)),
    }
    img = ((1, 1, 3, 32, 32), (1, 8, 3, 32, 32), (2, 8, 3, 32, 32))
    assert RENDER_DENOISER.profiles(renderer_sizes(32, 17), RENDER_RANGES) == {
        "x": img,
        "t": ((1,), (1,), (2,)),
        "ref": ((1, 3, 32, 32), (1, 3, 32, 32), (2, 3, 32, 32)),
        "control": ((1, 1, 17, 32, 32), (1, 8, 17, 32, 32), (2, 8, 17, 32, 32)),
    }


def test_profiles_reach_the_tensorrt_provider_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        ort,
        "get_available_providers",
        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    prof = MOTION_STEP.profiles(motion_sizes(MOTION_CONFIG), MOTION_RANGES)
    opts = ort_providers("onnxruntime-trt", OrtConfig(profile_shapes=prof))[0][1]
    assert opts["trt_profile_min_shapes"].startswith(
        "x:1x1x174,audio:1x1x768,t:1x1,keep:1,past_k:4x1x4x49x64"
    )
    assert opts["trt_profile_max_shapes"].endswith("past_valid:2x49")


def _graph_dims(contract: OnnxContract, name: str, sizes: dict[str, int]) -> list[int | str]:
    """The dims an exported graph shows: the symbol on dynamic axes, the size elsewhere."""
    spec = contract.spec(name)
    fixed = contract.shape(name, {**sizes, **{spec.dims[i]: 0 for i in spec.dynamic}})
    return [spec.dims[i] if i in spec.dynamic else fixed[i] for i in range(len(spec.dims))]


def _check_graph(path, contract: OnnxContract, sizes: dict[str, int], ranges) -> None:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == contract.input_names
    assert [o.name for o in sess.get_outputs()] == contract.output_names
    for node in (*sess.get_inputs(), *sess.get_outputs()):
        assert list(node.shape) == _graph_dims(contract, node.name, sizes), node.name
    assert contract.metadata_key in sess.get_modelmeta().custom_metadata_map
    # every profile shape (min, opt, max) runs, and the outputs have the contract's shapes
    for i in range(3):
        dyn = {k: v[i] for k, v in ranges.items()}
        feed = {
            s.name: np.zeros(contract.shape(s.name, {**sizes, **dyn}), np.float32) for s in contract.inputs
        }
        contract.check_feed(feed, sizes)
        outs = sess.run(None, feed)
        for o, name in zip(outs, contract.output_names, strict=True):
            assert o.shape == contract.shape(name, {**sizes, **dyn}), name


def test_shipped_renderer_graph_follows_its_contract() -> None:
    _check_graph(TEST_MODEL, RENDER_DENOISER, renderer_sizes(32, 17), RENDER_RANGES)


@needs_motion_model
def test_shipped_motion_graph_follows_its_contract() -> None:
    path = _default_model_path()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    config = json.loads(sess.get_modelmeta().custom_metadata_map[MOTION_KEY])["model_config"]
    assert {k: config[k] for k in MOTION_CONFIG} == MOTION_CONFIG
    _check_graph(path, MOTION_STEP, motion_sizes(config), MOTION_RANGES)


def test_a_dynamic_axis_must_be_a_symbol() -> None:
    with pytest.raises(ValueError, match="dynamic axis"):
        TensorSpec("x", ("batch", "3"), (1,))
    with pytest.raises(ValueError, match="dynamic axis"):
        TensorSpec("x", ("batch",), (1,))
