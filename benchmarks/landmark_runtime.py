"""Landmark models: onnxruntime (our ONNX conversions) vs LiteRT (mediapipe's own .tflite files).

Justifies running the converted models in ``engines/avatar/landmarks/assets`` with onnxruntime
(already a dependency) instead of adding LiteRT (``ai-edge-litert==2.3.0``). Per model:

* median latency of one inference, single thread: (a) onnxruntime CPU (intra_op_num_threads=1,
  inter_op_num_threads=1, default graph optimisation) on the ONNX file, (b) LiteRT
  ``Interpreter(num_threads=1)`` (XNNPACK delegate, its default) on the source .tflite; the two
  runtimes are timed interleaved (alternating which goes first) so that noise from other processes
  hits both alike; LiteRT's time includes ``set_tensor``/``get_tensor``, as ``session.run`` copies too;
* max abs difference of every output, LiteRT vs onnxruntime, on 5 random inputs (uniform [-1, 1]);
* load time (median of 5): session / interpreter creation + ``allocate_tensors``, and the first
  inference after it;
* install size: the ai-edge-litert 2.3.0 wheel for cp311 manylinux x86_64 plus those of its
  dependencies that the project does not already require (``pip download``; the closure of the
  project's requirements is read from the project's venv with ``importlib.metadata``), vs 0 extra
  for onnxruntime, which the project already requires.

It needs both runtimes, so it runs in a side environment, never the project's (it imports nothing
from ``vlogger``). The recorded results come from one with the project's versions of numpy and
onnxruntime::

    python3.11 -m venv /work/side/litert
    /work/side/litert/bin/pip install numpy==2.4.6 onnxruntime==1.32.0 onnx==1.22.0 \
        ai-edge-litert==2.3.0 packaging
    /work/side/litert/bin/python benchmarks/landmark_runtime.py \
        --mediapipe-dir .venv/lib/python3.11/site-packages/mediapipe/modules [--runs 150] [--no-download]

(the TensorFlow env of ``engines/avatar/landmarks/convert.py`` works too, with its numpy 1.26).
Prints a markdown table, writes ``benchmarks/results/landmark_runtime.json``. The recorded results
are step 1's (commit 22de17e), whose seven models included the 468-point face mesh and the iris
model, since replaced by the attention face mesh (see ``NAMES``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "engines" / "avatar" / "landmarks" / "assets"
# The shipped models converted whole. The attention face mesh (assets/attention/) cannot run in LiteRT
# (mediapipe's custom ops are not registered there); step 1's face_landmarks and iris models, in
# the recorded results, are no longer shipped: convert.py --only face_landmarks iris --out DIR
# makes them, then --assets DIR --only face_landmarks iris.
NAMES = [
    "face_detector",
    "pose_detector",
    "pose_landmarks",
    "palm_detector",
    "hand_landmarks",
]
LITERT = "ai-edge-litert==2.3.0"

# Run in the project's venv: the names (normalised) and versions of everything vlogger-runtime
# requires, transitively, without extras.
CLOSURE_SNIPPET = r"""
import importlib.metadata as md, json, re
from packaging.requirements import Requirement
from packaging.markers import default_environment
seen, stack = {}, [("vlogger-runtime", ())]
while stack:
    name, extras = stack.pop()
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        continue
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        seen[key] = None
        continue
    seen[key] = dist.version
    for r in dist.requires or []:
        req = Requirement(r)
        env = dict(default_environment())
        ok = False
        for ex in extras or ("",):
            env["extra"] = ex
            ok |= req.marker is None or req.marker.evaluate(env)
        if ok:
            stack.append((req.name, tuple(req.extras)))
