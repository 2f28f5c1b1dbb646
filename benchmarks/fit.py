"""Parity and speed of ``landmarks.FaceLandmarker`` against mediapipe's FaceMesh(refine_landmarks=True).

``FaceLandmarker`` runs mediapipe's attention face mesh (``landmarks/attention.py``), so its
reference is FaceMesh(refine_landmarks=True): 478 points, lips, eyes and irises refined. Reads the
references recorded by ``benchmarks/fit_reference.py`` (``benchmarks/results/fit_reference/*.npz``,
their ``refined`` x, y and ``refined_z``; parity does not need mediapipe) and runs our landmarker on
the same inputs in the same mode: photos (static), clip subsets (static), tracking over a clip's
sampled frames.

Parity (``summary``): per landmark, the 2D distance to the reference in % of the reference's
outer-eye-corner distance (landmarks 33-263), median and 95th percentile over all (frame, landmark)
pairs of a region: face (the 468 mesh points), lips (topology's outer + inner lip contours, 40),
eyes (the two 16-point eyelid contours), irises (468-477); ``z``: |z difference| of all 478 points
in the same unit. Gate (as step 1's): median <= 0.5 %, p95 <= 1.5 % in every 2D region.
``aperture`` (not gated): the difference of ``metrics.eye_openness`` (lid gap over eye width), in %
of the eye width: what the rig's eyelids read. Frames where only one side finds a face are counted
(``detections``), not measured.

``step1_22de17e_recorded``: step 1 (commit 22de17e: the 468-point mesh + the iris model, both no
longer shipped) as recorded then, not recomputed: its gate against FaceMesh(refine_landmarks=False)
+ mediapipe's iris pipeline, how far it was from FaceMesh(refine_landmarks=True), and its timings.

Speed (one CPU core, ``threads=1``; the process and its children pinned to one core): in fresh
processes, the whole ``vlogger.engines.avatar.load_avatar(cache=False)`` on the default portrait
(package import + face, pose and hand models + fit + rig), and the face landmarker alone (its
dependencies' import, the package import, loading the models, one ``process``; target <= 0.4 s);
the per-frame cost of tracking on 256x256 frames (target <= 8 ms), interleaved frame by frame with
mediapipe's FaceMesh(refine_landmarks=True) on the same frames when mediapipe is importable (else
the ``timing.json`` fit_reference.py recorded).

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
GROUPS = ("photos", "clips_static", "clips_tracking", "all")
STEP1_COMMIT = "22de17e"

__all__ = ["STEP1_RECORDED", "aperture_errors", "errors", "region_indices", "summarize"]

STEP1_RECORDED: dict[str, Any] = {
    "commit": STEP1_COMMIT,
    "what": "step 1's landmarker (mediapipe's 468-point face mesh + its iris model, no longer shipped), "
    "as recorded in benchmarks/results/fit.json at that commit; median / p95 in % of the reference's "
    "33-263 distance (aperture: % of the eye width); 815 frames (5 photos, 135 static clip frames, "
    "675 tracked frames)",
    "gate": {
        "reference": "FaceMesh(refine_landmarks=False) + mediapipe's iris pipeline",
        "thresholds": {"median": GATE_MEDIAN, "p95": GATE_P95},
        "passed": True,
        "summary": {
            "photos": {
                "face": [0.0109, 0.0231],
                "lips": [0.0115, 0.0232],
                "eyes": [0.0107, 0.0228],
                "irises": [0.0111, 0.0210],
                "aperture": [0.0095, 0.0295],
            },
            "clips_static": {
                "face": [0.0073, 0.0128],
                "lips": [0.0074, 0.0128],
                "eyes": [0.0073, 0.0126],
                "irises": [0.0075, 0.0135],
                "aperture": [0.0105, 0.0367],
            },
            "clips_tracking": {
                "face": [0.0177, 0.0731],
                "lips": [0.0185, 0.0735],
                "eyes": [0.0162, 0.0679],
                "irises": [0.0193, 0.2616],
                "aperture": [0.0242, 0.1055],
            },
            "all": {
                "face": [0.0142, 0.0663],
                "lips": [0.0148, 0.0677],
                "eyes": [0.0133, 0.0603],
                "irises": [0.0153, 0.1932],
                "aperture": [0.0207, 0.0937],
            },
        },
    },
    "vs_refine_true": {
        "reference": "FaceMesh(refine_landmarks=True)",
        "summary": {
            "all": {
                "face": [1.7234, 4.2295],
                "lips": [1.9225, 4.7212],
                "eyes": [1.5702, 3.7965],
                "irises": [1.2787, 3.8357],
                "aperture": [3.2783, 13.94],
            },
        },
    },
    "detections": {"both": 815, "reference_only": 0, "ours_only": 0, "neither": 0},
    "timing": {
        "photo_fit_landmarker_total_s": 0.395,
        "photo_fit_landmarker_without_package_import_s": 0.104,
        "tracking_ours_ms": 7.35,
        "tracking_mediapipe_refine_false_ms": 2.13,
        "tracking_mediapipe_refine_true_ms": 2.54,
    },
}
"""Step 1's figures (commit 22de17e), recorded, not recomputed: its face pipeline is gone."""


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
    from vlogger.engines.metrics import eye_openness

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


