"""Renderer datasets: per-frame controls, target crops and reference crops, in shards (npz).

Two builders write the same shard format:

* :func:`build_from_videos`: a folder of talking-head videos. Every frame (resampled to ``fps`` by
  timestamps) is fitted with ``engines/avatar`` (its landmarkers); the first ``train_fraction`` of each
  clip is the ``train`` split, the rest ``test``. Each frame's reference is a frame far from it, as
  the paper does (train: the train-split frame farthest in time; test: the clip's first frame),
  and its partial view is the warp renderer's frame of that reference posed to the frame's landmarks.
  One shard per clip and split; clips already built are skipped (resume); progress on stderr.
* :func:`build_generated`: the shipped default portrait posed by the rig with random smooth motion
  and drawn by the warp renderer (the data the project makes itself; safe to ship models of).

A shard holds ``frames`` (T, S, S, 3) uint8 targets, ``controls`` (T, 13, S, S) uint8 (channels of
``CONTROL_CHANNELS``: maps x255, partial view as RGB), ``ref`` (T, S, S, 3) uint8 reference crops,
``mouth`` (T,) the target's mouth opening, and ``split`` ("train"/"test").
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vlogger.engines.avatar.controls import ControlBuilder, crop_image, face_crop
from vlogger.engines.avatar.types import AvatarFit, PosedFrame
from vlogger.engines.metrics import mouth_opening
from vlogger.engines.types import EXPRESSION_NAMES, MotionFrame

__all__ = ["build_from_videos", "build_generated", "encode_controls", "load_shards", "smooth_motion"]


def encode_controls(c: np.ndarray) -> np.ndarray:
    """(13, S, S) float controls -> uint8 (maps x255, partial view [-1, 1] -> 0..255)."""
    out = np.empty(c.shape, np.uint8)
    out[:-3] = np.clip(c[:-3] * 255 + 0.5, 0, 255)
    out[-3:] = np.clip((c[-3:] + 1) * 127.5 + 0.5, 0, 255)
    return out


def decode_controls(c: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_controls` (any leading dims)."""
    out = c.astype(np.float32) / 255.0
    out[..., -3:, :, :] = out[..., -3:, :, :] * 2 - 1
    return out


def _posed(index: int, face: np.ndarray, body: np.ndarray) -> PosedFrame:
    return PosedFrame(
        index=index,
        pts=index / 25.0,
        face=face[:, :2].astype(np.float32),
        body=body.astype(np.float32),
        expression=np.zeros(len(EXPRESSION_NAMES), np.float32),
        head_rotation=np.eye(3, dtype=np.float32),
    )


def _save(path: Path, split: str, frames: list, controls: list, refs: list, mouth: list) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        frames=np.stack(frames),
        controls=np.stack(controls),
        ref=np.stack(refs),
        mouth=np.asarray(mouth, np.float32),
        split=np.array(split),
    )
    tmp.replace(path)


def _video_frames(path: Path, fps: float, height: int, limit: int) -> Iterator[np.ndarray]:
    import av

    from vlogger.engines.avatar.image import resize_to_height

    nxt = 0.0
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            if f.time is None or f.time + 1e-6 < nxt:
                continue
            nxt += 1.0 / fps
            yield resize_to_height(f.to_ndarray(format="rgb24"), height)
            if nxt * fps >= limit:
                return


def build_from_videos(
    videos: Path,
    out: Path,
    size: int = 32,
    fps: float = 25.0,
    train_fraction: float = 0.8,
    height: int = 512,
    max_frames: int = 250,
) -> list[Path]:
    """Build train/test shards from every video in ``videos`` (see the module docstring)."""
    from vlogger.engines.avatar.fit import Fitter
    from vlogger.engines.render.warp import WarpRenderer

    out.mkdir(parents=True, exist_ok=True)
    clips = sorted(p for p in videos.iterdir() if p.suffix.lower() in (".mp4", ".mov", ".mkv", ".webm"))
    shards = []
    with Fitter() as fitter:
        for ci, clip in enumerate(clips):
            names = [out / f"{clip.stem}.{s}.npz" for s in ("train", "test")]
            if all(n.is_file() for n in names):
                print(f"[{ci + 1}/{len(clips)}] {clip.name}: done already", file=sys.stderr)
                shards += names
                continue
            t0 = time.perf_counter()
            images, fits = [], []
            for img in _video_frames(clip, fps, height, max_frames):
                try:
                    fits.append(fitter.fit(img))
                    images.append(img)
                except Exception:  # no face in this frame: skip it
                    continue
            if len(images) < 20:
                print(f"[{ci + 1}/{len(clips)}] {clip.name}: too few fitted frames, skipped", file=sys.stderr)
                continue
            n_train = int(len(images) * train_fraction)
            refs = {"train": [0, n_train - 1], "test": [0]}
            crop = face_crop(fits[0], images[0].shape)
            for split, lo, hi, name in (
                ("train", 0, n_train, names[0]),
                ("test", n_train, len(images), names[1]),
            ):
                warps = {
                    r: (WarpRenderer(images[r], fits[r]), ControlBuilder(fits[r], crop, size))
                    for r in refs[split]
                }
                fr, co, rf, mo = [], [], [], []
                for i in range(lo, hi):
                    # the reference far from frame i
                    r = refs[split][int(np.argmax([abs(j - i) for j in refs[split]]))]
                    warp, builder = warps[r]
                    posed = _posed(i, fits[i].face, fits[i].body)
                    co.append(encode_controls(builder.build(posed, warp.render(posed))))
                    fr.append(crop_image(images[i], crop, size))
                    rf.append(crop_image(images[r], crop, size))
                    mo.append(mouth_opening(fits[i].face))
                _save(name, split, fr, co, rf, mo)
                shards.append(name)
            print(
                f"[{ci + 1}/{len(clips)}] {clip.name}: {len(images)} frames ({n_train} train) "
                f"in {time.perf_counter() - t0:.0f} s",
                file=sys.stderr,
            )
    (out / "manifest.json").write_text(
        json.dumps({"size": size, "fps": fps, "shards": [p.name for p in shards]})
    )
    return shards


