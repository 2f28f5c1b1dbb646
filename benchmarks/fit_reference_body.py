"""Record mediapipe's own Pose and Hands outputs (static image mode) as references for our port.

``vlogger.engines.avatar.landmarks.body`` runs mediapipe's pose and hand models without mediapipe;
this script (which needs the ``mediapipe`` package, kept in the development environment for
references only) records what mediapipe 0.10.21 itself returns, with the same settings as the old
``Fitter``: ``Pose(static_image_mode=True, model_complexity=1, enable_segmentation=False)`` and
``Hands(static_image_mode=True, max_num_hands=2, model_complexity=1)``, detection confidence 0.5.
The graphs are the wheel's compiled top-level graphs run through ``SolutionBase`` with extra
outputs (the pose detection, the ROIs, the palm detections) so each stage can be compared.

Images: the shipped default portrait, its 3 generated variants (``fit_reference.generated_images``:
rotated 20 degrees, halved on a grey canvas, mirrored), ``<data>/portraits/*.png``, 9 frames
(evenly spaced, the middle one included) of each ``<data>/video/*.mp4`` (upper and full bodies:
most of the hands) and 3 of each ``<data>/real/*.mp4`` (decoded with PyAV). One npz per image goes
to ``benchmarks/results/fit_reference_body/<name>.npz``. ``--test-data`` also writes the small
references the tests use to ``tests/data/fit_reference/body_*.npz`` (float32, the keys the tests
read): the shipped portrait and its variants, one frame with a hand (its numbers only, never the
frame) and every palm detection with mediapipe's hand ROI (``body_palm_rois.npz``).

Timings: each graph runs each image twice (the first call warms it); the second is timed. The
process is pinned to one CPU core (``sched_setaffinity``) so mediapipe's XNNPACK threads share one
core, like our ``threads=1``.

    python benchmarks/fit_reference_body.py [--data ../shared/data] [--test-data]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "fit_reference_body"
TEST_DATA = ROOT / "tests" / "data" / "fit_reference"
#: The reference images copied (as numbers) into the tests: the shipped portrait, its variants and a
#: frame with a hand.
TEST_IMAGES = (
    "default_portrait",
    "generated_rot20",
    "generated_small",
    "generated_flip",
    "video_silent_fullbody_f5_f275",
)
TEST_KEYS = (
    "image_shape", "source", "frame", "pose_found", "pose_xy", "pose_vis", "pose_det_score", "pose_det_kp",
    "pose_roi", "hand_xy", "hand_label", "hand_score", "palm_score", "palm_roi",
)  # fmt: skip
PORTRAIT = ROOT / "engines" / "avatar" / "assets" / "default_portrait.png"
CONFIDENCE = 0.5

__all__ = [
    "MediapipeReference",
    "decode_frame",
    "default_data",
    "generated",
    "load_image",
    "pin_one_core",
    "sources",
]


def default_data() -> Path:
    """The shared data folder (``$VLOGGER_SHARED_DATA`` or ``../shared/data`` next to the repo)."""
    env = os.environ.get("VLOGGER_SHARED_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def pin_one_core() -> int:
    """Pin this process (and the threads it starts later) to one CPU core; returns the core."""
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[0]})
    return cores[0]


def _frame_count(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        n = int(c.streams.video[0].frames)
        if n > 0:
            return n
        return sum(1 for _ in c.decode(video=0))


def decode_frame(path: Path, index: int) -> np.ndarray:
    """Frame ``index`` (decode order) of a video as RGB uint8."""
    import av

    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i == index:
                return np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
    raise IndexError(f"{path} has no frame {index}")


def generated(name: str) -> np.ndarray:
    """A generated variant of the shipped portrait: ``generated_<rot20|small|flip>``."""
    from fit_reference import generated_images

    return generated_images(load_image(PORTRAIT))[name.removeprefix("generated_")]


def load_image(path: str | Path, frame: int = -1) -> np.ndarray:
    """An RGB uint8 image: a PNG/JPEG file (``frame`` < 0), frame ``frame`` of a video, or (``path``
    ``generated_<variant>``) a generated variant of the portrait."""
    path = Path(path)
    if path.name.startswith("generated_"):
        return generated(path.name)
    if frame >= 0:
        return decode_frame(path, frame)
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def sources(data: Path, video_frames: int = 9, real_frames: int = 3) -> list[tuple[str, Path, int]]:
    """(name, path, frame index or -1) of every reference image from a file (see :func:`load_image`)."""
    out: list[tuple[str, Path, int]] = [("default_portrait", PORTRAIT, -1)]
    out += [(f"generated_{k}", Path(f"generated_{k}"), -1) for k in ("rot20", "small", "flip")]
    for p in sorted((data / "portraits").glob("*.png")):
        out.append((f"portrait_{p.stem}", p, -1))
    for folder, frames in (("video", video_frames), ("real", real_frames)):
        for p in sorted((data / folder).glob("*.mp4")):
            n = _frame_count(p)
            for k in range(frames):
                idx = min(n - 1, int(n * (2 * k + 1) / (2 * frames)))
                out.append((f"{folder}_{p.stem}_f{idx}", p, idx))
    return out


def _rect(r: Any) -> np.ndarray:
    if r is None:
        return np.full(5, np.nan)
    return np.array([r.x_center, r.y_center, r.width, r.height, r.rotation], dtype=np.float64)


def _detection(d: Any) -> tuple[float, np.ndarray, np.ndarray]:
    """(score, [xmin, ymin, w, h], keypoints (k, 2)) of a Detection proto, normalized."""
    b = d.location_data.relative_bounding_box
    kp = np.array([(k.x, k.y) for k in d.location_data.relative_keypoints], dtype=np.float64)
    return float(d.score[0]), np.array([b.xmin, b.ymin, b.width, b.height]), kp


class MediapipeReference:
    """mediapipe's Pose and Hands graphs (static mode) with the intermediate outputs exposed."""

    def __init__(self, confidence: float = CONFIDENCE) -> None:
        from mediapipe.python.solution_base import SolutionBase

        self.pose = SolutionBase(
            binary_graph_path="mediapipe/modules/pose_landmark/pose_landmark_cpu.binarypb",
            side_inputs={
                "model_complexity": 1,
                "smooth_landmarks": False,
                "enable_segmentation": False,
                "smooth_segmentation": False,
                "use_prev_landmarks": False,
            },
            calculator_params={
                "posedetectioncpu__TensorsToDetectionsCalculator.min_score_thresh": confidence,
                "poselandmarkbyroicpu__tensorstoposelandmarksandsegmentation__ThresholdingCalculator"
                ".threshold": 0.5,
            },
            outputs=["pose_landmarks", "pose_detection", "pose_rect_from_detection"],
        )
        self.hands = SolutionBase(
            binary_graph_path="mediapipe/modules/hand_landmark/hand_landmark_tracking_cpu.binarypb",
            side_inputs={"model_complexity": 1, "num_hands": 2, "use_prev_landmarks": False},
            calculator_params={
                "palmdetectioncpu__TensorsToDetectionsCalculator.min_score_thresh": confidence,
                "handlandmarkcpu__ThresholdingCalculator.threshold": 0.5,
            },
            outputs=[
                "multi_hand_landmarks",
                "multi_handedness",
                "palm_detections",
                "hand_rects_from_palm_detections",
            ],
        )

    def close(self) -> None:
        self.pose.close()
        self.hands.close()

    def record(self, img: np.ndarray) -> dict[str, Any]:
        """Every output for one RGB uint8 image (pixels for landmarks, normalized for the rest)."""
        h, w = img.shape[:2]
        rec: dict[str, Any] = {"image_shape": np.array(img.shape)}
        self.pose.process(img)  # warm-up (the first call of a graph is slower)
        t0 = time.perf_counter()
        r = self.pose.process(img)
        rec["pose_ms"] = (time.perf_counter() - t0) * 1e3
        found = r.pose_landmarks is not None
        rec["pose_found"] = found
        lm = np.array(
            [(p.x, p.y, p.z, p.visibility, p.presence) for p in r.pose_landmarks.landmark]
            if found
            else np.full((33, 5), np.nan),
            dtype=np.float64,
        )
        rec["pose_xy"] = lm[:, :2] * np.array([w, h])
        rec["pose_vis"] = lm[:, 3]
        rec["pose_presence"] = lm[:, 4]
        rec["pose_z"] = lm[:, 2]
        if r.pose_detection is not None:
            s, box, kp = _detection(r.pose_detection)
        else:
            s, box, kp = np.nan, np.full(4, np.nan), np.full((4, 2), np.nan)
        rec["pose_det_score"], rec["pose_det_box"], rec["pose_det_kp"] = s, box, kp
        rec["pose_roi"] = _rect(r.pose_rect_from_detection)

        self.hands.process(img)
        t0 = time.perf_counter()
        r = self.hands.process(img)
        rec["hands_ms"] = (time.perf_counter() - t0) * 1e3
        hands = list(r.multi_hand_landmarks or [])
        hd = list(r.multi_handedness or [])
        rec["hand_xy"] = np.array(
            [[(p.x * w, p.y * h) for p in hl.landmark] for hl in hands], dtype=np.float64
        ).reshape(len(hands), 21, 2)
        rec["hand_label"] = np.array([c.classification[0].label for c in hd], dtype="U5")
        rec["hand_score"] = np.array([c.classification[0].score for c in hd], dtype=np.float64)
        palms = [_detection(d) for d in (r.palm_detections or [])]
        rec["palm_score"] = np.array([p[0] for p in palms], dtype=np.float64)
        rec["palm_box"] = np.array([p[1] for p in palms], dtype=np.float64).reshape(-1, 4)
        rec["palm_kp"] = np.array([p[2] for p in palms], dtype=np.float64).reshape(-1, 7, 2)
        rois = list(r.hand_rects_from_palm_detections or [])
        rec["palm_roi"] = np.array([_rect(q) for q in rois], dtype=np.float64).reshape(-1, 5)
        return rec


