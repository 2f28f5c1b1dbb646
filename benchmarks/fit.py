"""Parity and speed of ``landmarks.FaceLandmarker`` against mediapipe's FaceMesh (+ iris).

Reads the references recorded by ``benchmarks/fit_reference.py`` (``benchmarks/results/
fit_reference/*.npz``; this script does not need mediapipe) and runs our landmarker on the same
inputs, in the same mode (static photos and clip subsets, tracking over a clip's sampled frames).

Parity: per landmark, the 2D distance to the reference in % of the reference's outer-eye-corner
distance (landmarks 33-263), median and 95th percentile over all (frame, landmark) pairs of a
region: face (the 468 mesh points), lips (topology's outer + inner lip contours, 40), eyes (the
two 16-point eyelid contours), irises (468-477). Comparisons:

- ``gate``: ours (refine_eyes off) vs FaceMesh(refine_landmarks=False) + mediapipe's iris
  pipeline. Gate: median <= 0.5 %, p95 <= 1.5 % in every region.
- ``refine_eyes``: ours with refine_eyes vs the same reference with its eye contours written into
  the mesh (UpdateFaceLandmarksCalculator).
- ``vs_refined`` / ``vs_refined_eyes``: ours (refine_eyes off / on) vs FaceMesh(refine_landmarks=
  True) (the attention mesh the rig was calibrated on); ``baseline``: the refine=False + iris
  reference itself vs refine=True (how far apart mediapipe's two models are).

``aperture`` (not gated): the difference of ``metrics.eye_openness`` (lid gap over eye width, 3
lid pairs per eye), in % of the eye width: what the rig's eyelids read. Frames where only one side
finds a face are counted (``detections``), not measured.

Speed (one CPU core, ``threads=1``): a photo fit in a fresh process (import + model loading + one
``process``; target <= 0.4 s) and the per-frame cost of tracking on 256x256 frames (target <= 8
ms), next to mediapipe's FaceMesh on the same frames: measured in this run when mediapipe is
importable, else the ``timing.json`` fit_reference.py recorded.

    python benchmarks/fit.py [--data ../shared/data] [--out benchmarks/results/fit.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a script from benchmarks/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.fit_reference import OUT as REF_DIR
from benchmarks.fit_reference import (
    PORTRAIT,
    default_data,
    load_rgb,
    pin_one_core,
    sources,
    timing_frames,
)

ROOT = Path(__file__).resolve().parents[1]
GATE_MEDIAN = 0.5
GATE_P95 = 1.5
REGIONS = ("face", "lips", "eyes", "irises")

__all__ = ["aperture_errors", "errors", "region_indices", "summarize"]


def region_indices() -> dict[str, np.ndarray]:
    """Landmark indices (of the 478 layout) of each measured region."""
    from vlogger.engines.avatar.topology import face_topology

    t = face_topology()
    return {
        "face": np.arange(468),
        "lips": np.concatenate([t.lips_outer, t.lips_inner]).astype(np.int64),
        "eyes": np.concatenate([t.right_eye, t.left_eye]).astype(np.int64),
        "irises": np.arange(468, 478),
    }


def aperture_errors(ours: np.ndarray, ref: np.ndarray, iod: np.ndarray) -> np.ndarray:
    """(F, 2) |eye openness difference| per eye, in % of the eye width (``metrics.eye_openness``:
    the lid gap over the eye's corner distance, what the rig's eyelids are calibrated on).
    ``iod`` is unused (the measure is a ratio already)."""
    from vlogger.engines.avatar.metrics import eye_openness

    return np.array(
        [
            np.abs(np.subtract(eye_openness(a), eye_openness(b))) * 100.0
            for a, b in zip(ours, ref, strict=True)
        ]
    ).reshape(len(ours), 2)


def errors(ours: np.ndarray, ref: np.ndarray, iod: np.ndarray) -> np.ndarray:
    """(F, N) 2D distances in % of ``iod`` (F,) between (F, N, >=2) landmark arrays."""
    d = np.linalg.norm(ours[..., :2] - ref[..., :2], axis=-1)
    return d / iod[:, None] * 100.0


def summarize(err: dict[str, list[np.ndarray]]) -> dict[str, dict[str, float]]:
    """Median / p95 / max per region of pooled per-landmark errors."""
    out = {}
    for region, chunks in err.items():
        v = np.concatenate([c.reshape(-1) for c in chunks]) if chunks else np.zeros(0)
        v = v[np.isfinite(v)]
        out[region] = {
            "median": float(np.median(v)) if v.size else float("nan"),
            "p95": float(np.percentile(v, 95)) if v.size else float("nan"),
            "max": float(v.max()) if v.size else float("nan"),
            "n": int(v.size),
        }
    return out


def _reference_478(rec: Any) -> np.ndarray:
    """(F, 478, 2) FaceMesh(refine=False) mesh + the iris reference (rim points in refine=True's
    order, as ours: see landmarks.iris.IRIS_RIM_ORDER)."""
    from vlogger.engines.avatar.landmarks.iris import IRIS_RIM_ORDER

    iris = rec["iris"][:, np.r_[IRIS_RIM_ORDER[0], IRIS_RIM_ORDER[1] + 5], :2]
    return np.concatenate([rec["mesh"][..., :2], iris], axis=1).astype(np.float64)


def _reference_refined_eyes(rec: Any) -> np.ndarray:
    from vlogger.engines.avatar.landmarks.iris import EYE_CONTOUR_INDICES

    ref = _reference_478(rec)
    for eye in range(2):
        ref[:, EYE_CONTOUR_INDICES[eye]] = rec["contours"][:, eye, :, :2]
    return ref


def run_ours(inp: Any, refine_eyes: bool) -> list[np.ndarray | None]:
    """Our (478, 3) landmarks per frame of an input (None: no face)."""
    from vlogger.engines.avatar.landmarks import FaceLandmarker

    out: list[np.ndarray | None] = []
    with FaceLandmarker(static=inp.mode == "static", refine_eyes=refine_eyes) as fl:
        for img in inp.images():
            faces = fl.process(img)
            out.append(faces[0] if faces else None)
    return out


def parity(data: Path, ref_dir: Path) -> dict[str, Any]:
    """All comparisons over all inputs that have a reference file."""
    regions = region_indices()
    comps = ("gate", "refine_eyes", "vs_refined", "vs_refined_eyes", "baseline")
    groups = ("photos", "clips_static", "clips_tracking", "all")
    err: dict[str, dict[str, dict[str, list[np.ndarray]]]] = {
        c: {g: {r: [] for r in (*REGIONS, "aperture")} for g in groups} for c in comps
    }
    det = {g: {"both": 0, "reference_only": 0, "ours_only": 0, "neither": 0} for g in groups}
    per_input = []
    for inp in sources(data):
        path = ref_dir / f"{inp.name}.npz"
        if not path.is_file():
            continue
        rec = np.load(path)
        if inp.path is None or inp.path.suffix.lower() != ".mp4":
            group = "photos"
        else:
            group = "clips_static" if inp.mode == "static" else "clips_tracking"
        t0 = time.perf_counter()
        plain = run_ours(inp, refine_eyes=False)
        refined = run_ours(inp, refine_eyes=True)
        secs = time.perf_counter() - t0
        ref_found = np.isfinite(rec["mesh"][:, 0, 0])
        our_found = np.array([p is not None for p in plain])
        for g in (group, "all"):
            det[g]["both"] += int((ref_found & our_found).sum())
            det[g]["reference_only"] += int((ref_found & ~our_found).sum())
            det[g]["ours_only"] += int((~ref_found & our_found).sum())
            det[g]["neither"] += int((~ref_found & ~our_found).sum())
        both = np.flatnonzero(ref_found & our_found & np.isfinite(rec["refined"][:, 0, 0]))
        both_mesh = np.flatnonzero(ref_found & our_found)
        iod_all = np.linalg.norm(rec["mesh"][:, 33, :2] - rec["mesh"][:, 263, :2], axis=-1).astype(np.float64)
        ours_p = np.stack([plain[i] for i in both_mesh]) if both_mesh.size else np.zeros((0, 478, 3))
        ours_r = np.stack([refined[i] for i in both_mesh]) if both_mesh.size else np.zeros((0, 478, 3))
        ref478 = _reference_478(rec)[both_mesh]
        ref_eyes = _reference_refined_eyes(rec)[both_mesh]
        iod = iod_all[both_mesh]
        pairs = {"gate": (ours_p, ref478), "refine_eyes": (ours_r, ref_eyes)}
        sel = np.isin(both_mesh, both)
        refined_ref = rec["refined"][both_mesh][sel].astype(np.float64)
        pairs_r = {
            "vs_refined": (ours_p[sel], refined_ref),
            "vs_refined_eyes": (ours_r[sel], refined_ref),
            "baseline": (ref478[sel], refined_ref),
        }
        row: dict[str, Any] = {"name": inp.name, "mode": inp.mode, "frames": len(inp.frames), "seconds": secs}
        for comp, (a, b) in list(pairs.items()) + list(pairs_r.items()):
            io = iod if comp in pairs else iod[sel]
            e = errors(a, b, io) if len(a) else np.zeros((0, 478))
            ap = aperture_errors(a, b, io) if len(a) else np.zeros((0, 2))
            err[comp][group]["aperture"].append(ap)
            err[comp]["all"]["aperture"].append(ap)
            for r, idx in regions.items():
                chunk = e[:, idx]
                err[comp][group][r].append(chunk)
                err[comp]["all"][r].append(chunk)
                if comp == "gate":
                    row[f"{r}_median"] = float(np.median(chunk)) if chunk.size else float("nan")
                    row[f"{r}_max"] = float(chunk.max()) if chunk.size else float("nan")
        row["detections"] = {
            "both": len(both_mesh),
            "reference": int(ref_found.sum()),
            "ours": int(our_found.sum()),
        }
        per_input.append(row)
        print(
            f"  {inp.name:40s} {inp.mode:8s} {len(both_mesh):3d}/{len(inp.frames):3d}  face median "
            f"{row['face_median']:.4f} %  irises median {row['irises_median']:.4f} %  ({secs:.1f} s)",
            flush=True,
        )
    summary = {c: {g: summarize(err[c][g]) for g in groups} for c in comps}
    gate = summary["gate"]["all"]
    passed = all(gate[r]["median"] <= GATE_MEDIAN and gate[r]["p95"] <= GATE_P95 for r in REGIONS)
    return {"summary": summary, "detections": det, "inputs": per_input, "gate_passed": passed}


_CHILD = """
import sys, time
import numpy as np
img = np.load(sys.argv[1])
t0 = time.perf_counter()
import cv2, onnxruntime
t1 = time.perf_counter()
from vlogger.engines.avatar.landmarks import FaceLandmarker
t2 = time.perf_counter()
fl = FaceLandmarker(static=True, threads=1)
t3 = time.perf_counter()
faces = fl.process(img)
t4 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, t4 - t3, len(faces))
"""


def photo_fit_seconds(runs: int = 5) -> dict[str, float]:
    """Median seconds, in fresh processes, of: importing the landmarker's own dependencies
    (onnxruntime, cv2), importing the package (``vlogger.engines.avatar`` and what its
    ``__init__`` pulls in), loading the 3 models, one ``process()`` of the portrait. ``total_s`` is
    their sum, ``landmarker_s`` all but the package import. (The image is handed over as .npy;
    Python's start and numpy's import are not counted.)"""
    img = load_rgb(PORTRAIT)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "img.npy"
        np.save(path, img)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        for _ in range(runs):
            res = subprocess.run(
                [sys.executable, "-c", _CHILD, str(path)],
                capture_output=True,
                text=True,
                env=env,
                cwd=str(ROOT),
                check=True,
            )
            vals = res.stdout.strip().splitlines()[-1].split()
            if int(vals[4]) != 1:
                raise RuntimeError(f"the photo fit found {vals[4]} faces")
            rows.append([float(v) for v in vals[:4]])
    med = np.median(np.array(rows), axis=0)
    total = np.median(np.array(rows).sum(axis=1))
    own = np.median(np.array(rows)[:, [0, 2, 3]].sum(axis=1))
    return {
        "deps_import_s": float(med[0]),
        "package_import_s": float(med[1]),
        "load_s": float(med[2]),
        "process_s": float(med[3]),
        "total_s": float(total),
        "landmarker_s": float(own),
        "runs": runs,
    }


def _per_frame_ms(process: Any, frames: list[np.ndarray], warmup: int = 10) -> float:
    for img in frames[:warmup]:
        process(img)
    ms = []
    for img in frames:
        t0 = time.perf_counter()
        process(img)
        ms.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(ms))


def tracking_ms(data: Path, ref_dir: Path) -> dict[str, Any]:
    """Median per-frame ms of tracking on the 256x256 timing frames: ours and mediapipe's."""
    from vlogger.engines.avatar.landmarks import FaceLandmarker

    frames = timing_frames(data)
    res: dict[str, Any] = {"frames": len(frames)}
    for refine_eyes in (False, True):
        with FaceLandmarker(static=False, threads=1, refine_eyes=refine_eyes) as fl:
            fl.process(frames[0])
            fl.reset()
            res[f"ours_refine_eyes_{str(refine_eyes).lower()}_ms"] = _per_frame_ms(fl.process, frames)
    try:
        import mediapipe as mp

        from vlogger.engines.native_log import quiet_native_stderr

        for refine in (False, True):
            with quiet_native_stderr():
                fm = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, refine_landmarks=refine)
            try:
                res[f"mediapipe_refine_{str(refine).lower()}_ms"] = _per_frame_ms(fm.process, frames)
            finally:
                fm.close()
        res["mediapipe_source"] = "this run"
    except ImportError:
        path = ref_dir / "timing.json"
        if path.is_file():
            rec = json.loads(path.read_text())
            res["mediapipe_refine_false_ms"] = rec["refine_false_ms_median"]
            res["mediapipe_refine_true_ms"] = rec["refine_true_ms_median"]
            res["mediapipe_source"] = "fit_reference.py timing.json"
    return res


