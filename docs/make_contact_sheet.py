"""Make docs/contact_sheet.png: the photo, its fit (controls), and rendered frames of named actions.

python docs/make_contact_sheet.py [--image PHOTO] [--out docs/contact_sheet.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from vlogger.engines.avatar import load_avatar
from vlogger.engines.avatar.debug import debug_view
from vlogger.engines.render.warp import WarpConfig, WarpRenderer
from vlogger.engines.types import EXPRESSION_NAMES, MotionFrame

TILE = 256


def _rotation6d(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    r = ry @ rx
    return np.concatenate([r[:, 0], r[:, 1]]).astype(np.float32)


def _frame(**kw: float) -> MotionFrame:
    mf = MotionFrame.neutral()
    for name, value in kw.items():
        if name == "yaw":
            mf.head[:6] = _rotation6d(value, 0.0)
        elif name == "pitch":
            mf.head[:6] = _rotation6d(0.0, value)
        else:
            mf.expression[EXPRESSION_NAMES.index(name)] = value
    return mf


def _label(img: np.ndarray, text: str) -> np.ndarray:
    img = img.copy()
    cv2.rectangle(img, (0, 0), (img.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(img, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def _crop(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return cv2.resize(img[y0:y1, x0:x1], (TILE, TILE), interpolation=cv2.INTER_AREA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=None)
    parser.add_argument("--out", default=str(Path(__file__).with_name("contact_sheet.png")))
    args = parser.parse_args()

    avatar = load_avatar(args.image, height=512)
    renderer = WarpRenderer(avatar.image, avatar.fit, WarpConfig())
    face = avatar.fit.face[:, :2]
    (x0, y0), (x1, y1) = face.min(0), face.max(0)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.85 * max(x1 - x0, y1 - y0)
    h, w = avatar.image.shape[:2]
    box = (max(0, int(cx - half)), max(0, int(cy - half)), min(w, int(cx + half)), min(h, int(cy + half)))

    full = [
        _label(cv2.resize(avatar.image, (TILE, TILE), interpolation=cv2.INTER_AREA), "photo"),
        _label(
            cv2.resize(debug_view(avatar), (TILE, TILE), interpolation=cv2.INTER_AREA),
            "fit: mesh + keypoints",
        ),
        _label(_crop(debug_view(avatar), box), "fit (face)"),
        _label(_crop(avatar.image, box), "photo (face)"),
    ]
    actions = [
        ("jaw_open 1.0", _frame(jaw_open=1.0)),
        ("lip_pucker 1.0", _frame(lip_pucker=1.0)),
        ("smile_l+r 1.0", _frame(smile_l=1.0, smile_r=1.0)),
        ("blink 1.0", _frame(blink_l=1.0, blink_r=1.0)),
        ("gaze_x 0.8", _frame(gaze_x=0.8)),
        ("brow_up 1.0", _frame(brow_up=1.0)),
        ("yaw 12 deg", _frame(yaw=12.0)),
        ("pitch -10 deg", _frame(pitch=-10.0)),
    ]
    tiles = []
    for name, mf in actions:
        tiles.append(_label(_crop(renderer.render(avatar.rig.pose(mf)), box), name))
    rows = [np.hstack(full), np.hstack(tiles[:4]), np.hstack(tiles[4:])]
    sheet = np.vstack(rows)
    cv2.imwrite(args.out, sheet[:, :, ::-1])
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()
