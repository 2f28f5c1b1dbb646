"""Score renderers on held-out frames against the real frames: L1, SSIM, mouth-opening error.

    python -m training.render.evaluate --data training/data/render_clips32 \
        --model teacher=training/runs/render/clips_teacher/last.pt \
        --model student2=training/runs/render/clips_distill/student2.pt --steps 1 2 4 \
        --out training/runs/render/clips_eval.json

Each test shard (the last 20% of a clip) is rendered as one stream with the runtime's outpainting
(windows of 8, 4 known + 4 new, the reference photo = a frame from the clip's first 80%), at the
model's crop resolution; ``warp`` is the warp renderer's partial view of the same frames. Mouth
opening is measured by the face landmarker on the frames upscaled 8x; frames where it finds no face
are counted (at 32 px it often fails: the measure is meaningful from 64 px models on).
Models are torch checkpoints (``.pt``) or exported ``.onnx`` files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from training.render.dataset import decode_controls, load_shards
from vlogger.engines.metrics import mouth_opening
from vlogger.engines.render.diffusion.window import Outpainter, WindowSampler, frame_scheduler

__all__ = ["l1", "main", "render_stream", "score", "ssim"]


def _img(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two uint8 RGB images (Gaussian window, sigma 1.5, on luma)."""
    ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float64)
    gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda x: cv2.GaussianBlur(x, (7, 7), 1.5)  # noqa: E731
    ma, mb = blur(ga), blur(gb)
    va, vb, cov = blur(ga * ga) - ma**2, blur(gb * gb) - mb**2, blur(ga * gb) - ma * mb
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    return float(s.mean())


def l1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference in [0, 1] units."""
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean() / 255.0)


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip((x.transpose(1, 2, 0) + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def _runner(path: Path):
    if path.suffix == ".onnx":
        from vlogger.engines.backends import make_runner

        return make_runner(path)
    from training.render.common import load_checkpoint
    from vlogger.engines.backends.torch_runner import TorchRunner
    from vlogger.export.renderer import RENDER_DENOISER

    model, _ = load_checkpoint(path)
    return TorchRunner(model.eval(), RENDER_DENOISER.input_names, RENDER_DENOISER.output_names)


def render_stream(
    runner, shard: dict, steps: int, start: int = 800, window: int = 8, seed: int = 0
) -> np.ndarray:
    """All frames of a shard rendered as one outpainted stream: (T, S, S, 3) uint8."""
    controls = decode_controls(shard["controls"])
    ref = _img(shard["ref"][:1])[0]
    op = Outpainter(WindowSampler(runner, frame_scheduler(), steps, start), ref, window, seed)
    frames = [f for c in controls for f in op.push(c)] + op.flush()
    return np.stack([_u8(f) for f in frames])


class _Mouth:
    def __init__(self) -> None:
        from vlogger.engines.avatar.landmarks import FaceLandmarker

        self.fm = FaceLandmarker(static=True, max_faces=1)

    def __call__(self, img: np.ndarray) -> float:
        big = cv2.resize(img, None, fx=8, fy=8, interpolation=cv2.INTER_CUBIC)
        found = self.fm.process(np.ascontiguousarray(big))
        if not found:
            return float("nan")
        return mouth_opening(found[0][:, :2])


def score(frames: np.ndarray, shard: dict, mouth: _Mouth | None) -> dict:
    real = shard["frames"]
    out = {
        "l1": float(np.mean([l1(a, b) for a, b in zip(frames, real, strict=True)])),
        "ssim": float(np.mean([ssim(a, b) for a, b in zip(frames, real, strict=True)])),
    }
    if mouth is not None:
        got = np.array([mouth(f) for f in frames])
        want = np.array([mouth(f) for f in real])
        ok = np.isfinite(got) & np.isfinite(want)
        out["mouth_error"] = float(np.abs(got[ok] - want[ok]).mean()) if ok.any() else float("nan")
        out["mouth_measured_share"] = float(ok.mean())
    return out


def evaluate(data: list[Path], models: dict[str, Path], steps: list[int], mouth: bool = True) -> dict:
    shards_paths = [p for d in data for p in (sorted(d.glob("*.npz")) if d.is_dir() else [d])]
    shards = load_shards(shards_paths, "test")
    meter = _Mouth() if mouth else None
    results: dict = {}

    def add(name: str, per_shard: list[dict]) -> None:
        keys = per_shard[0].keys()
        results[name] = {k: float(np.nanmean([s[k] for s in per_shard])) for k in keys}
        print(f"{name:22s} " + "  ".join(f"{k} {v:.4f}" for k, v in results[name].items()), file=sys.stderr)

    add(
        "warp",
        [score(np.stack([_u8(c) for c in decode_controls(s["controls"])[:, -3:]]), s, meter) for s in shards],
    )
    for name, path in models.items():
        runner = _runner(path)
        for k in steps:
            add(f"{name}@{k}", [score(render_stream(runner, s, k), s, meter) for s in shards])
    results["frames"] = int(sum(len(s["frames"]) for s in shards))
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, nargs="+", required=True)
    ap.add_argument("--model", action="append", default=[], help="name=path (.pt or .onnx)")
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--no-mouth", action="store_true")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    models = dict(m.split("=", 1) for m in a.model)
    res = evaluate(a.data, {k: Path(v) for k, v in models.items()}, a.steps, not a.no_mouth)
    if a.out:
        a.out.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