def _small(v: Any) -> Any:
    a = np.asarray(v)
    return a.astype(np.float32) if a.dtype == np.float64 else a


def _save(path: Path, rec: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **rec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--video-frames", type=int, default=9, help="frames per <data>/video clip (odd)")
    ap.add_argument("--real-frames", type=int, default=3, help="frames per <data>/real clip (odd)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--test-data", action="store_true", help="also write tests/data/fit_reference/")
    args = ap.parse_args()

    core = pin_one_core()
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))  # fit_reference.generated_images
    from vlogger.engines.native_log import quiet_native_stderr

    srcs = sources(args.data, args.video_frames, args.real_frames)
    print(f"{len(srcs)} images, pinned to core {core}")
    with quiet_native_stderr():
        ref = MediapipeReference()
    palms: dict[str, list[np.ndarray]] = {"box": [], "kp": [], "roi": [], "size": []}
    try:
        for name, path, frame in srcs:
            img = load_image(path, frame)
            with quiet_native_stderr():
                rec = ref.record(img)
            if path.is_relative_to(args.data):
                rec["source"], rec["source_root"] = str(path.relative_to(args.data)), "data"
            elif path.is_absolute():
                rec["source"], rec["source_root"] = str(path.relative_to(ROOT)), "repo"
            else:
                rec["source"], rec["source_root"] = str(path), "generated"
            rec["frame"] = frame
            _save(args.out / f"{name}.npz", rec)
            print(
                f"{name:44s} pose {'yes' if rec['pose_found'] else 'no ':3s} hands {len(rec['hand_label'])} "
                f"palms {len(rec['palm_score'])}  {rec['pose_ms']:.1f} + {rec['hands_ms']:.1f} ms"
            )
            if args.test_data and name in TEST_IMAGES:
                _save(TEST_DATA / f"body_{name}.npz", {k: _small(rec[k]) for k in TEST_KEYS})
            for i in range(len(rec["palm_score"])):
                palms["box"].append(rec["palm_box"][i])
                palms["kp"].append(rec["palm_kp"][i])
                palms["roi"].append(rec["palm_roi"][i])
                palms["size"].append(np.array(img.shape[1::-1]))
    finally:
        ref.close()
    if args.test_data:  # mediapipe's hand ROI of every palm it found: the ROI math without the images
        _save(TEST_DATA / "body_palm_rois.npz", {k: np.array(v, dtype=np.float32) for k, v in palms.items()})


if __name__ == "__main__":
    main()
