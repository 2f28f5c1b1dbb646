"""Real talking-head clips -> motion targets fitted from their own landmarks (corpus ``clips``).

For each clip with sound in ``../shared/data/video`` and ``../shared/data/real`` (:func:`clip_paths`;
speakers named by :func:`speaker_of`, for speaker-disjoint folds): decode the video (PyAV), run mediapipe
FaceMesh (478 points, tracking mode) on every frame, resample the landmarks to 25 fps BY
TIMESTAMPS (linear interpolation; frames far from any detection are filled from the nearest),
take the most neutral frame (mouth closed, eyes open) as the clip's avatar and build its
:class:`~vlogger.engines.avatar.Rig`, then fit every frame into that rig (:class:`RigFitter`):

1. head: a similarity Procrustes on stable points (eye corners, nose bridge and tip, forehead,
   temples) between the rig's points (with the current expression) and the frame's back-projected
   3D landmarks;
2. expression: the frame's points mapped back into the reference head frame, minus the rest face,
   solved for the 15 coefficients by bounded, lightly ridge-regularised least squares on the rig's
   linear fields (``gaze_*`` split into their positive and negative fields);
3. repeat twice (the pose refit without the expression's motion).

Targets: 15 coefficients + 9 head values (6D rotation relative to the reference frame, translation
in face widths; the similarity scale becomes depth), body 0 with ``target_mask`` 0 there. The
audio (16 kHz) is placed on the video clock (its start offset applied) and cut to the frames.
Fit residuals (RMS landmark error over the face width, pose-only vs pose + expression) go in the
manifest. Also written per clip: ``<name>.landmarks25.npz`` (the 25 fps landmarks, for evaluation).

Usage::

    python -m training.motion.real_clips --out training/data/clips [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import lsq_linear

from training.corpus import (
    BODY_SLICE,
    CORPUS_VERSION,
    EXPR_SLICE,
    FPS,
    HEAD_SLICE,
    MOTION_DIM,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    CorpusItem,
    shard_path,
    write_manifest,
    write_shard,
)
from vlogger.engines.avatar.fit import backproject, default_camera, head_frame
from vlogger.engines.avatar.rig import Rig, rotation_to_6d
from vlogger.engines.avatar.types import AvatarFit
from vlogger.engines.metrics import eye_openness, mouth_opening, pearson
from vlogger.engines.types import BODY_KEYPOINTS, EXPRESSION_NAMES, MotionFrame

__all__ = [
    "STABLE_POINTS",
    "ClipConfig",
    "RigFitter",
    "avatar_fit_from_landmarks",
    "build_clips",
    "clip_paths",
    "main",
    "read_clip_landmarks",
    "speaker_of",
    "to_pixel_landmarks",
]

#: Landmarks that move with the skull, not with expressions: outer/inner eye corners, nose bridge
#: and tip, forehead, temples/cheekbones.
STABLE_POINTS = np.array(
    [33, 133, 362, 263, 6, 168, 197, 195, 5, 4, 1, 10, 151, 9, 8, 234, 454, 127, 356, 116, 345, 98, 327]
)
_NE = len(EXPRESSION_NAMES)
_GAZE = [EXPRESSION_NAMES.index("gaze_x"), EXPRESSION_NAMES.index("gaze_y")]


@dataclass(frozen=True)
class ClipConfig:
    """How real clips become targets."""

    fov_deg: float = 40.0
    """Assumed camera field of view across the longer side (as for photos)."""
    ridge: float = 1e-3
    """Ridge weight on the coefficients (keeps correlated fields from trading off wildly)."""
    ridge_scale: tuple[tuple[str, float], ...] = (
        ("lower_lip_down", 30.0),
        ("upper_lip_up", 30.0),
        ("lip_stretch", 10.0),
        ("smile_l", 10.0),
        ("smile_r", 10.0),
        ("lip_press", 3.0),
        ("brow_down", 10.0),
    )
    """Extra ridge factor per coefficient: the fields the teacher uses little are penalised more, so
    an opening mouth is read as ``jaw_open`` (as the teacher drives it) rather than as lips pulled
    apart; the fit stays close to the landmarks (see the residuals in the manifest)."""
    iterations: int = 3
    """Pose / expression alternations per frame."""
    weight: float = 4.0
    """Item weight of real clips in the corpus."""
    include_silent: bool = False
    """Also store clips without sound (silent audio, weight 0, only the head dims supervised)."""
    min_detection_confidence: float = 0.5
    """mediapipe FaceMesh detection confidence."""


def to_pixel_landmarks(points3d: np.ndarray, camera: object) -> np.ndarray:
    """Inverse of ``backproject``: camera-space points -> (x, y pixels, relative depth z)."""
    p = np.asarray(points3d, np.float64)
    f, cx, cy = camera.focal, camera.cx, camera.cy  # type: ignore[attr-defined]
    out = np.empty_like(p)
    out[:, 0] = f * p[:, 0] / p[:, 2] + cx
    out[:, 1] = f * p[:, 1] / p[:, 2] + cy
    out[:, 2] = p[:, 2] - f
    return out


def avatar_fit_from_landmarks(face: np.ndarray, width: int, height: int, fov_deg: float = 40.0) -> AvatarFit:
    """An ``AvatarFit`` (face only, body invisible at the origin) from one frame's pixel landmarks."""
    cam = default_camera(width, height, fov_deg)
    face = np.asarray(face, np.float32)
    rot, center, _ = head_frame(backproject(face, cam))
    return AvatarFit(
        face=face,
        body=np.zeros((BODY_KEYPOINTS, 2), np.float32),
        body_visible=np.zeros(BODY_KEYPOINTS, bool),
        head_rotation=rot.astype(np.float32),
        head_center=center.astype(np.float32),
        camera=cam,
        image_hash="",
    )


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """(R, s, t) minimising |s R src + t - dst|^2 (Umeyama)."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, sv, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    dm = np.diag([1.0, 1.0, d])
    r = vt.T @ dm @ u.T
    s = float(np.sum(sv * np.diag(dm)) / max(np.sum(a * a), 1e-12))
    t = md - s * r @ ms
    return r, s, t


class RigFitter:
    """Fits frames of pixel landmarks into a rig: ``fit(face) -> (expression, head, info)``."""

    def __init__(self, rig: Rig, config: ClipConfig | None = None) -> None:
        self.rig = rig
        self.config = config or ClipConfig()
        self.cam = rig.fit.camera
        self.rest = backproject(rig.fit.face, self.cam)
        self.center = np.asarray(rig.fit.head_center, np.float64)
        self.face_size = rig.face_size
        pos = rig._pos  # (15, 478, 3) camera-space fields at coefficient 1
        neg = rig._neg
        # only the landmarks some field moves take part in the coefficient solve
        moved = (np.abs(pos).sum(axis=(0, 2)) + np.abs(neg).sum(axis=(0, 2))) > 0
        self._rows = np.flatnonzero(moved)
        cols = [pos[k][self._rows].reshape(-1) for k in range(_NE)]
        cols += [-neg[k][self._rows].reshape(-1) for k in _GAZE]  # negative gaze: its own column
        self._a = np.stack(cols, axis=1)
        self._a_full = np.stack(
            [pos[k].reshape(-1) for k in range(_NE)] + [-neg[k].reshape(-1) for k in _GAZE], axis=1
        )
        n_cols = self._a.shape[1]
        lo = np.zeros(n_cols)
        hi = np.ones(n_cols)
        self._bounds = (lo, hi)
        scale = float(np.sqrt(np.mean(self._a**2))) * math.sqrt(self._a.shape[0])
        factor = np.ones(n_cols)
        for name, f in self.config.ridge_scale:
            factor[EXPRESSION_NAMES.index(name)] = f
        self._ridge = math.sqrt(self.config.ridge) * scale * np.diag(np.sqrt(factor))
        # min |A x - b| = min |R x - Q^T b| + const: solve the small triangular system per frame
        self._q, self._r = np.linalg.qr(np.vstack([self._a, self._ridge]))

    def _coef(self, x: np.ndarray) -> np.ndarray:
        c = x[:_NE].copy()
        for j, k in enumerate(_GAZE):
            c[k] = x[k] - x[_NE + j]
        return c

    def fit(self, face: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        """Expression (15,), head (9,) for one frame's (478, 3) pixel landmarks, and residuals
        (RMS over all points / mouth points, in face widths, pose-only and final)."""
        obs = backproject(np.asarray(face, np.float64), self.cam)
        disp = np.zeros_like(self.rest)
        x = np.zeros(self._a.shape[1])
        res_pose = float("nan")
        for it in range(self.config.iterations):
            src = self.rest + disp
            r, s, t = _similarity(src[STABLE_POINTS], obs[STABLE_POINTS])
            q = ((obs - t) @ r) / s  # back into the reference frame: r^T (obs - t) / s
            if it == 0:
                res_pose = float(np.sqrt(np.mean(np.sum((q - self.rest) ** 2, axis=1)))) / self.face_size
            b = (q - self.rest)[self._rows].reshape(-1)
            qb = self._q[: b.shape[0]].T @ b  # the ridge rows of b are zero
            x = lsq_linear(self._r, qb, bounds=self._bounds, method="bvls").x
            disp = (self._a_full @ x).reshape(-1, 3)
        err = q - (self.rest + disp)
        res = float(np.sqrt(np.mean(np.sum(err**2, axis=1)))) / self.face_size
        mouth = self.rig.support("jaw_open")
        res_mouth = float(np.sqrt(np.mean(np.sum(err[mouth] ** 2, axis=1)))) / self.face_size
        expr = self._coef(x).astype(np.float32)
        # head: rotation about the pivot, translation so the pivot lands where it is seen, the
        # similarity scale read as depth (bigger = nearer)
        c_obs = s * r @ self.center + t
        zc = float(self.center[2])
        depth = zc / max(s, 1e-6)
        p = c_obs * depth / c_obs[2]
        head = np.zeros(9, np.float32)
        head[:6] = rotation_to_6d(r)
        head[6:] = (p - self.center) / self.face_size
        return expr, head, {"rms_pose_only": res_pose, "rms": res, "rms_mouth": res_mouth}


def _start_seconds(stream: object) -> float:
    start, base = getattr(stream, "start_time", None), getattr(stream, "time_base", None)
    return float(start * base) if start is not None and base is not None else 0.0


def read_clip_landmarks(path: Path, min_confidence: float = 0.5) -> dict:
    """FaceMesh on every frame, resampled to 25 fps by timestamps.

    Returns ``{"landmarks": (n, 478, 3) float32 pixels, "found": (n,) bool (a detection within
    0.1 s), "width", "height", "video_start", "audio_start" (seconds after the video start, None
    without sound), "source_fps"}``.
    """
    import av

    from training.reference_mesh import face_mesh

    times: list[float] = []
    faces: list[np.ndarray | None] = []
    with av.open(str(path)) as container:
        vs = container.streams.video[0]
        v0 = _start_seconds(vs)
        a0 = _start_seconds(container.streams.audio[0]) - v0 if container.streams.audio else None
        w = h = 0
        with face_mesh(static=False, min_detection_confidence=min_confidence) as mesh:
            for frame in container.decode(vs):
                img = frame.to_ndarray(format="rgb24")
                h, w = img.shape[:2]
                res = mesh.process(img)
                times.append(float(frame.time) - v0)
                if not res.multi_face_landmarks:
                    faces.append(None)
                    continue
                lm = res.multi_face_landmarks[0].landmark
                faces.append(np.array([[p.x * w, p.y * h, p.z * w] for p in lm], np.float64))
    t = np.asarray(times)
    ok = np.array([f is not None for f in faces])
    if ok.sum() < 2:
        raise RuntimeError(f"{path.name}: a face was found in fewer than 2 frames")
    dt = float(np.median(np.diff(t))) if len(t) > 1 else 1.0 / FPS
    duration = float(t[-1] + dt)
    n = math.floor(duration * FPS + 1e-6)
    grid = np.arange(n) / FPS
    tv = t[ok]
    arr = np.stack([f for f in faces if f is not None])  # (k, 478, 3)
    flat = arr.reshape(arr.shape[0], -1)
    out = np.empty((n, flat.shape[1]))
    for j in range(flat.shape[1]):
        out[:, j] = np.interp(grid, tv, flat[:, j])
    nearest = np.abs(grid[:, None] - tv[None, :]).min(axis=1)
    return {
        "landmarks": out.reshape(n, -1, 3).astype(np.float32),
        "found": nearest <= 0.1,
        "width": int(w),
        "height": int(h),
        "video_start": v0,
        "audio_start": a0,
        "source_fps": round(1.0 / dt, 3),
    }


def _neutral_frame(lm: np.ndarray, found: np.ndarray) -> int:
    """The frame with the most closed mouth among frames with both eyes well open."""
    mo = np.array([mouth_opening(f) for f in lm])
    eyes = np.array([min(eye_openness(f)) for f in lm])
    ok = found & (eyes >= 0.8 * np.median(eyes[found]))
    if not ok.any():
        ok = found
    score = np.where(ok, mo, np.inf)
    return int(np.argmin(score))


def _clip_audio(path: Path, audio_start: float, n_frames: int) -> np.ndarray:
    from vlogger.engines.audio import load_audio

    pcm, _ = load_audio(path, target_rate=SAMPLE_RATE)
    off = round(audio_start * SAMPLE_RATE)
    if off > 0:
        pcm = np.concatenate([np.zeros(off, np.float32), pcm])
    elif off < 0:
        pcm = pcm[-off:]
    n = n_frames * SAMPLES_PER_FRAME
    if pcm.shape[0] < n:
        pcm = np.concatenate([pcm, np.zeros(n - pcm.shape[0], np.float32)])
    return pcm[:n].astype(np.float32)


def _cached_landmarks(cache: Path | None, path: Path, config: ClipConfig) -> dict:
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            if "video_start" in z.files:
                a0 = float(z["audio_start"])
                return {
                    "landmarks": z["landmarks"],
                    "found": z["found"],
                    "width": int(z["width"]),
                    "height": int(z["height"]),
                    "video_start": float(z["video_start"]),
                    "audio_start": None if math.isnan(a0) else a0,
                    "source_fps": float(z["source_fps"]),
                }
    return read_clip_landmarks(path, config.min_detection_confidence)


def fit_clip(
    path: Path, config: ClipConfig, cache: Path | None = None
) -> tuple[CorpusItem | None, dict, dict]:
    """(item or None for silent clips, report, 25 fps landmark arrays) of one clip. ``cache``: a
    ``.landmarks25.npz`` written earlier for this clip, reused when present (FaceMesh is skipped)."""
    t0 = time.perf_counter()
    data = _cached_landmarks(cache, path, config)
    t_mesh = time.perf_counter() - t0
    lm, found = data["landmarks"], data["found"]
    ref = _neutral_frame(lm, found)
    fit = avatar_fit_from_landmarks(lm[ref], data["width"], data["height"], config.fov_deg)
    rig = Rig(fit)
    fitter = RigFitter(rig, config)
    n = lm.shape[0]
    motion = np.zeros((n, MOTION_DIM), np.float32)
    stats: dict[str, list[float]] = {"rms_pose_only": [], "rms": [], "rms_mouth": []}
    for i in range(n):
        expr, head, info = fitter.fit(lm[i])
        motion[i, EXPR_SLICE] = expr
        motion[i, HEAD_SLICE] = head
        for k in stats:
            stats[k].append(info[k])
    name = path.stem
    has_sound = data["audio_start"] is not None
    if has_sound:
        audio = _clip_audio(path, data["audio_start"], n)
    else:
        audio = np.zeros(n * SAMPLES_PER_FRAME, np.float32)
    real_open = np.array([mouth_opening(f) for f in lm])
    posed_open = np.array([mouth_opening(rig.pose(_frame(motion[i])).face) for i in range(n)])
    report = {
        "clip": name,
        "frames": n,
        "source_fps": data["source_fps"],
        "size": [data["width"], data["height"]],
        "has_sound": has_sound,
        "audio_start_s": None if not has_sound else round(float(data["audio_start"]), 4),
        "face_found": round(float(found.mean()), 4),
        "reference_frame": ref,
        "fit_rms_face_widths": {k: round(float(np.mean(v)), 5) for k, v in stats.items()},
        "fit_rms_p95": round(float(np.percentile(stats["rms"], 95)), 5),
        "mouth_opening_r_fit_vs_real": round(pearson(real_open, posed_open), 4),
        "coef_mean": {k: round(float(motion[:, i].mean()), 4) for i, k in enumerate(EXPRESSION_NAMES)},
        "coef_std": {k: round(float(motion[:, i].std()), 4) for i, k in enumerate(EXPRESSION_NAMES)},
        "head_translation_std": [round(float(x), 4) for x in motion[:, 21:24].std(0)],
        "seconds_facemesh": round(t_mesh, 1),
        "seconds_total": round(time.perf_counter() - t0, 1),
    }
    arrays = {
        "landmarks": lm,
        "found": found,
        "real_mouth_opening": real_open.astype(np.float32),
        "width": np.int64(data["width"]),
        "height": np.int64(data["height"]),
        "video_start": np.float64(data["video_start"]),
        "audio_start": np.float64(np.nan if data["audio_start"] is None else data["audio_start"]),
        "source_fps": np.float64(data["source_fps"]),
    }
    if not has_sound and not config.include_silent:
        return None, report, arrays
    mask = np.ones(MOTION_DIM, np.float32)
    mask[BODY_SLICE] = 0.0
    if not has_sound:  # silent clips: head motion only (their mouths do not follow any audio)
        mask[EXPR_SLICE] = 0.0
    item = CorpusItem(
        audio16k=audio,
        motion=motion,
        source=f"clip:{name}",
        text="",
        weight=config.weight if has_sound else 0.0,
        target_mask=mask,
        has_face=True,
        augment="[]",
    )
    return item, report, arrays


def _frame(v: np.ndarray) -> MotionFrame:
    f = MotionFrame.neutral()
    f.expression = v[EXPR_SLICE].copy()
    f.head = v[HEAD_SLICE].copy()
    return f


def _default_data() -> Path:
    env = os.environ.get("VLOGGER_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"


def clip_paths(data: Path) -> list[Path]:
    """The real talking clips: ``video/*.mp4`` (the four with sound are used) and ``real/*.mp4``."""
    return sorted((data / "video").glob("*.mp4")) + sorted((data / "real").glob("*.mp4"))


def speaker_of(clip: str) -> str:
    """The speaker id of a clip name: ``real/`` clips are ``<source>_<speaker>_<nn>`` (``CARD.md``:
    clips of one person share the id, across sources: ``styletalk_obama_01`` and
    ``edtalk_obama_01`` are one speaker); the ``video/`` clips are one speaker each."""
    parts = clip.split("_")
    if len(parts) == 3 and parts[0] in ("grid", "pcavs", "styletalk", "edtalk") and parts[2].isdigit():
        return parts[1]
    return clip


def build_clips(data: Path, out: Path, config: ClipConfig | None = None, reuse: bool = True) -> dict:
    """One shard per clip (``shard-00000.npz`` ...: leave-one-clip-out by shard) + manifest.
    ``reuse``: take the 25 fps landmarks from an earlier run's ``<clip>.landmarks25.npz``."""
    config = config or ClipConfig()
    import cv2

    cv2.setNumThreads(1)
    out.mkdir(parents=True, exist_ok=True)
    clips = clip_paths(data)
    manifest: dict = {
        "version": CORPUS_VERSION,
        "kind": "real_clips",
        "fps": FPS,
        "sample_rate": SAMPLE_RATE,
        "motion_dim": MOTION_DIM,
        "config": {k: v for k, v in config.__dict__.items()},
        "note": "one shard per clip with sound; targets fitted from the clip's own landmarks; body masked",
        "shards": [],
        "skipped": [],
        "reports": [],
    }
    k = 0
    for n_done, path in enumerate(clips):
        print(f"[{n_done + 1}/{len(clips)}] fitting {path.name} ...", flush=True)
        cache = out / f"{path.stem}.landmarks25.npz"
        item, report, arrays = fit_clip(path, config, cache if reuse else None)
        manifest["reports"].append(report)
        np.savez_compressed(out / f"{path.stem}.landmarks25.npz", **arrays)
        keys = (
            "clip",
            "frames",
            "has_sound",
            "face_found",
            "fit_rms_face_widths",
            "mouth_opening_r_fit_vs_real",
        )
        print(json.dumps({x: report[x] for x in keys}), flush=True)
        if item is None:
            manifest["skipped"].append({"clip": path.stem, "why": "no sound"})
            continue
        p = shard_path(out, k)
        write_shard(p, [item])
        manifest["shards"].append(
            {
                "file": p.name,
                "index": k,
                "items": 1,
                "clip": path.stem,
                "speaker": speaker_of(path.stem),
                "seconds_audio": round(item.duration, 2),
                "frames": item.n_frames,
                "sources": {"clip": 1},
                "augment": [[]],
            }
        )
        k += 1
    manifest["items"] = k
    write_manifest(out, manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Fit rig targets to the real clips.")
    ap.add_argument("--out", type=Path, default=Path("training/data/clips"))
    ap.add_argument("--data", type=Path, default=_default_data())
    ap.add_argument("--include-silent", action="store_true", help="also store silent clips (weight 0)")
    ap.add_argument("--refresh", action="store_true", help="run FaceMesh again (ignore cached landmarks)")
    args = ap.parse_args(argv)
    if not clip_paths(args.data):
        print(f"skipped: no real clips under {args.data} (set VLOGGER_SHARED_DATA or --data)")
        return 0
    m = build_clips(
        args.data, args.out, ClipConfig(include_silent=args.include_silent), reuse=not args.refresh
    )
    print(f"wrote {m['items']} clip items to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