def run_ours(inp: Any) -> list[np.ndarray | None]:
    """Our (478, 3) landmarks per frame of an input (None: no face)."""
    from vlogger.engines.avatar.landmarks import FaceLandmarker

    out: list[np.ndarray | None] = []
    with FaceLandmarker(static=inp.mode == "static") as fl:
        for img in inp.images():
            faces = fl.process(img)
            out.append(faces[0] if faces else None)
    return out


def _group(inp: Any) -> str:
    if inp.path is None or inp.path.suffix.lower() != ".mp4":
        return "photos"
    return "clips_static" if inp.mode == "static" else "clips_tracking"


def parity(data: Path, ref_dir: Path) -> dict[str, Any]:
    """Ours vs FaceMesh(refine_landmarks=True) over all inputs that have a reference file."""
    regions = region_indices()
    err: dict[str, dict[str, list[np.ndarray]]] = {
        g: {r: [] for r in (*REGIONS, "z", "aperture")} for g in GROUPS
    }
    det = {g: {"both": 0, "reference_only": 0, "ours_only": 0, "neither": 0} for g in GROUPS}
    per_input = []
    for inp in sources(data):
        path = ref_dir / f"{inp.name}.npz"
        if not path.is_file():
            continue
        rec = np.load(path)
        if "refined_z" not in rec.files:
            raise SystemExit(f"{path} has no refined_z: re-record with benchmarks/fit_reference.py")
        group = _group(inp)
        t0 = time.perf_counter()
        ours = run_ours(inp)
        secs = time.perf_counter() - t0
        ref_found = np.isfinite(rec["refined"][:, 0, 0])
        our_found = np.array([p is not None for p in ours])
        for g in (group, "all"):
            det[g]["both"] += int((ref_found & our_found).sum())
            det[g]["reference_only"] += int((ref_found & ~our_found).sum())
            det[g]["ours_only"] += int((~ref_found & our_found).sum())
            det[g]["neither"] += int((~ref_found & ~our_found).sum())
        both = np.flatnonzero(ref_found & our_found)
        found = [f for f, r in zip(ours, ref_found, strict=True) if f is not None and r]  # ``both``
        a = np.stack(found) if both.size else np.zeros((0, 478, 3))
        b = rec["refined"][both].astype(np.float64)
        bz = rec["refined_z"][both].astype(np.float64)
        iod = np.linalg.norm(b[:, 33] - b[:, 263], axis=-1)
        e = errors(a, b, iod) if both.size else np.zeros((0, 478))
        ez = np.abs(a[..., 2] - bz) / iod[:, None] * 100.0 if both.size else np.zeros((0, 478))
        ap = aperture_errors(a, b, iod) if both.size else np.zeros((0, 2))
        row: dict[str, Any] = {"name": inp.name, "mode": inp.mode, "frames": len(inp.frames), "seconds": secs}
        for g in (group, "all"):
            err[g]["z"].append(ez)
            err[g]["aperture"].append(ap)
            for r, idx in regions.items():
                err[g][r].append(e[:, idx])
        for r, idx in regions.items():
            chunk = e[:, idx]
            row[f"{r}_median"] = float(np.median(chunk)) if chunk.size else float("nan")
            row[f"{r}_max"] = float(chunk.max()) if chunk.size else float("nan")
        row["z_max"] = float(ez.max()) if ez.size else float("nan")
        row["detections"] = {
            "both": int(both.size),
            "reference": int(ref_found.sum()),
            "ours": int(our_found.sum()),
        }
        per_input.append(row)
        print(
            f"  {inp.name:40s} {inp.mode:8s} {both.size:3d}/{len(inp.frames):3d}  face median "
            f"{row['face_median']:.4f} %  irises median {row['irises_median']:.4f} %  ({secs:.1f} s)",
            flush=True,
        )
    summary = {g: summarize(err[g]) for g in GROUPS}
    gate = summary["all"]
    passed = all(gate[r]["median"] <= GATE_MEDIAN and gate[r]["p95"] <= GATE_P95 for r in REGIONS)
    passed &= all(v == 0 for k, v in det["all"].items() if k in ("reference_only", "ours_only"))
    return {
        "reference": "FaceMesh(refine_landmarks=True), mediapipe 0.10.21 (fit_reference.py: refined*)",
        "summary": summary,
        "detections": det,
        "inputs": per_input,
        "gate": {"median": GATE_MEDIAN, "p95": GATE_P95, "passed": bool(passed)},
    }


