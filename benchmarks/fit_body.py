"""Parity of our pose and hand landmarkers (``landmarks.body``) with mediapipe 0.10.21 itself.

Reads the references ``benchmarks/fit_reference_body.py`` recorded (mediapipe Pose and Hands,
static image mode, in ``benchmarks/results/fit_reference_body/*.npz``), runs
``PoseLandmarker`` / ``HandLandmarker`` (threads=1, the process pinned to one core like the
reference run) on the same images and reports (:func:`body_parity`):

- pose: found / not found agreement; 2D keypoint error of the 33 landmarks in % of mediapipe's
  shoulder distance (landmarks 11-12) and of the image diagonal (median over all landmarks of all
  images, the median of the per-image medians, p95, max); visibility agreement (``>= 0.5`` on both
  sides); the largest ROI difference (normalised units);
- hands: images with the same number of hands, labels that agree, keypoint error in % of the hand
  size (the diagonal of mediapipe's 21 landmarks' bounding box);
- timings: ms per photo, ours (each image twice, the second timed) and mediapipe's (recorded the
  same way by the reference run), medians.

    python benchmarks/fit_body.py [--refs benchmarks/results/fit_reference_body] [--out results/fit_body.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REFS = HERE / "results" / "fit_reference_body"
OUT = HERE / "results" / "fit_body.json"

__all__ = ["body_parity"]


def _stats(values: list[float] | np.ndarray) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    return {
        "n": int(a.size),
        "median": float(np.median(a)),
        "p95": float(np.percentile(a, 95)),
        "max": float(a.max()),
    }


def _image(rec: Any, data: Path) -> np.ndarray | None:
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))  # sibling scripts: fit_reference_body, fit_reference
    from fit_reference_body import load_image

    root = str(rec["source_root"])
    src = Path(str(rec["source"]))
    path = {"data": data / src, "repo": ROOT / src}.get(root, src)
    if root in ("data", "repo") and not path.exists():
        return None
    return load_image(path, int(rec["frame"]))


def _timed(fn: Any, img: np.ndarray) -> tuple[Any, float]:
    fn(img)  # warm-up, as the reference run
    t0 = time.perf_counter()
    res = fn(img)
    return res, (time.perf_counter() - t0) * 1e3


def _pair_hands(ours: list[Any], ref_xy: np.ndarray) -> list[tuple[int, int]]:
    """Greedy pairs (ours, reference) by wrist distance."""
    pairs: list[tuple[int, int]] = []
    free = set(range(len(ref_xy)))
    for i, h in enumerate(ours):
        if not free:
            break
        j = min(free, key=lambda k: float(np.linalg.norm(h.xy[0] - ref_xy[k][0])))
        pairs.append((i, j))
        free.discard(j)
    return pairs


def body_parity(
    refs: Path = REFS, data: Path | None = None, threads: int = 1, pin: bool = True
) -> dict[str, Any]:
    """Compare our landmarkers with the recorded mediapipe references; returns the report (see module doc)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from fit_reference_body import default_data, pin_one_core

    from vlogger.engines.avatar.landmarks.body import HandLandmarker, PoseLandmarker

    files = sorted(Path(refs).glob("*.npz"))
    if not files:
        raise FileNotFoundError(
            f"no references in {refs}: run benchmarks/fit_reference_body.py (needs mediapipe)"
        )
    data = data or default_data()
    core = pin_one_core() if pin else None
    pose = PoseLandmarker(threads=threads)
    hands = HandLandmarker(max_hands=2, threads=threads)
    skipped: list[str] = []
    both = neither = 0
    only_mp: list[str] = []
    only_ours: list[str] = []
    err_sh: list[float] = []
    err_diag: list[float] = []
    per_image_sh: list[float] = []
    vis_agree: list[bool] = []
    roi_diff: list[float] = []
    hand_counts_agree = 0
    hand_count_mismatch: list[str] = []
    labels_agree = 0
    hands_compared = 0
    hand_err: list[float] = []
    per_hand_median: list[float] = []
    t_ours: dict[str, list[float]] = {"pose": [], "hands": []}
    t_mp: dict[str, list[float]] = {"pose": [], "hands": []}
    for f in files:
        rec = np.load(f)
        img = _image(rec, data)
        if img is None:
            skipped.append(f.stem)
            continue
        h, w = img.shape[:2]
        diag = float(np.hypot(w, h))
        res, ms = _timed(pose.detect, img)
        t_ours["pose"].append(ms)
        t_mp["pose"].append(float(rec["pose_ms"]))
        mp_found = bool(rec["pose_found"])
        if res is not None and mp_found:
            both += 1
            ref = rec["pose_xy"]
            e = np.linalg.norm(res.xy - ref, axis=1)
            sh = float(np.linalg.norm(ref[11] - ref[12]))
            err_sh += list(e / sh * 100.0)
            err_diag += list(e / diag * 100.0)
            per_image_sh.append(float(np.median(e) / sh * 100.0))
            vis_agree += list((res.visibility >= 0.5) == (rec["pose_vis"] >= 0.5))
            r = res.roi
            ours_roi = np.array([r.x_center, r.y_center, r.width, r.height, r.rotation])
            roi_diff.append(float(np.abs(ours_roi - rec["pose_roi"]).max()))
        elif res is None and not mp_found:
            neither += 1
        elif mp_found:
            only_mp.append(f.stem)
        else:
            only_ours.append(f.stem)

        hs, ms = _timed(hands.detect, img)
        t_ours["hands"].append(ms)
        t_mp["hands"].append(float(rec["hands_ms"]))
        ref_xy = rec["hand_xy"]
        if len(hs) == len(ref_xy):
            hand_counts_agree += 1
        else:
            hand_count_mismatch.append(f"{f.stem}: ours {len(hs)}, mediapipe {len(ref_xy)}")
        for i, j in _pair_hands(hs, ref_xy):
            hands_compared += 1
            labels_agree += int(hs[i].label == str(rec["hand_label"][j]))
            size = float(np.linalg.norm(ref_xy[j].max(axis=0) - ref_xy[j].min(axis=0)))
            e = np.linalg.norm(hs[i].xy - ref_xy[j], axis=1) / size * 100.0
            hand_err += list(e)
            per_hand_median.append(float(np.median(e)))
    n = len(files) - len(skipped)
    med = {k: float(np.median(v)) if v else float("nan") for k, v in t_ours.items()}
    med_mp = {k: float(np.median(v)) if v else float("nan") for k, v in t_mp.items()}
    return {
        "images": n,
        "skipped_missing_source": skipped,
        "pinned_core": core,
        "pose": {
            "found_agreement": (both + neither) / n if n else float("nan"),
            "found_both": both,
            "found_neither": neither,
            "only_mediapipe": only_mp,
            "only_ours": only_ours,
            "error_pct_shoulder": _stats(err_sh) | {"median_of_image_medians": _median(per_image_sh)},
            "error_pct_diagonal": _stats(err_diag),
            "visibility_agreement": float(np.mean(vis_agree)) if vis_agree else float("nan"),
            "roi_max_abs_diff": max(roi_diff) if roi_diff else float("nan"),
        },
        "hands": {
            "count_agreement": hand_counts_agree / n if n else float("nan"),
            "count_mismatches": hand_count_mismatch,
            "hands_compared": hands_compared,
            "label_agreement": labels_agree / hands_compared if hands_compared else float("nan"),
            "error_pct_hand_size": _stats(hand_err) | {"median_of_hand_medians": _median(per_hand_median)},
        },
        "timing_ms_per_photo": {
            "threads": threads,
            "ours": med | {"total": med["pose"] + med["hands"]},
            "mediapipe": med_mp | {"total": med_mp["pose"] + med_mp["hands"]},
        },
    }


