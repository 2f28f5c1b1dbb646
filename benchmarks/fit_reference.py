"""Record mediapipe's own face landmarks as references for ``landmarks.FaceLandmarker``.

Needs the ``mediapipe`` package (0.10.21; kept in the development environment for references only).
Per input it records, in pixels of the image:

- ``mesh`` (F, 468, 3) x, y, z: ``FaceMesh(refine_landmarks=False, max_num_faces=1)``, static on
  photos, tracking (video mode) over a clip's sampled frames, static on the clip's static subset.
- ``iris`` (F, 10, 2) and ``contours`` (F, 2, 71, 2) x, y: mediapipe's iris pipeline on those mesh
  landmarks. The python wheel does not register its subgraph (nor ImageCroppingCalculator or the
  TfLite* calculators it uses), so it is rebuilt from the registered generic calculators,
  mirroring ``iris_landmark_left_and_right_from_face_landmarks_cpu.pbtxt`` /
  ``iris_landmark_cpu.pbtxt`` / ``iris_landmark_landmarks_to_roi.pbtxt``: eye ROI
  (SplitNormalizedLandmarkList -> LandmarksToDetection -> DetectionsToRects -> RectTransformation
  x2.3) in one graph; then ImageTransformation (64x64 FIT, FLIP_HORIZONTALLY for the 362/263 eye)
  -> ImageToTensor [0, 1] (an identity warp of the 64x64 image: the TfLiteConverter step) ->
  InferenceCalculator(iris_landmark.tflite) -> TensorsToLandmarks (flip) ->
  LandmarkLetterboxRemoval -> LandmarkProjection in another. Only ImageCroppingCalculator's CPU
  crop between the two is done here in numpy (nearest neighbour at the rounded centre and size,
  corners onto 0..size-1, as image_cropping_calculator.cc). Iris order: 468-472 = the 33/133 eye
  (the person's right), 473-477 = the 362/263 eye; contours in UpdateFaceLandmarksCalculator order.
- ``refined`` (F, 478, 2) x, y and ``refined_z`` (F, 478) z: ``FaceMesh(refine_landmarks=True)``
  in the same mode (the attention model, which ``landmarks.FaceLandmarker`` runs); z as for
  ``mesh`` (normalised z times the image width).
- ``mp_ms`` (F,): FaceMesh(refine_landmarks=False) time per frame.

Values are float32 rounded to 1/64 pixel (NaN: no face).

Inputs (:func:`sources`): the shipped portrait, ``<data>/portraits/*.png``, 3 generated variants of
the shipped portrait (:func:`generated_images`), and per clip of ``<data>/video`` and
``<data>/real``: every 5th frame (at most ``--max-frames``, default 20) as one sequence in
tracking mode, plus every 25th frame (at most 4) in static mode. ``--timing`` also records
FaceMesh on the 256x256 timing frames (:func:`timing_frames`), tracking mode, refine False and
True, into ``timing.json``. The process is pinned to one core, so mediapipe's threads share it as
our ``threads=1`` does.

One npz per input goes to ``benchmarks/results/fit_reference/``; ``--test-data`` also writes the
references of the portrait and its variants to ``tests/data/fit_reference/face_*.npz``.

    python benchmarks/fit_reference.py [--data ../shared/data] [--test-data] [--timing]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "fit_reference"
TEST_DATA = ROOT / "tests" / "data" / "fit_reference"
PORTRAIT = ROOT / "engines" / "avatar" / "assets" / "default_portrait.png"
TRACK_STEP = 5
STATIC_STEP = 25
STATIC_MAX = 4
TIMING_CLIPS = ("interview_m1", "congress_m2", "bank_f3")
TIMING_FRAMES = 100
TIMING_SIDE = 256

__all__ = [
    "Input",
    "default_data",
    "generated_images",
    "load_rgb",
    "pin_one_core",
    "sources",
    "timing_frames",
]


def default_data() -> Path:
    """The shared data folder (``$VLOGGER_SHARED_DATA`` or ``../shared/data`` next to the repo)."""
    env = os.environ.get("VLOGGER_SHARED_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def pin_one_core() -> int:
    """Pin this process (and the threads it starts later) to one CPU core; returns the core."""
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[-1]})
    return cores[-1]


def load_rgb(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def generated_images(portrait: np.ndarray) -> dict[str, np.ndarray]:
    """Variants of the portrait, made the same way on any OpenCV version (the tests rebuild them).

    ``rot20``: rotated by 20 degrees about its centre, edges replicated; ``small``: halved (2x2
    means) and pasted off-centre into a 448x320 grey canvas;
    ``flip``: mirrored left-right.
    """
    from vlogger.engines.avatar.landmarks.warp import warp_perspective

    h, w = portrait.shape[:2]
    a = math.radians(20.0)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    c, s = math.cos(a), math.sin(a)
    rot = np.array([[c, s, cx - c * cx - s * cy], [-s, c, cy + s * cx - c * cy], [0, 0, 1]])
    rot20 = warp_perspective(portrait, rot, (w, h), "linear")
    q = portrait[: h // 2 * 2, : w // 2 * 2].astype(np.uint16)
    half = ((q[0::2, 0::2] + q[1::2, 0::2] + q[0::2, 1::2] + q[1::2, 1::2] + 2) // 4).astype(np.uint8)
    canvas = np.full((320, 448, 3), 128, dtype=np.uint8)
    canvas[40 : 40 + half.shape[0], 150 : 150 + half.shape[1]] = half
    return {
        "rot20": rot20,
        "small": canvas,
        "flip": np.ascontiguousarray(portrait[:, ::-1]),
    }


class Input:
    """One reference input: a photo (one frame) or a clip's frame sequence in one mode."""

    def __init__(self, name: str, mode: str, source: str, frames: list[int], path: Path | None = None):
        self.name = name
        self.mode = mode
        """"static" or "tracking"."""
        self.source = source
        self.frames = frames
        """Frame indices of a clip (``[0]`` for a photo)."""
        self.path = path
        self._image: np.ndarray | None = None

    def images(self) -> Iterator[np.ndarray]:
        """The RGB uint8 frames, in order."""
        if self._image is not None:
            yield self._image
            return
        if self.path is None:
            raise ValueError(f"{self.name} has no image")
        if self.path.suffix.lower() != ".mp4":
            yield load_rgb(self.path)
            return
        import av

        want = set(self.frames)
        with av.open(str(self.path)) as c:
            for i, frame in enumerate(c.decode(video=0)):
                if i in want:
                    yield np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
                if i >= self.frames[-1]:
                    break

    @classmethod
    def image(cls, name: str, source: str, image: np.ndarray) -> Input:
        """A photo given as pixels."""
        inp = cls(name, "static", source, [0])
        inp._image = image
        return inp


