"""Diffusion renderer latency on a CUDA GPU through PyTorch (measured, not projected).

TensorRT cannot be installed on the machines this project runs on, so this script measures what a
CUDA machine with only PyTorch gives, the floor below which a TensorRT build must go:

1. the denoiser alone, one window call (N = 8 frames, batch 1) at 64/128/256 px (``small`` /
   ``base`` / ``large``, random weights: cost does not depend on them), in fp32, fp16, and fp16
   replayed from a captured CUDA graph (static window shapes, as the TensorRT backend does);
   CUDA-event medians, peak GPU memory, and the fp16 output's error against fp32;
2. the whole renderer (``DiffusionRenderer``: warp + controls + sampling + paste-back at 512 px on
   the default portrait) with the ``base`` 128 px network behind a CUDA-graph fp16 runner, causal
   (one new frame per window call, the real-time path) and windowed (N/2 new frames per call), for
   1/2/4 steps; the same loop with a zero-cost runner gives the CPU share.

``ms per new frame`` = steps x window call (causal) or steps x window call / 4 (windowed).
Writes ``renderer_gpu.json`` and ``renderer_gpu.png`` to ``--out`` (default
``benchmarks/results``). Usage (on a CUDA machine)::

    python benchmarks/renderer_gpu.py [--sizes 64 128 256] [--runs 50] [--out DIR]
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).with_name("results")
MODELS = {64: "small", 128: "base", 256: "large"}
WINDOW = 8


def _inputs(torch: Any, size: int, control: int) -> list[Any]:
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(1, WINDOW, 3, size, size, generator=g)
    t = torch.tensor([500.0])
    ref = torch.randn(1, 3, size, size, generator=g)
    ctrl = torch.randn(1, WINDOW, control, size, size, generator=g)
    return [a.to("cuda") for a in (x, t, ref, ctrl)]


def _call(torch: Any, module: Any, half: bool) -> Callable[..., Any]:
    """``module(*inputs)`` without grad, under fp16 autocast when ``half`` (convolutions and
    matrix products in fp16; the step embedding and GroupNorm stay fp32, as TensorRT keeps them)."""

    def call(*args: Any) -> Any:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=half, cache_enabled=False):
            return module(*args)

    return call


def _event_ms(torch: Any, fn: Callable[[], Any], runs: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(runs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b))
    return out


class _Graphed:
    """A call replayed from one captured CUDA graph over static input buffers."""

    def __init__(self, torch: Any, call: Callable[..., Any], inputs: list[Any]) -> None:
        self.static = [a.clone() for a in inputs]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                call(*self.static)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = call(*self.static)

    def __call__(self, *args: Any) -> Any:
        for s, a in zip(self.static, args, strict=True):
            if a is not s:
                s.copy_(a)
        self.graph.replay()
        return self.out


def time_denoiser(torch: Any, sizes: list[int], runs: int) -> list[dict]:
    from training.render.model import CONFIGS, TemporalUNet, count_flops

    rows = []
    for size in sizes:
        name = MODELS[size]
        torch.manual_seed(0)
        model = TemporalUNet(CONFIGS[name]).eval()
        # Random weights leave the zero-initialised control branch and temporal convs silent; give
        # every parameter a small random value so no path is skipped and fp16 sees real activations.
        with torch.no_grad():
            for p in model.parameters():
                if p.abs().sum() == 0:
                    p.normal_(0.0, 0.02)
        params = sum(p.numel() for p in model.parameters())
        flops = count_flops(model)
        control = model.cfg.control_channels
        ref_out = None
        for variant in ("fp32", "fp16", "fp16+graph"):
            m = model.to("cuda")
            ins = _inputs(torch, size, control)
            call = _call(torch, m, half=variant != "fp32")
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            target: Callable[..., Any] = _Graphed(torch, call, ins) if variant == "fp16+graph" else call
            fn = functools.partial(target, *ins)
            ms = _event_ms(torch, fn, runs)
            out = fn().float().clone()
            peak = torch.cuda.max_memory_allocated() / 2**20
            err = None
            if ref_out is None:
                ref_out = out
            else:
                err = float((out - ref_out).abs().max() / ref_out.abs().max())
            med = statistics.median(ms)
            rows.append(
                {
                    "model": name,
                    "size": size,
                    "params": params,
                    "gflops_per_frame": flops / 1e9,
                    "variant": variant,
                    "window_ms_median": med,
                    "window_ms_p10": float(np.percentile(ms, 10)),
                    "window_ms_p90": float(np.percentile(ms, 90)),
                    "runs": runs,
                    "peak_mem_mib": peak,
                    "max_rel_err_vs_fp32": err,
                    "ms_per_new_frame_causal": {k: k * med for k in (1, 2, 4)},
                    "ms_per_new_frame_windowed": {k: k * med / (WINDOW // 2) for k in (1, 2, 4)},
                    "tflops_achieved": flops * WINDOW / (med / 1000) / 1e12,
                }
            )
            print(
                f"{name:6s} {size:4d}px {variant:11s} window {med:8.3f} ms "
                f"(p10 {rows[-1]['window_ms_p10']:.3f}, p90 {rows[-1]['window_ms_p90']:.3f})  "
                f"peak {peak:7.1f} MiB  "
                + (f"rel err {err:.1e}  " if err is not None else "")
                + "causal "
                + " ".join(f"{k}:{k * med:6.2f}" for k in (1, 2, 4))
                + " ms/frame",
                flush=True,
            )
            del fn
        del model
        torch.cuda.empty_cache()
    return rows


class GraphRunner:
    """The runner interface (``infer(feed)``) over fp16 autocast replayed from CUDA graphs, one
    captured per window length (the stream's first windows and the flush are shorter)."""

    name = "torch-cuda-graph"

    def __init__(self, torch: Any, module: Any, metadata: dict) -> None:
        self.torch = torch
        self.input_names = ("x", "t", "ref", "control")
        self.output_names = ("eps",)
        self.metadata = metadata
        self.call = _call(torch, module.to("cuda"), half=True)
        self.graphs: dict[int, _Graphed] = {}

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        host = [torch.from_numpy(np.ascontiguousarray(feed[n], dtype=np.float32)) for n in self.input_names]
        frames = int(host[0].shape[1])
        g = self.graphs.get(frames)
        if g is None:
            g = self.graphs[frames] = _Graphed(torch, self.call, [h.to("cuda") for h in host])
        for s, h in zip(g.static, host, strict=True):
            s.copy_(h)
        g.graph.replay()
        return {"eps": g.out.float().cpu().numpy()}


class ZeroRunner:
    """Same interface, no work: the renderer loop's CPU share."""

    name = "zero"

    def __init__(self, metadata: dict) -> None:
        self.input_names = ("x", "t", "ref", "control")
        self.output_names = ("eps",)
        self.metadata = metadata

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"eps": np.zeros_like(feed["x"])}