_CHILD_LANDMARKER = """
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

_CHILD_AVATAR = """
import time
import numpy as np
t0 = time.perf_counter()
import vlogger.engines.avatar as avatar
t1 = time.perf_counter()
av = avatar.load_avatar(cache=False)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1, av.fit.faces)
"""


def _fresh_runs(code: str, args: list[str], runs: int) -> list[list[str]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    rows = []
    for _ in range(runs):
        res = subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=str(ROOT),
            check=True,
        )
        rows.append(res.stdout.strip().splitlines()[-1].split())
    return rows


def photo_fit_seconds(runs: int = 5) -> dict[str, Any]:
    """Median seconds in fresh processes (Python's start and numpy's import not counted).

    ``load_avatar``: importing ``vlogger.engines.avatar`` and ``load_avatar(cache=False)`` on the
    default portrait (read, fit with the face, pose and hand models, rig), ``total_s`` their sum.
    ``landmarker``: importing the landmarker's own dependencies (onnxruntime, cv2), importing the
    package, loading the face models, one ``process()`` of the portrait (handed over as .npy);
    ``total_s`` their sum, ``without_package_import_s`` all but the package import."""
    avatar = np.array(
        [[float(v) for v in r[:2]] for r in _check_faces(_fresh_runs(_CHILD_AVATAR, [], runs), 2)]
    )
    img = load_rgb(PORTRAIT)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "img.npy"
        np.save(path, img)
        lm = np.array(
            [
                [float(v) for v in r[:4]]
                for r in _check_faces(_fresh_runs(_CHILD_LANDMARKER, [str(path)], runs), 4)
            ]
        )
    med = np.median(lm, axis=0)
    return {
        "load_avatar": {
            "import_s": float(np.median(avatar[:, 0])),
            "load_avatar_s": float(np.median(avatar[:, 1])),
            "total_s": float(np.median(avatar.sum(axis=1))),
        },
        "landmarker": {
            "deps_import_s": float(med[0]),
            "package_import_s": float(med[1]),
            "load_s": float(med[2]),
            "process_s": float(med[3]),
            "total_s": float(np.median(lm.sum(axis=1))),
            "without_package_import_s": float(np.median(lm[:, [0, 2, 3]].sum(axis=1))),
        },
        "runs": runs,
    }


def _check_faces(rows: list[list[str]], col: int) -> list[list[str]]:
    for r in rows:
        if int(r[col]) != 1:
            raise RuntimeError(f"the photo fit found {r[col]} faces")
    return rows


def _face_mesh_refined() -> Any:
    """mediapipe's FaceMesh(refine_landmarks=True) in video mode, or None without mediapipe."""
    try:
        import mediapipe as mp
    except ImportError:
        return None
    return mp.solutions.face_mesh.FaceMesh(static_image_mode=False, refine_landmarks=True)


def tracking_ms(data: Path, ref_dir: Path) -> dict[str, Any]:
    """Median (and p90) per-frame ms of tracking on the 256x256 timing frames: ours and, interleaved
    frame by frame (alternating which goes first), mediapipe's FaceMesh(refine_landmarks=True)."""
    from vlogger.engines.avatar.landmarks import FaceLandmarker
    from vlogger.engines.native_log import quiet_native_stderr

    frames = timing_frames(data)
    res: dict[str, Any] = {"frames": len(frames)}
    with quiet_native_stderr(), FaceLandmarker(static=False, threads=1) as fl:  # mediapipe's logs muted
        fm = _face_mesh_refined()
        have_mp = fm is not None
        if have_mp:  # warm up, then time a fresh tracker (as ours after reset())
            for img in frames[:10]:
                fm.process(img)
            fm.close()
            fm = _face_mesh_refined()
        for img in frames[:10]:
            fl.process(img)
        fl.reset()
        runners = {"ours_ms": fl.process} | ({"mediapipe_refine_true_ms": fm.process} if have_mp else {})
        ms: dict[str, list[float]] = {k: [] for k in runners}
        try:
            for i, img in enumerate(frames):
                order = list(runners.items())
                for name, run in order if i % 2 == 0 else order[::-1]:
                    t0 = time.perf_counter()
                    run(img)
                    ms[name].append((time.perf_counter() - t0) * 1e3)
        finally:
            if have_mp:
                fm.close()
    for name, v in ms.items():
        res[name] = float(np.median(v))
        res[name.replace("_ms", "_p90_ms")] = float(np.percentile(v, 90))
    if have_mp:
        res["mediapipe_source"] = "this run, interleaved frame by frame"
    else:
        path = ref_dir / "timing.json"
        if path.is_file():
            res["mediapipe_refine_true_ms"] = json.loads(path.read_text())["refine_true_ms_median"]
            res["mediapipe_source"] = "fit_reference.py timing.json (another run)"
    return res


