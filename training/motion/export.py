"""Export a trained motion network: ONNX (the streaming step, see ``export/motion.py``) + safetensors.

    python -m training.motion.export --ckpt training/runs/base/last.pt --out engines/motion/assets

writes ``motion_network.onnx`` (with the normalisation and configs in its metadata) and
``motion_network.safetensors`` (the torch weights, same metadata), then checks that onnxruntime
matches torch within 1e-4 on random inputs with a partly filled cache.
"""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import numpy as np
import torch

from training.motion.model import ModelConfig, MotionTransformer
from vlogger.export.motion import METADATA_KEY, MOTION_STEP, motion_sizes

__all__ = ["check_parity", "export_onnx", "load_checkpoint", "read_safetensors", "write_safetensors"]


class _Step(torch.nn.Module):
    def __init__(self, model: MotionTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, x, audio, t, keep, past_k, past_v, past_valid):
        return self.model.step(x, audio, t, keep, past_k, past_v, past_valid)


def load_checkpoint(path: Path) -> tuple[MotionTransformer, dict]:
    """The model (eval mode) and its metadata (mean, std, configs) from a training checkpoint."""
    state = torch.load(path, weights_only=False, map_location="cpu")
    model = MotionTransformer(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    model.eval()
    meta = {
        "mean": np.asarray(state["mean"], np.float32).tolist(),
        "std": np.asarray(state["std"], np.float32).tolist(),
        "model_config": state["model_config"],
        "feature_config": state["feature_config"],
        "train": {
            "steps": state["step"],
            "corpora": state.get("corpora"),
            "mix": state.get("mix"),
            "init": state.get("init"),
            "train_config": state.get("train_config"),
        },
    }
    return model, meta


def sizes(cfg: ModelConfig, batch: int = 2) -> dict[str, int]:
    """The contract's symbols for a model and a batch size (``q`` left out)."""
    return {**motion_sizes(cfg.to_dict()), "batch": batch}


def example_inputs(
    cfg: ModelConfig, batch: int = 2, seed: int = 0, filled: int = 20, q: int = 2
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = {**sizes(cfg, batch), "q": q}
    ins = {}
    for spec in MOTION_STEP.inputs:
        ins[spec.name] = torch.randn(MOTION_STEP.shape(spec.name, s), generator=g)
    ins["t"] = torch.randint(0, cfg.diffusion_steps + 1, (batch, q), generator=g).float()
    ins["t"][:, 0] = 0.0
    ins["keep"] = torch.tensor([1.0, 0.0][:batch] + [1.0] * max(0, batch - 2))
    valid = torch.zeros(batch, cfg.window - 1)
    valid[:, cfg.window - 1 - filled :] = 1.0
    ins["past_valid"] = valid
    return ins


def export_onnx(model: MotionTransformer, meta: dict, path: Path) -> Path:
    """The streaming step as ONNX with the :data:`MOTION_STEP` contract and ``meta`` in its metadata."""
    ins = example_inputs(model.cfg)
    return MOTION_STEP.export(_Step(model), [ins[n] for n in MOTION_STEP.input_names], path, meta)


def check_parity(model: MotionTransformer, path: Path, batches: tuple[int, ...] = (1, 2)) -> float:
    """Largest |onnxruntime - torch| over the outputs for a few batch sizes and cache fills."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    worst = 0.0
    for b in batches:
        for filled, q in ((0, 1), (7, 2), (model.cfg.window - 1, 1), (model.cfg.window - 1, 2)):
            ins = example_inputs(model.cfg, b, seed=b * 100 + filled, filled=filled, q=q)
            with torch.no_grad():
                ref = model.step(*(ins[n] for n in MOTION_STEP.input_names))
            got = sess.run(None, {k: v.numpy() for k, v in ins.items()})
            for r, o in zip(ref, got, strict=True):
                worst = max(worst, float(np.abs(r.numpy() - o).max()))
    return worst


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> Path:
    """The safetensors format (8-byte little-endian header length, JSON header, raw data)."""
    dtypes = {np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("int64"): "I64"}
    header: dict = {"__metadata__": metadata}
    blobs, off = [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        b = a.tobytes()
        header[name] = {"dtype": dtypes[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    return path


def read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    dt = {"F32": np.float32, "F64": np.float64, "I64": np.int64}
    out = {}
    for name, h in header.items():
        a, b = h["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a : 8 + n + b], dtype=dt[h["dtype"]]).reshape(h["shape"]).copy()
    return out, meta


def export(ckpt: Path, out: Path, name: str = "motion_network", extra: dict | None = None) -> dict:
    model, meta = load_checkpoint(ckpt)
    if extra:
        meta.update(extra)
    onnx_path = export_onnx(model, meta, out / f"{name}.onnx")
    tensors = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    write_safetensors(out / f"{name}.safetensors", tensors, {METADATA_KEY: json.dumps(meta)})
    err = check_parity(model, onnx_path)
    print(
        f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB); "
        f"onnxruntime vs torch max |diff| {err:.2e}"
    )
    if err > 1e-4:
        raise SystemExit(f"parity check failed: {err}")
    return {"onnx": str(onnx_path), "parity": err}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("engines/motion/assets"))
    ap.add_argument("--name", default="motion_network")
    a = ap.parse_args(argv)
    export(a.ckpt, a.out, a.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
