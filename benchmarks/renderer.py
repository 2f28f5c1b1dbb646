"""Diffusion renderer cost: milliseconds per new frame for 1/2/4 steps at 64/128/256 px, per backend.

With windows of N = 8 frames and 50% overlap each window call yields N/2 = 4 new frames, so
``ms per new frame = steps x (one window call) / 4``; each window call is timed (median of
``--runs``) per size and backend. Models at 64/128/256 are the ``small``/``base``/``large``
configs with random weights (cost does not depend on the weights); the shipped 32 px test model
is timed end to end through the renderer (warp + controls + sampling + paste-back, 512 px frames).
Also printed: parameters and FLOPs per frame, and the crop study (mouth size in pixels at 128 px:
face-and-shoulders crop vs the whole frame, on the default portrait and, when present, one frame
of each clip in ../shared/data/video). On a CUDA machine with TensorRT the same script builds
engines (``vlogger export``'s cache) and times them; without one it records CPU numbers only.
Writes ``benchmarks/results/renderer.json`` and ``renderer.png``. Usage::

    python benchmarks/renderer.py [--sizes 64 128 256] [--runs 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from vlogger.engines.avatar import load_avatar
from vlogger.engines.avatar.controls import face_crop
from vlogger.engines.backends import OrtConfig, available_backends, make_runner
from vlogger.engines.render.diffusion import DiffusionConfig, DiffusionRenderer
from vlogger.export.renderer import RENDER_DENOISER, renderer_sizes

RESULTS = Path(__file__).with_name("results")
MODELS = {64: "small", 128: "base", 256: "large"}
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "video"


def _feed(size: int, control: int, frames: int = 8) -> dict[str, np.ndarray]:
    sizes = {**renderer_sizes(size, control), "batch": 1, "frames": frames}
    rng = np.random.default_rng(0)
    feed = {
        s.name: rng.standard_normal(RENDER_DENOISER.shape(s.name, sizes)).astype(np.float32)
        for s in RENDER_DENOISER.inputs
    }
    feed["t"] = np.array([500.0], np.float32)
    return feed


def _median_ms(fn, runs: int) -> float:
    fn()  # warm-up
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return 1000.0 * statistics.median(out)


def time_networks(sizes: list[int], runs: int, threads: int, tmp: Path) -> list[dict]:
    import sys

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's training/
    from training.render.model import CONFIGS, TemporalUNet, count_flops
    from vlogger.export.renderer import export_denoiser

    torch.set_num_threads(threads)
    rows = []
    for size in sizes:
        name = MODELS[size]
        model = TemporalUNet(CONFIGS[name]).eval()
        params = sum(p.numel() for p in model.parameters())
        flops = count_flops(model)
        path = export_denoiser(model, tmp / f"{name}.onnx", {"model": model.cfg.to_dict()})
        feed = _feed(size, model.cfg.control_channels)
        backends = {"onnxruntime": make_runner(path, "onnxruntime", OrtConfig(threads=threads))}
        for b in ("onnxruntime-cuda", "onnxruntime-trt"):
            if b in available_backends():
                backends[b] = make_runner(path, b, OrtConfig(fp16=True, cache_dir=str(tmp / "trt")))
        for backend, runner in backends.items():
            r = runs if size < 256 or backend != "onnxruntime" else 1
            ms = _median_ms(lambda runner=runner, feed=feed: runner.infer(feed), r)
            rows.append(_row(name, size, params, flops, backend, ms, "measured"))
            print(
                f"{name:6s} {size:4d}px {backend:18s} window {ms:9.1f} ms  "
                + "  ".join(f"{k} step {k * ms / 4:8.1f} ms/frame" for k in (1, 2, 4))
            )
        if size <= 128:
            tf = [torch.from_numpy(feed[n]) for n in RENDER_DENOISER.input_names]
            with torch.no_grad():
                ms = _median_ms(lambda model=model, tf=tf: model(*tf), runs)
            rows.append(_row(name, size, params, flops, "torch", ms, "measured"))
            print(f"{name:6s} {size:4d}px {'torch':18s} window {ms:9.1f} ms")
    return rows


def _row(name: str, size: int, params: int, flops: int, backend: str, ms: float, kind: str) -> dict:
    return {
        "model": name,
        "size": size,
        "params": params,
        "gflops_per_frame": flops / 1e9,
        "backend": backend,
        "window_ms": ms,
        "ms_per_new_frame": {k: k * ms / 4 for k in (1, 2, 4)},
        "figure": kind,
    }


def time_renderer(runs: int, threads: int) -> dict:
    """The shipped test model through the whole renderer (512 px frames)."""
    a = load_avatar()
    posed = [a.rig.pose(m) for m in _motion(24)]
    out = {}
    for steps in (1, 2, 4):
        r = DiffusionRenderer(a.image, a.fit, DiffusionConfig(steps=steps, threads=threads))

        def windowed(r=r) -> None:
            r.reset()
            for p in posed:
                r.push(p)
            r.flush()

        def causal(r=r) -> None:
            r.reset()
            for p in posed[:8]:
                r.render(p)

        out[steps] = {
            "push_ms_per_frame": _median_ms(windowed, runs) / len(posed),
            "render_ms_per_frame": _median_ms(causal, runs) / 8,
        }
        print(
            f"test model 32px, {steps} steps: push {out[steps]['push_ms_per_frame']:.1f} ms/frame, "
            f"causal render {out[steps]['render_ms_per_frame']:.1f} ms/frame"
        )
    return out


def _motion(n: int):
    from vlogger.engines.types import EXPRESSION_NAMES, MotionFrame

    out = []
    for i in range(n):
        mf = MotionFrame.neutral(i, i / 25)
        mf.expression[EXPRESSION_NAMES.index("jaw_open")] = 0.5 + 0.5 * np.sin(i / 2)
        out.append(mf)
    return out


def crop_study() -> list[dict]:
    """Mouth width and speaking opening in pixels at 128 px: whole frame vs face-and-shoulders crop."""
    from vlogger.engines.avatar.fit import Fitter

    items = [("default portrait", load_avatar().image, load_avatar().fit)]
    if DATA.is_dir():
        import av

        with Fitter() as f:
            for clip in sorted(DATA.glob("*.mp4")):
                with av.open(str(clip)) as c:
                    img = next(c.decode(video=0)).to_ndarray(format="rgb24")
                try:
                    items.append((clip.stem, img, f.fit(img)))
                except Exception:
                    continue
    rows = []
    for name, img, fit in items:
        h, w = img.shape[:2]
        face = fit.face[:, :2]
        eyes = float(np.linalg.norm(face[263] - face[33]))
        mouth = float(np.linalg.norm(face[291] - face[61]))
        crop = face_crop(fit, img.shape)
        whole = 128 / max(h, w)
        crop_s = 128 / crop.side
        rows.append(
            {
                "image": name,
                "size": [w, h],
                "mouth_px_whole_128": mouth * whole,
                "mouth_px_crop_128": mouth * crop_s,
                "opening_0.2_px_whole_128": 0.2 * eyes * whole,
                "opening_0.2_px_crop_128": 0.2 * eyes * crop_s,
                "crop_side": crop.side,
            }
        )
        mw, mc, ow, oc = mouth * whole, mouth * crop_s, 0.2 * eyes * whole, 0.2 * eyes * crop_s
        print(
            f"{name:24s} mouth width at 128 px: whole frame {mw:5.1f} px, crop {mc:5.1f} px; "
            f"a speaking opening (0.2 eye widths): {ow:4.1f} px vs {oc:4.1f} px"
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    result: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {a.threads} thread(s)",
        "backends_available": available_backends(),
        "gpu": "none (CPU only; no GPU figure is claimed)",
    }
    result["crop_study"] = crop_study()
    result["renderer_test_model"] = time_renderer(a.runs, a.threads)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is absent: the 64/128/256 models cannot be built here (pip install .[train])")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result["networks"] = time_networks(a.sizes, a.runs, a.threads, Path(tmp))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "renderer.json").write_text(json.dumps(result, indent=2))
    _plot(result, RESULTS / "renderer.png")
    print(f"wrote {RESULTS / 'renderer.json'}")
    return 0


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result.get("networks", []) if r["backend"] != "torch"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k in (1, 2, 4):
        for backend in sorted({r["backend"] for r in rows}):
            sel = [r for r in rows if r["backend"] == backend]
            ax.plot(
                [r["size"] for r in sel],
                [r["ms_per_new_frame"][k] for r in sel],
                "o-",
                label=f"{backend}, {k} step(s)",
            )
    ax.axhline(40, color="gray", ls="--", lw=0.8, label="25 fps budget")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("resolution (px)")
    ax.set_ylabel("ms per new frame (measured)")
    ax.set_title("diffusion renderer, window 8, 50% overlap")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