print(json.dumps(seen))
"""


def norm(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def onnx_source(path: Path) -> str:
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return meta["source"]


def make_ort(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def make_litert(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    return it


class OrtRun:
    def __init__(self, sess):
        self.sess = sess
        self.inp = sess.get_inputs()[0].name
        self.names = [o.name for o in sess.get_outputs()]

    def __call__(self, x):
        return dict(zip(self.names, self.sess.run(None, {self.inp: x}), strict=True))


class LiteRun:
    def __init__(self, it):
        self.it = it
        self.inp = it.get_input_details()[0]["index"]
        self.outs = [(o["name"], o["index"]) for o in it.get_output_details()]

    def __call__(self, x):
        self.it.set_tensor(self.inp, x)
        self.it.invoke()
        return {n: self.it.get_tensor(i) for n, i in self.outs}


def time_load(make, run, path: Path, x, n: int) -> tuple[float, float]:
    loads, firsts = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        obj = make(path)
        t1 = time.perf_counter()
        run(obj)(x)
        t2 = time.perf_counter()
        loads.append(t1 - t0)
        firsts.append(t2 - t1)
        del obj
    return statistics.median(loads), statistics.median(firsts)


def bench_model(name: str, onnx_path: Path, tfl_path: Path, runs: int, warmup: int) -> dict:
    sess = make_ort(onnx_path)
    shape = [int(d) for d in sess.get_inputs()[0].shape]
    rng = np.random.default_rng(0)
    xs = [rng.uniform(-1.0, 1.0, size=shape).astype(np.float32) for _ in range(5)]

    ort_load, ort_first = time_load(make_ort, OrtRun, onnx_path, xs[0], 5)
    lite_load, lite_first = time_load(make_litert, LiteRun, tfl_path, xs[0], 5)

    o, li = OrtRun(sess), LiteRun(make_litert(tfl_path))
    # parity
    outputs: dict[str, dict[str, Any]] = {}
    for x in xs:
        a, b = o(x), li(x)
        for k in a:
            st = outputs.setdefault(k, {"shape": list(a[k].shape), "max_abs_diff": 0.0, "scale": 0.0})
            st["max_abs_diff"] = max(
                st["max_abs_diff"], float(np.max(np.abs(a[k].astype(np.float64) - b[k])))
            )
            st["scale"] = max(st["scale"], float(np.max(np.abs(b[k]))))
    for st in outputs.values():
        st["relative"] = st["max_abs_diff"] / max(st["scale"], 1e-6)

    for i in range(warmup):
        o(xs[i % 5])
        li(xs[i % 5])
    t_ort: list[float] = []
    t_lite: list[float] = []
    for i in range(runs):
        x = xs[i % 5]
        pair: list[tuple[Callable[[np.ndarray], dict], list[float]]] = [(o, t_ort), (li, t_lite)]
        if i % 2:
            pair.reverse()
        for fn, acc in pair:
            t0 = time.perf_counter()
            fn(x)
            acc.append(time.perf_counter() - t0)

    def ms(v):
        return round(1e3 * v, 3)

    return {
        "onnx_file": onnx_path.name,
        "onnx_bytes": onnx_path.stat().st_size,
        "tflite_file": tfl_path.name,
        "tflite_bytes": tfl_path.stat().st_size,
        "input_shape": shape,
        "runs": runs,
        "ort_ms": {
            "median": ms(statistics.median(t_ort)),
            "p10": ms(np.percentile(t_ort, 10)),
            "p90": ms(np.percentile(t_ort, 90)),
        },
        "litert_ms": {
            "median": ms(statistics.median(t_lite)),
            "p10": ms(np.percentile(t_lite, 10)),
            "p90": ms(np.percentile(t_lite, 90)),
        },
        "ort_over_litert": round(statistics.median(t_ort) / statistics.median(t_lite), 3),
        "load_ms": {"ort": ms(ort_load), "litert": ms(lite_load)},
        "first_inference_ms": {"ort": ms(ort_first), "litert": ms(lite_first)},
        "litert_vs_ort": outputs,
        "max_relative_diff": max(st["relative"] for st in outputs.values()),
    }


def install_size(project_python: Path, download: bool, wheel_dir: Path | None) -> dict:
    import importlib.metadata as md

    from packaging.requirements import Requirement

    closure = json.loads(
        subprocess.run(
            [str(project_python), "-c", CLOSURE_SNIPPET], check=True, capture_output=True, text=True
        ).stdout
    )
    deps = []
    for r in md.requires("ai-edge-litert") or []:
        req = Requirement(r)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            deps.append(req.name)
    extra = [d for d in deps if norm(d) not in closure]
    res = {
        "litert_requires": deps,
        "already_required_by_project": {d: closure[norm(d)] for d in deps if norm(d) in closure},
        "extra_dependencies": extra,
        "onnxruntime_extra_bytes": 0,
        "onnxruntime_note": f"onnxruntime {closure.get('onnxruntime')} is already a project dependency",
    }
    try:
        import ai_edge_litert

        pkg = Path(ai_edge_litert.__file__).parent
        res["litert_installed_bytes"] = sum(p.stat().st_size for p in pkg.rglob("*") if p.is_file())
    except ImportError:
        pass
    if not download and wheel_dir is None:
        return res
    with tempfile.TemporaryDirectory() as tmp:
        d = wheel_dir or Path(tmp)
        if download:
            for spec in [LITERT] + [f"{e}=={md.version(e)}" for e in extra]:
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "pip",
                        "download",
                        "--no-deps",
                        "--only-binary=:all:",
                        "--python-version",
                        "3.11",
                        "--implementation",
                        "cp",
                        "--abi",
                        "cp311",
                        "--platform",
                        "manylinux_2_27_x86_64",
                        "--platform",
                        "any",
                        "-q",
                        "-d",
                        str(d),
                        spec,
                    ],
                    check=True,
                )
        wheels = {p.name: p.stat().st_size for p in sorted(d.glob("*.whl"))}
    res["wheels"] = wheels
    res["litert_download_bytes"] = sum(wheels.values())
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--mediapipe-dir", type=Path, required=True, help="the installed mediapipe/modules folder"
    )
    ap.add_argument("--assets", type=Path, default=ASSETS)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--project-python", type=Path, default=REPO / ".venv" / "bin" / "python")
    ap.add_argument("--no-download", action="store_true", help="skip pip download of the LiteRT wheels")
    ap.add_argument("--wheel-dir", type=Path, default=None, help="measure already downloaded wheels here")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "landmark_runtime.json")
    args = ap.parse_args()
    if args.runs < 50:
        ap.error("--runs must be >= 50")

    import ai_edge_litert
    import onnxruntime

    load0 = os.getloadavg()
    models = {}
    for name in args.only or NAMES:
        onnx_path = args.assets / f"{name}.onnx"
        tfl = args.mediapipe_dir / onnx_source(onnx_path)
        print(f"{name}: {args.runs} interleaved runs ...", flush=True)
        models[name] = bench_model(name, onnx_path, tfl, args.runs, args.warmup)
    load1 = os.getloadavg()
    inst = install_size(args.project_python, not args.no_download and args.wheel_dir is None, args.wheel_dir)

    try:
        cpu = next(
            line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor()
    result: dict[str, Any] = {
        "what": "single-thread CPU inference of the landmark models: onnxruntime on the converted ONNX vs "
        "LiteRT on mediapipe's .tflite; latencies in ms (median of interleaved runs)",
        "meta": {
            "onnxruntime": onnxruntime.__version__,
            "ai_edge_litert": getattr(ai_edge_litert, "__version__", None)
            or __import__("importlib.metadata").metadata.version("ai-edge-litert"),
            "numpy": np.__version__,
            "python": platform.python_version(),
            "cpu": cpu,
            "cpu_count": os.cpu_count(),
            "loadavg_before": load0,
            "loadavg_after": load1,
            "date": time.strftime("%Y-%m-%d %H:%M"),
        },
        "models": models,
        "total_ms": {
            "ort": round(sum(m["ort_ms"]["median"] for m in models.values()), 3),
            "litert": round(sum(m["litert_ms"]["median"] for m in models.values()), 3),
        },
        "install": inst,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    meta = result["meta"]
    print(
        f"\nonnxruntime {meta['onnxruntime']} vs ai-edge-litert {meta['ai_edge_litert']}, "
        f"1 thread, {args.runs} runs, {cpu}, load avg {load0[0]:.2f} -> {load1[0]:.2f}\n"
    )
    print(
        "| model | input | ORT ms (median) | LiteRT ms (median) | ORT/LiteRT | load ms ORT / LiteRT | "
        "1st run ms ORT / LiteRT | max abs diff (rel) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, m in models.items():
        worst = max(m["litert_vs_ort"].values(), key=lambda s: s["relative"])
        print(
            f"| {name} | {'x'.join(map(str, m['input_shape'][1:3]))} | {m['ort_ms']['median']:.2f} | "
            f"{m['litert_ms']['median']:.2f} | {m['ort_over_litert']:.2f} | "
            f"{m['load_ms']['ort']:.1f} / {m['load_ms']['litert']:.1f} | "
            f"{m['first_inference_ms']['ort']:.1f} / {m['first_inference_ms']['litert']:.1f} | "
            f"{worst['max_abs_diff']:.2g} ({worst['relative']:.1e}) |"
        )
    t = result["total_ms"]
    print(
        f"| all {len(models)} | | {t['ort']:.2f} | {t['litert']:.2f} | {t['ort'] / t['litert']:.2f} | | | |"
    )
    if "litert_download_bytes" in inst:
        print(
            f"\ninstall: LiteRT adds {inst['litert_download_bytes'] / 1e6:.1f} MB download "
            f"({', '.join(f'{k} {v / 1e6:.2f} MB' for k, v in inst['wheels'].items())}); "
            f"onnxruntime adds 0 (already required)"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