def _median(v: list[float]) -> float:
    return float(np.median(v)) if v else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--refs", type=Path, default=REFS)
    ap.add_argument("--data", type=Path, default=None, help="shared data folder (default ../shared/data)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    report = body_parity(args.refs, args.data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    p, hd, t = report["pose"], report["hands"], report["timing_ms_per_photo"]
    es, ed, eh = p["error_pct_shoulder"], p["error_pct_diagonal"], hd["error_pct_hand_size"]
    print(f"{report['images']} images ({len(report['skipped_missing_source'])} skipped: source missing)")
    print(
        f"pose: found agreement {p['found_agreement']:.3f}; error in % of the shoulder distance: "
        f"median {es.get('median', 0):.4f}, p95 {es.get('p95', 0):.4f}, max {es.get('max', 0):.3f}"
    )
    print(
        f"      error in % of the diagonal: median {ed.get('median', 0):.5f}, max {ed.get('max', 0):.4f}; "
        f"visibility agreement {p['visibility_agreement']:.4f}; ROI max diff {p['roi_max_abs_diff']:.2e}"
    )
    print(
        f"hands: count agreement {hd['count_agreement']:.3f}, {hd['hands_compared']} compared, "
        f"labels agree {hd['label_agreement']:.3f}; error in % of the hand size: "
        f"median {eh.get('median', 0):.4f}, max {eh.get('max', 0):.4f}"
    )
    print(
        f"ms/photo (1 thread): ours pose {t['ours']['pose']:.1f} hands {t['ours']['hands']:.1f}; "
        f"mediapipe pose {t['mediapipe']['pose']:.1f} hands {t['mediapipe']['hands']:.1f}"
    )
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