def time_renderer(torch: Any, runs: int) -> dict:
    from training.render.model import CONFIGS, TemporalUNet
    from vlogger.engines.avatar import load_avatar
    from vlogger.engines.backends import make_runner
    from vlogger.engines.render.diffusion import DiffusionConfig, DiffusionRenderer
    from vlogger.engines.render.diffusion.renderer import METADATA_KEY, TEST_MODEL, load_model_metadata
    from vlogger.engines.types import EXPRESSION_NAMES, MotionFrame

    meta = load_model_metadata(make_runner(TEST_MODEL, "onnxruntime"))
    cfg = CONFIGS["base"]
    meta["model"] = cfg.to_dict()
    metadata = {METADATA_KEY: json.dumps(meta)}
    a = load_avatar()
    motion = []
    for i in range(24):
        mf = MotionFrame.neutral(i, i / 25)
        mf.expression[EXPRESSION_NAMES.index("jaw_open")] = 0.5 + 0.5 * np.sin(i / 2)
        motion.append(mf)
    posed = [a.rig.pose(m) for m in motion]
    torch.manual_seed(0)
    model = TemporalUNet(cfg).eval()
    runners = {
        "cuda-graph fp16": GraphRunner(torch, model, metadata),
        "zero (CPU share)": ZeroRunner(metadata),
    }
    out: dict = {"image": list(a.image.shape), "model": "base", "size": cfg.size}
    for label, runner in runners.items():
        for steps in (1, 2, 4):
            r = DiffusionRenderer(a.image, a.fit, DiffusionConfig(steps=steps), runner=runner)

            def causal(r: DiffusionRenderer = r) -> float:
                r.reset()
                for p in posed[:4]:  # fill the window's history first
                    r.render(p)
                t0 = time.perf_counter()
                for p in posed[4:20]:
                    r.render(p)
                return (time.perf_counter() - t0) / 16

            def windowed(r: DiffusionRenderer = r) -> float:
                t0 = time.perf_counter()
                r.reset()
                for p in posed:
                    r.push(p)
                r.flush()
                return (time.perf_counter() - t0) / len(posed)

            causal()
            c = statistics.median(causal() for _ in range(runs))
            windowed()
            w = statistics.median(windowed() for _ in range(runs))
            row = {"causal_ms_per_frame": 1000 * c, "windowed_ms_per_frame": 1000 * w}
            out.setdefault(label, {})[steps] = row
            print(
                f"renderer {label:17s} {steps} steps: causal {1000 * c:7.2f} ms/frame, "
                f"windowed {1000 * w:7.2f} ms/frame",
                flush=True,
            )
    return out


