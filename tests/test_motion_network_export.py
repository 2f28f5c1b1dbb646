"""The torch motion network: training form = streaming form, ONNX parity, safetensors round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch (the training extra) is not installed")

from training.motion.export import (  # noqa: E402
    check_parity,
    export_onnx,
    read_safetensors,
    write_safetensors,
)
from training.motion.model import ModelConfig, MotionTransformer  # noqa: E402
from vlogger.engines.motion.network import _default_model_path  # noqa: E402
from vlogger.export.motion import METADATA_KEY, MOTION_STEP  # noqa: E402


def _small(window: int = 8) -> MotionTransformer:
    torch.manual_seed(0)
    m = MotionTransformer(ModelConfig(audio_dim=40, width=64, layers=2, heads=4, window=window)).eval()
    with torch.no_grad():
        m.rel_bias.add_(0.3 * torch.randn_like(m.rel_bias))
        m.null_audio.add_(torch.randn_like(m.null_audio))
    return m


def test_training_form_equals_streaming_rollout() -> None:
    """Noisy frame i sees the clean frames before it (within the window) and itself, in training as
    in streaming (2-token calls: the clean previous frame + the noisy current one)."""
    m = _small(window=8)
    b, n, w = 2, 20, 8
    g = torch.Generator().manual_seed(1)
    clean, noisy = torch.randn(b, n, 174, generator=g), torch.randn(b, n, 174, generator=g)
    t = torch.randint(1, 1000, (b, n), generator=g)
    audio = torch.randn(b, n, 40, generator=g)
    keep = torch.tensor([1.0, 0.0])
    with torch.no_grad():
        ref = m(clean, noisy, t, audio, keep)
        pk = torch.zeros(2, b, 4, w - 1, 16)
        pv = torch.zeros_like(pk)
        valid = torch.zeros(b, w - 1)
        outs = [m.step(noisy[:, :1], audio[:, :1], t[:, :1].float(), keep, pk, pv, valid)[0]]
        for i in range(1, n):
            x = torch.cat([clean[:, i - 1 : i], noisy[:, i : i + 1]], 1)
            tt = torch.stack([torch.zeros(b), t[:, i].float()], 1)
            x0, k, v = m.step(x, audio[:, i - 1 : i + 1], tt, keep, pk, pv, valid)
            outs.append(x0[:, 1:])
            pk = torch.cat([pk[:, :, :, 1:], k[:, :, :, :1]], 3)
            pv = torch.cat([pv[:, :, :, 1:], v[:, :, :, :1]], 3)
            valid = torch.cat([valid[:, 1:], torch.ones(b, 1)], 1)
    torch.testing.assert_close(torch.cat(outs, 1), ref, atol=1e-5, rtol=0)
    # The window is fixed: each layer reaches `window - 1` frames further back, no more.
    clean2 = clean.clone()
    clean2[:, 0] += 5.0
    with torch.no_grad():
        ref2 = m(clean2, noisy, t, audio, keep)
    reach = m.cfg.layers * (w - 1)
    torch.testing.assert_close(ref2[:, reach + 1 :], ref[:, reach + 1 :], atol=1e-5, rtol=0)
    assert (ref2[:, reach] - ref[:, reach]).abs().max() > 1e-4
    assert (ref2[:, 1] - ref[:, 1]).abs().max() > 1e-3


def test_onnx_export_matches_torch(tmp_path: Path) -> None:
    m = _small()
    path = export_onnx(m, {"mean": [0.0] * 174, "std": [1.0] * 174}, tmp_path / "m.onnx")
    assert check_parity(m, path) < 1e-4
    import onnx

    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == MOTION_STEP.input_names
    assert any(p.key == METADATA_KEY for p in model.metadata_props)


def test_safetensors_round_trip(tmp_path: Path) -> None:
    t = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(5, np.float32)}
    p = write_safetensors(tmp_path / "x.safetensors", t, {"k": "v"})
    got, meta = read_safetensors(p)
    assert meta == {"k": "v"} and set(got) == {"a", "b"}
    np.testing.assert_array_equal(got["a"], t["a"])


def test_packaged_weights_match_packaged_onnx() -> None:
    onnx_path = _default_model_path()
    st = onnx_path.with_suffix(".safetensors")
    if not (onnx_path.exists() and st.exists()):
        pytest.skip("no packaged motion network")
    tensors, meta = read_safetensors(st)
    info = json.loads(meta[METADATA_KEY])
    m = MotionTransformer(ModelConfig(**info["model_config"])).eval()
    m.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
    assert check_parity(m, onnx_path, batches=(2,)) < 1e-4