def _table(result: dict[str, Any]) -> str:
    s = result["summary"]
    lines = [
        "parity, % of the outer-eye-corner distance (median / p95), all inputs:",
        f"{'comparison':24s}" + "".join(f"{r:>16s}" for r in (*REGIONS, "openness*")),
    ]
    labels = {
        "gate": "vs refine=False+iris",
        "refine_eyes": "refine_eyes vs +contours",
        "vs_refined": "vs refine=True",
        "vs_refined_eyes": "refine_eyes vs refine=T",
        "baseline": "(mp F+iris vs mp T)",
    }
    for comp, label in labels.items():
        cells = "".join(
            f"{s[comp]['all'][r]['median']:>8.3f} /{s[comp]['all'][r]['p95']:>6.3f}"
            for r in (*REGIONS, "aperture")
        )
        lines.append(f"{label:24s}{cells}")
    lines.append("gate by group (vs refine=False+iris):")
    for g in ("photos", "clips_static", "clips_tracking"):
        cells = "".join(f"{s['gate'][g][r]['median']:>8.3f} /{s['gate'][g][r]['p95']:>6.3f}" for r in REGIONS)
        lines.append(f"  {g:22s}{cells}")
    lines.append("(* eye openness difference in % of the eye width, not gated)")
    lines.append(f"detections: {result['detections']['all']}")
    verdict = "PASS" if result["gate_passed"] else "FAIL"
    lines.append(f"gate (median <= {GATE_MEDIAN} %, p95 <= {GATE_P95} %): {verdict}")
    return "\n".join(lines)


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["summary"]
    comps = [
        ("gate", "ours vs mp refine=False+iris"),
        ("vs_refined", "ours vs mp refine=True"),
        ("vs_refined_eyes", "ours (refine_eyes) vs mp refine=True"),
        ("baseline", "mp F+iris vs mp T"),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    x = np.arange(len(REGIONS))
    width = 0.8 / len(comps)
    for i, (c, label) in enumerate(comps):
        med = [s[c]["all"][r]["median"] for r in REGIONS]
        p95 = [s[c]["all"][r]["p95"] for r in REGIONS]
        axes[0].bar(x + i * width, p95, width, alpha=0.35, color=f"C{i}")
        axes[0].bar(x + i * width, med, width, color=f"C{i}", label=label)
    axes[0].axhline(GATE_MEDIAN, color="k", ls="--", lw=0.8)
    axes[0].axhline(GATE_P95, color="k", ls=":", lw=0.8)
    axes[0].set_xticks(x + 0.4 - width / 2, REGIONS)
    axes[0].set_yscale("log")
    axes[0].set_ylim(top=60)
    axes[0].set_ylabel("% of eye-corner distance (median solid, p95 light)")
    axes[0].legend(fontsize=7)
    axes[0].set_title("landmark parity (gate: -- median 0.5 %, : p95 1.5 %)")
    t = result["timing"]["tracking"]
    names = [k for k in t if k.endswith("_ms")]
    axes[1].barh(names, [t[k] for k in names], color=["C0" if k.startswith("ours") else "C1" for k in names])
    axes[1].axvline(8.0, color="k", ls="--", lw=0.8)
    axes[1].set_xlabel("ms per 256x256 frame, tracking, 1 core (target 8 ms)")
    p = result["timing"]["photo_fit"]
    axes[1].set_title(
        f"photo fit, fresh process: {p['total_s']:.2f} s ({p['landmarker_s']:.2f} s without the package "
        "import; target 0.4 s)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--references", type=Path, default=REF_DIR)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fit.json")
    ap.add_argument("--no-timing", action="store_true")
    args = ap.parse_args()

    core = pin_one_core()
    print(f"pinned to core {core}; references {args.references}")
    result = parity(args.data, args.references)
    if not args.no_timing:
        result["timing"] = {
            "photo_fit": photo_fit_seconds(),
            "tracking": tracking_ms(args.data, args.references),
        }
    print(_table(result))
    if "timing" in result:
        print(
            "photo fit (fresh process):", {k: round(v, 3) for k, v in result["timing"]["photo_fit"].items()}
        )
        print("tracking per frame:", result["timing"]["tracking"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    if "timing" in result:
        _plot(result, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