def time_training(torch: Any, names: list[str], batch: int, runs: int) -> list[dict]:
    """One training step (noise-prediction MSE, backward, AdamW) of ``train.py``'s default batch
    (``batch`` windows of 8 frames), fp32 and bf16 autocast."""
    from training.render.model import CONFIGS, TemporalUNet

    rows = []
    for name in names:
        cfg = CONFIGS[name]
        for variant in ("fp32", "bf16"):
            torch.manual_seed(0)
            model = TemporalUNet(cfg).to("cuda").train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            s, c = cfg.size, cfg.control_channels
            x = torch.randn(batch, WINDOW, 3, s, s, device="cuda")
            t = torch.full((batch,), 500.0, device="cuda")
            ref = torch.randn(batch, 3, s, s, device="cuda")
            ctrl = torch.randn(batch, WINDOW, c, s, s, device="cuda")
            noise = torch.randn_like(x)

            def step(
                model: Any = model,
                opt: Any = opt,
                variant: str = variant,
                data: tuple = (x, t, ref, ctrl, noise),
            ) -> None:
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=variant == "bf16"):
                    loss = (model(*data[:4]).float() - data[4]).pow(2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            torch.cuda.reset_peak_memory_stats()
            ms = statistics.median(_event_ms(torch, step, runs, warmup=3))
            peak = torch.cuda.max_memory_allocated() / 2**20
            rows.append(
                {
                    "model": name,
                    "size": cfg.size,
                    "batch_windows": batch,
                    "variant": variant,
                    "step_ms_median": ms,
                    "peak_mem_mib": peak,
                }
            )
            print(
                f"train {name:6s} batch {batch}x{WINDOW} {variant}: {ms:8.2f} ms/step, peak {peak:.0f} MiB",
                flush=True,
            )
            del model, opt
            torch.cuda.empty_cache()
    return rows


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    rows = res.get("denoiser", [])
    for variant in ("fp32", "fp16", "fp16+graph"):
        rs = [r for r in rows if r["variant"] == variant]
        ax[0].plot([r["size"] for r in rs], [r["window_ms_median"] for r in rs], "o-", label=variant)
    ax[0].set(xlabel="model size (px)", ylabel="ms per 8-frame window call", yscale="log", title=res["gpu"])
    ax[0].legend()
    if "renderer" in res:
        for label in ("cuda-graph fp16", "zero (CPU share)"):
            d = res["renderer"][label]
            for key, style in (("causal", "o-"), ("windowed", "s--")):
                ys = [d[k if k in d else str(k)][f"{key}_ms_per_frame"] for k in (1, 2, 4)]
                ax[1].plot([1, 2, 4], ys, style, label=f"{key}, {label}")
        ax[1].axhline(40, color="k", lw=0.5)
        ax[1].set(xlabel="steps", ylabel="ms per new frame (512 px out)", title="whole renderer, base 128 px")
        ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--sizes", type=int, nargs="*", default=[64, 128, 256], help="denoiser sizes (none: skip)"
    )
    ap.add_argument("--runs", type=int, default=50, help="timed window calls per variant")
    ap.add_argument("--renderer-runs", type=int, default=5, help="timed renderer loops per setting")
    ap.add_argument("--skip-renderer", action="store_true")
    ap.add_argument(
        "--train", nargs="*", default=["tiny", "small", "base"], help="models to time training of"
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark measures GPU latency only (see benchmarks/renderer.py for CPU)")
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's training/
    torch.backends.cudnn.benchmark = True
    props = torch.cuda.get_device_properties(0)
    res: dict = {
        "gpu": props.name,
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "cpu": platform.processor() or platform.machine(),
        "window_frames": WINDOW,
        "figure": "measured",
    }
    try:
        import onnxruntime as ort

        res["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        res["onnxruntime_providers"] = []
    print(json.dumps(res), flush=True)
    if a.sizes:
        res["denoiser"] = time_denoiser(torch, a.sizes, a.runs)
    if not a.skip_renderer:
        res["renderer"] = time_renderer(torch, a.renderer_runs)
    if a.train:
        res["training"] = time_training(torch, a.train, 4, 20)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "renderer_gpu.json").write_text(json.dumps(res, indent=1))
    plot(res, a.out / "renderer_gpu.png")
    print(f"wrote {a.out / 'renderer_gpu.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