def smooth_motion(n: int, rng: np.random.Generator) -> list[MotionFrame]:
    """Random smooth talking-like motion: jaw, lips, smile, blinks, gaze, small head turns."""
    names = EXPRESSION_NAMES

    def walk(scale: float, smooth: int) -> np.ndarray:
        x = rng.standard_normal(n + smooth) * scale
        k = np.hanning(smooth) / np.hanning(smooth).sum()
        return np.convolve(x, k, mode="valid")[:n] * np.sqrt(smooth)

    expr = np.zeros((n, len(names)), np.float32)
    expr[:, names.index("jaw_open")] = np.clip(0.3 + walk(0.35, 5), 0, 1)
    for nm, sc in (
        ("lip_funnel", 0.2),
        ("lip_press", 0.15),
        ("smile_l", 0.2),
        ("smile_r", 0.2),
        ("brow_up", 0.2),
    ):
        expr[:, names.index(nm)] = np.clip(walk(sc, 9), 0, 1)
    blink = np.zeros(n, np.float32)
    for s in np.flatnonzero(rng.random(n) < 0.04):
        blink[s : s + 3] = (1.0, 1.0, 0.5)[: len(blink[s : s + 3])]
    expr[:, names.index("blink_l")] = blink
    expr[:, names.index("blink_r")] = blink
    expr[:, names.index("gaze_x")] = np.clip(walk(0.3, 15), -1, 1)
    yaw, pitch, roll = walk(0.12, 15), walk(0.08, 15), walk(0.06, 15)
    frames = []
    for i in range(n):
        mf = MotionFrame.neutral(i, i / 25.0)
        cy, sy, cp, sp, cr, sr = (
            np.cos(yaw[i]),
            np.sin(yaw[i]),
            np.cos(pitch[i]),
            np.sin(pitch[i]),
            np.cos(roll[i]),
            np.sin(roll[i]),
        )
        ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
        rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
        r = rz @ ry @ rx
        mf.head[:6] = np.concatenate([r[:, 0], r[:, 1]])
        mf.expression = expr[i]
        frames.append(mf)
    return frames


def build_generated(
    out: Path, frames: int = 400, size: int = 32, seed: int = 0, split: str = "train"
) -> Path:
    """A shard from the default portrait posed with random motion (targets = warp frames)."""
    from vlogger.engines.avatar import load_avatar
    from vlogger.engines.render.warp import WarpRenderer

    avatar = load_avatar()
    warp = WarpRenderer(avatar.image, avatar.fit)
    crop = face_crop(avatar.fit, avatar.image.shape)
    builder = ControlBuilder(avatar.fit, crop, size)
    ref = crop_image(avatar.image, crop, size)
    fr, co, rf, mo = [], [], [], []
    for mf in smooth_motion(frames, np.random.default_rng(seed)):
        posed = avatar.rig.pose(mf)
        img = warp.render(posed)
        co.append(encode_controls(builder.build(posed, img)))
        fr.append(crop_image(img, crop, size))
        rf.append(ref)
        mo.append(mouth_opening(posed.face))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"generated-{seed}.{split}.npz"
    _save(path, split, fr, co, rf, mo)
    return path


def load_shards(paths: list[Path], split: str | None = None) -> list[dict[str, np.ndarray]]:
    """Shards as dicts of arrays (``split`` keeps only that split)."""
    out = []
    for p in paths:
        with np.load(p) as d:
            if split is None or str(d["split"]) == split:
                out.append({k: d[k] for k in d.files})
    return out


def fit_to_posed(fit: AvatarFit, index: int = 0) -> PosedFrame:
    """A frame's own fit as a posed frame (the controls of a real video frame)."""
    return _posed(index, fit.face, fit.body)