def _cells(summary: dict[str, Any], cols: tuple[str, ...]) -> str:
    return "".join(f"{summary[r]['median']:>8.3f} /{summary[r]['p95']:>6.3f}" for r in cols)


def _table(result: dict[str, Any]) -> str:
    s = result["summary"]
    cols = (*REGIONS, "z", "aperture")
    lines = [
        "parity vs FaceMesh(refine_landmarks=True), % of the outer-eye-corner distance (median / p95):",
        f"{'group':24s}" + "".join(f"{r:>16s}" for r in (*REGIONS, "z", "openness*")),
    ]
    for g in GROUPS:
        lines.append(f"{g:24s}{_cells(s[g], cols)}")
    lines.append("(* eye openness difference in % of the eye width, not gated)")
    lines.append(f"detections: {result['detections']['all']}")
    verdict = "PASS" if result["gate"]["passed"] else "FAIL"
    lines.append(f"gate (median <= {GATE_MEDIAN} %, p95 <= {GATE_P95} % in every 2D region): {verdict}")
    st = result["step1_22de17e_recorded"]
    lines.append(f"step 1 (commit {st['commit']}, recorded, not recomputed; 468 mesh + iris models):")
    for key, label in (("gate", "vs refine=False+iris"), ("vs_refine_true", "vs refine=True")):
        rec = st[key]["summary"]["all"]
        cells = "".join(f"{rec[r][0]:>8.3f} /{rec[r][1]:>6.3f}" for r in REGIONS)
        lines.append(f"  {label:22s}{cells}")
    return "\n".join(lines)


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["summary"]
    step1 = result["step1_22de17e_recorded"]
    cols = (*REGIONS, "z")
    series = [(g, {r: (s[g][r]["median"], s[g][r]["p95"]) for r in cols}) for g in GROUPS[:3]]
    for key, label in (("vs_refine_true", "step 1 (22de17e) vs refine=True"),):
        rec = step1[key]["summary"]["all"]
        series.append((label, {r: tuple(rec[r]) if r in rec else (np.nan, np.nan) for r in cols}))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    x = np.arange(len(cols))
    width = 0.8 / len(series)
    for i, (label, vals) in enumerate(series):
        med = [vals[r][0] for r in cols]
        p95 = [vals[r][1] for r in cols]
        axes[0].bar(x + i * width, p95, width, alpha=0.35, color=f"C{i}")
        axes[0].bar(x + i * width, med, width, color=f"C{i}", label=label)
    axes[0].axhline(GATE_MEDIAN, color="k", ls="--", lw=0.8)
    axes[0].axhline(GATE_P95, color="k", ls=":", lw=0.8)
    axes[0].set_xticks(x + 0.4 - width / 2, cols)
    axes[0].set_yscale("log")
    axes[0].set_ylim(top=60)
    axes[0].set_ylabel("% of eye-corner distance (median solid, p95 light)")
    axes[0].legend(fontsize=7)
    axes[0].set_title(
        "ours vs FaceMesh(refine_landmarks=True) (gate: -- median 0.5 %, : p95 1.5 %)", fontsize=9
    )
    t = result["timing"]["tracking"]
    names = [k for k in ("ours_ms", "mediapipe_refine_true_ms") if k in t]
    names.append("step 1 ours (22de17e, recorded)")
    ms = [t[k] for k in names[:-1]] + [step1["timing"]["tracking_ours_ms"]]
    axes[1].barh(names, ms, color=["C0", "C1", "C7"][: len(names)])
    axes[1].axvline(8.0, color="k", ls="--", lw=0.8)
    axes[1].set_xlabel("ms per 256x256 frame, tracking, 1 core (target 8 ms)")
    p = result["timing"]["photo_fit"]
    lm = p["landmarker"]
    axes[1].set_title(
        f"fresh process: load_avatar(cache=False) {p['load_avatar']['total_s']:.2f} s; face landmarker "
        f"{lm['total_s']:.2f} s\n({lm['without_package_import_s']:.2f} s without the package import; "
        "target 0.4 s)",
        fontsize=8,
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
    result["step1_22de17e_recorded"] = STEP1_RECORDED
    if not args.no_timing:
        result["timing"] = {
            "photo_fit": photo_fit_seconds(),
            "tracking": tracking_ms(args.data, args.references),
        }
    table = _table(result)
    print(table)
    if "timing" in result:
        print("photo fit (fresh process):", json.dumps(result["timing"]["photo_fit"]))
        print("tracking per frame:", result["timing"]["tracking"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    if "timing" in result:
        _plot(result, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