def _frame_count(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        n = int(c.streams.video[0].frames)
        return n if n > 0 else sum(1 for _ in c.decode(video=0))


def sources(data: Path | None, max_frames: int = 20, clips: bool = True) -> list[Input]:
    """All reference inputs: photos, the portrait's variants, clip sequences (see module doc)."""
    portrait = load_rgb(PORTRAIT)
    out = [Input("face_default_portrait", "static", "repo:" + str(PORTRAIT.relative_to(ROOT)), [0], PORTRAIT)]
    for key, img in generated_images(portrait).items():
        out.append(Input.image(f"face_portrait_{key}", f"generated:{key}", img))
    if data is None or not data.is_dir():
        return out
    for p in sorted((data / "portraits").glob("*.png")):
        out.append(Input(f"portrait_{p.stem}", "static", "data:" + str(p.relative_to(data)), [0], p))
    if not clips:
        return out
    for folder in ("video", "real"):
        for p in sorted((data / folder).glob("*.mp4")):
            n = _frame_count(p)
            src = "data:" + str(p.relative_to(data))
            track = list(range(0, n, TRACK_STEP))[:max_frames]
            out.append(Input(f"{folder}_{p.stem}_track", "tracking", src, track, p))
            static = list(range(0, n, STATIC_STEP))[:STATIC_MAX]
            out.append(Input(f"{folder}_{p.stem}_static", "static", src, static, p))
    return out


def timing_frames(data: Path, count: int = TIMING_FRAMES) -> list[np.ndarray]:
    """256x256 RGB frames for the tracking-cost timing: the first ``count`` frames of each of
    TIMING_CLIPS (``<data>/video``), centre square resized with INTER_AREA."""
    import av
    import cv2

    out = []
    for name in TIMING_CLIPS:
        with av.open(str(data / "video" / f"{name}.mp4")) as c:
            for i, frame in enumerate(c.decode(video=0)):
                if i >= count:
                    break
                img = frame.to_ndarray(format="rgb24")
                h, w = img.shape[:2]
                s = min(h, w)
                sq = img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
                out.append(cv2.resize(sq, (TIMING_SIDE, TIMING_SIDE), interpolation=cv2.INTER_AREA))
    return out


# -- mediapipe side ---------------------------------------------------------------------------------

_ROI_GRAPH = """
input_stream: "image"
input_stream: "face_landmarks"
output_stream: "roi_a"
output_stream: "roi_b"
node { calculator: "ImagePropertiesCalculator" input_stream: "IMAGE:image" output_stream: "SIZE:size" }
node {
  calculator: "SplitNormalizedLandmarkListCalculator"
  input_stream: "face_landmarks" output_stream: "corners_a"
  options { [mediapipe.SplitVectorCalculatorOptions.ext] {
    ranges { begin: 33 end: 34 } ranges { begin: 133 end: 134 } combine_outputs: true } }
}
node {
  calculator: "SplitNormalizedLandmarkListCalculator"
  input_stream: "face_landmarks" output_stream: "corners_b"
  options { [mediapipe.SplitVectorCalculatorOptions.ext] {
    ranges { begin: 362 end: 363 } ranges { begin: 263 end: 264 } combine_outputs: true } }
}
"""
_ROI_EYE = """
node { calculator: "LandmarksToDetectionCalculator" input_stream: "NORM_LANDMARKS:corners_{e}"
  output_stream: "DETECTION:det_{e}" }
node {
  calculator: "DetectionsToRectsCalculator" input_stream: "DETECTION:det_{e}" input_stream: "IMAGE_SIZE:size"
  output_stream: "NORM_RECT:raw_{e}"
  options { [mediapipe.DetectionsToRectsCalculatorOptions.ext] {
    rotation_vector_start_keypoint_index: 0 rotation_vector_end_keypoint_index: 1
    rotation_vector_target_angle_degrees: 0 } }
}
node {
  calculator: "RectTransformationCalculator" input_stream: "NORM_RECT:raw_{e}" input_stream: "IMAGE_SIZE:size"
  output_stream: "roi_{e}"
  options { [mediapipe.RectTransformationCalculatorOptions.ext] {
    scale_x: 2.3 scale_y: 2.3 square_long: true } }
}
"""
_EYE_GRAPH = """
input_stream: "eye_image"
input_stream: "roi"
input_stream: "flip"
output_stream: "iris"
output_stream: "contour"
node {
  calculator: "ImageTransformationCalculator"
  input_stream: "IMAGE:eye_image" input_stream: "FLIP_HORIZONTALLY:flip"
  output_stream: "IMAGE:eye64" output_stream: "LETTERBOX_PADDING:padding"
  options { [mediapipe.ImageTransformationCalculatorOptions.ext] {
    output_width: 64 output_height: 64 scale_mode: FIT } }
}
node {
  calculator: "ImageToTensorCalculator" input_stream: "IMAGE:eye64" output_stream: "TENSORS:tensor"
  options { [mediapipe.ImageToTensorCalculatorOptions.ext] {
    output_tensor_width: 64 output_tensor_height: 64 output_tensor_float_range { min: 0 max: 1 } } }
}
node {
  calculator: "InferenceCalculator" input_stream: "TENSORS:tensor" output_stream: "TENSORS:out"
  options { [mediapipe.InferenceCalculatorOptions.ext] { model_path: "MODEL" delegate { xnnpack {} } } }
}
node {
  calculator: "SplitTensorVectorCalculator" input_stream: "out" output_stream: "eye_t" output_stream: "iris_t"
  options { [mediapipe.SplitVectorCalculatorOptions.ext] {
    ranges { begin: 0 end: 1 } ranges { begin: 1 end: 2 } } }
}
node {
  calculator: "TensorsToLandmarksCalculator"
  input_stream: "TENSORS:iris_t" input_stream: "FLIP_HORIZONTALLY:flip"
  output_stream: "NORM_LANDMARKS:iris_lm"
  options { [mediapipe.TensorsToLandmarksCalculatorOptions.ext] {
    num_landmarks: 5 input_image_width: 64 input_image_height: 64 } }
}
node {
  calculator: "TensorsToLandmarksCalculator"
  input_stream: "TENSORS:eye_t" input_stream: "FLIP_HORIZONTALLY:flip"
  output_stream: "NORM_LANDMARKS:eye_lm"
  options { [mediapipe.TensorsToLandmarksCalculatorOptions.ext] {
    num_landmarks: 71 input_image_width: 64 input_image_height: 64 } }
}
node {
  calculator: "LandmarkLetterboxRemovalCalculator" input_stream: "LANDMARKS:0:iris_lm"
  input_stream: "LANDMARKS:1:eye_lm" input_stream: "LETTERBOX_PADDING:padding"
  output_stream: "LANDMARKS:0:iris_p" output_stream: "LANDMARKS:1:eye_p"
}
node {
  calculator: "LandmarkProjectionCalculator" input_stream: "NORM_LANDMARKS:0:iris_p"
  input_stream: "NORM_LANDMARKS:1:eye_p" input_stream: "NORM_RECT:roi"
  output_stream: "NORM_LANDMARKS:0:iris" output_stream: "NORM_LANDMARKS:1:contour"
}
"""


def _c_round(v: float) -> int:
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def crop_like_image_cropping_calculator(image: np.ndarray, roi: Any) -> np.ndarray:
    """ImageCroppingCalculator::RenderCpu for a NormalizedRect ROI (BORDER_REPLICATE).

    Centre and size rounded to whole pixels; the rotated rect's corners (cv::boxPoints order) map to
    (0, h-1), (0, 0), (w-1, 0), (w-1, h-1); nearest-neighbour sampling as OpenCV 4's
    warpPerspective: the source position of each output pixel, rounded half to even.
    """
    import cv2

    ih, iw = image.shape[:2]
    cx, cy = _c_round(roi.x_center * iw), _c_round(roi.y_center * ih)
    w, h = max(1, _c_round(roi.width * iw)), max(1, _c_round(roi.height * ih))
    src = cv2.boxPoints(((cx, cy), (w, h), roi.rotation * 180.0 / math.pi)).astype(np.float32)
    dst = np.array([[0, h - 1], [0, 0], [w - 1, 0], [w - 1, h - 1]], dtype=np.float32)
    inv = np.linalg.inv(cv2.getPerspectiveTransform(src, dst))
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    p = np.stack([gx, gy, np.ones_like(gx)], axis=-1) @ inv.T
    x = np.clip(np.rint(p[..., 0] / p[..., 2]).astype(np.int64), 0, iw - 1)
    y = np.clip(np.rint(p[..., 1] / p[..., 2]).astype(np.int64), 0, ih - 1)
    return np.ascontiguousarray(image[y, x])


class _Graph:
    """A CalculatorGraph run packet by packet, collecting the outputs of each timestamp."""

    def __init__(self, config: str, outputs: list[str]):
        import mediapipe as mp

        self.mp = mp
        self.graph = mp.CalculatorGraph(graph_config=config)
        self.out: dict[str, Any] = {}
        for name in outputs:
            self.graph.observe_output_stream(name, lambda s, p: self.out.__setitem__(s, p))
        self.graph.start_run()
        self.ts = 0

    def run(self, packets: dict[str, Any]) -> dict[str, Any]:
        self.out = {}
        self.ts += 1
        for name, packet in packets.items():
            self.graph.add_packet_to_input_stream(name, packet.at(self.ts))
        self.graph.wait_until_idle()
        return self.out

    def close(self) -> None:
        self.graph.close()


class IrisReference:
    """mediapipe's iris pipeline rebuilt from registered calculators (see the module docstring)."""

    def __init__(self) -> None:
        import mediapipe

        model = Path(mediapipe.__file__).parent / "modules" / "iris_landmark" / "iris_landmark.tflite"
        roi = _ROI_GRAPH + _ROI_EYE.replace("{e}", "a") + _ROI_EYE.replace("{e}", "b")
        self.roi = _Graph(roi, ["roi_a", "roi_b"])
        self.eye = _Graph(_EYE_GRAPH.replace("MODEL", str(model)), ["iris", "contour"])

    def close(self) -> None:
        self.roi.close()
        self.eye.close()

    def run(self, image: np.ndarray, face_landmarks: Any) -> tuple[np.ndarray, np.ndarray]:
        """(iris (10, 3), contours (2, 71, 3)) normalised, for one NormalizedLandmarkList."""
        mp = self.roi.mp
        frame_packet = mp.packet_creator.create_image_frame(image_format=mp.ImageFormat.SRGB, data=image)
        rois = self.roi.run(
            {"image": frame_packet, "face_landmarks": mp.packet_creator.create_proto(face_landmarks)}
        )
        iris, contours = [], []
        for key, flip in (("roi_a", False), ("roi_b", True)):
            roi = mp.packet_getter.get_proto(rois[key])
            crop = crop_like_image_cropping_calculator(image, roi)
            res = self.eye.run(
                {
                    "eye_image": mp.packet_creator.create_image_frame(
                        image_format=mp.ImageFormat.SRGB, data=crop
                    ),
                    "roi": mp.packet_creator.create_proto(roi),
                    "flip": mp.packet_creator.create_bool(flip),
                }
            )
            for out, stream in ((iris, "iris"), (contours, "contour")):
                lms = mp.packet_getter.get_proto(res[stream]).landmark
                out.append(np.array([(p.x, p.y, p.z) for p in lms], dtype=np.float64))
        return np.concatenate(iris), np.stack(contours)


def _face_mesh(static: bool, refine: bool) -> Any:
    import mediapipe as mp

    return mp.solutions.face_mesh.FaceMesh(
        static_image_mode=static,
        max_num_faces=1,
        refine_landmarks=refine,
        min_detection_confidence=0.5,
        min_tracking_confidence=0.5,
    )


def _to_px(lms: Any, w: int, h: int) -> np.ndarray:
    return np.array([(p.x * w, p.y * h, p.z * w) for p in lms.landmark], dtype=np.float64)


def record(inp: Input) -> dict[str, np.ndarray]:
    """Run FaceMesh (refine False and True) and the iris reference over one input."""
    static = inp.mode == "static"
    rec: dict[str, list[np.ndarray]] = {k: [] for k in ("mesh", "iris", "contours", "refined", "mp_ms")}
    mesh_fm, refined_fm, iris_ref = _face_mesh(static, False), _face_mesh(static, True), IrisReference()
    shape = (0, 0, 3)
    try:
        for img in inp.images():
            h, w = img.shape[:2]
            shape = img.shape
            scale = np.array([w, h, w], dtype=np.float64)
            t0 = time.perf_counter()
            r = mesh_fm.process(img)
            rec["mp_ms"].append(np.array((time.perf_counter() - t0) * 1e3))
            if r.multi_face_landmarks:
                lms = r.multi_face_landmarks[0]
                rec["mesh"].append(_to_px(lms, w, h))
                iris, contours = iris_ref.run(img, lms)
                rec["iris"].append(iris * scale)
                rec["contours"].append(contours * scale)
            else:
                rec["mesh"].append(np.full((468, 3), np.nan))
                rec["iris"].append(np.full((10, 3), np.nan))
                rec["contours"].append(np.full((2, 71, 3), np.nan))
            r = refined_fm.process(img)
            found = bool(r.multi_face_landmarks)
            rec["refined"].append(
                _to_px(r.multi_face_landmarks[0], w, h) if found else np.full((478, 3), np.nan)
            )
    finally:
        mesh_fm.close()
        refined_fm.close()
        iris_ref.close()
    # float32 rounded to 1/64 px (compresses well; far below the parity tolerances); x, y only
    # but for the two meshes
    out = {k: (np.round(np.stack(v) * 64) / 64).astype(np.float32) for k, v in rec.items()}
    out["refined_z"] = np.ascontiguousarray(out["refined"][..., 2])
    for k in ("iris", "contours", "refined"):
        out[k] = np.ascontiguousarray(out[k][..., :2])
    out.update(
        mode=np.array(inp.mode),
        source=np.array(inp.source),
        frames=np.array(inp.frames, dtype=np.int32),
        image_shape=np.array(shape, dtype=np.int32),
    )
    return out


def record_timing(data: Path) -> dict[str, Any]:
    """FaceMesh per-frame ms (median) on the timing frames, tracking mode, refine False / True."""
    frames = timing_frames(data)
    res: dict[str, Any] = {"frames": len(frames), "side": TIMING_SIDE, "clips": list(TIMING_CLIPS)}
    for refine in (False, True):
        fm = _face_mesh(False, refine)
        try:
            for img in frames[:10]:
                fm.process(img)  # warm up
            fm.close()
            fm = _face_mesh(False, refine)
            ms = []
            for img in frames:
                t0 = time.perf_counter()
                fm.process(img)
                ms.append((time.perf_counter() - t0) * 1e3)
        finally:
            fm.close()
        res[f"refine_{str(refine).lower()}_ms_median"] = float(np.median(ms))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--max-frames", type=int, default=20, help="tracked frames per clip")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--only", nargs="*", default=None, help="input names to (re)record")
    ap.add_argument("--no-clips", action="store_true", help="photos only")
    ap.add_argument("--test-data", action="store_true", help="also write tests/data/fit_reference/face_*")
    ap.add_argument("--timing", action="store_true", help="also time FaceMesh on the timing frames")
    args = ap.parse_args()

    import json

    from vlogger.engines.native_log import quiet_native_stderr

    core = pin_one_core()
    srcs = sources(args.data, args.max_frames, clips=not args.no_clips)
    if args.only:
        srcs = [s for s in srcs if s.name in args.only]
    print(f"{len(srcs)} inputs, pinned to core {core}")
    args.out.mkdir(parents=True, exist_ok=True)
    for inp in srcs:
        t0 = time.perf_counter()
        with quiet_native_stderr():
            rec = record(inp)
        np.savez_compressed(args.out / f"{inp.name}.npz", **rec)
        found = int(np.isfinite(rec["mesh"][:, 0, 0]).sum())
        print(
            f"{inp.name:44s} {inp.mode:8s} {found:3d}/{len(inp.frames):3d} faces  "
            f"FaceMesh {np.median(rec['mp_ms']):.1f} ms/frame  ({time.perf_counter() - t0:.1f} s)"
        )
        if args.test_data and inp.name.startswith("face_"):
            TEST_DATA.mkdir(parents=True, exist_ok=True)
            keep = {k: v for k, v in rec.items() if k != "mp_ms"}
            np.savez_compressed(TEST_DATA / f"{inp.name}.npz", **keep)
    if args.timing:
        with quiet_native_stderr():
            timing = record_timing(args.data)
        (args.out / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")
        print("timing", timing)


if __name__ == "__main__":
    main()
