"""The diffusion renderer's controls: masks cover the landmark polygons they name, maps follow the pose."""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np
import pytest

from vlogger.engines.avatar import load_avatar
from vlogger.engines.avatar.controls import (
    CONTROL_CHANNELS,
    MASK_NAMES,
    ControlBuilder,
    CropBox,
    crop_image,
    face_crop,
)
from vlogger.engines.types import EXPRESSION_NAMES, MotionFrame

SIZE = 128


@cache
def _avatar():
    return load_avatar()


def _builder() -> ControlBuilder:
    a = _avatar()
    return ControlBuilder(a.fit, face_crop(a.fit, a.image.shape), SIZE)


def _posed(**coef: float):
    mf = MotionFrame.neutral()
    for k, v in coef.items():
        mf.expression[EXPRESSION_NAMES.index(k)] = v
    return _avatar().rig.pose(mf)


def _poly_mask(pts: np.ndarray) -> np.ndarray:
    """Pixels whose centres lie inside the polygon (independent of the builder's rasteriser)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    path = pts.astype(np.float32).reshape(-1, 1, 2)
    inside = np.array(
        [
            cv2.pointPolygonTest(path, (float(x) + 0.5, float(y) + 0.5), False) > 0
            for x, y in zip(xx.ravel(), yy.ravel(), strict=True)
        ]
    )
    return inside.reshape(SIZE, SIZE)


def _coverage(mask: np.ndarray, poly: np.ndarray) -> tuple[float, float]:
    inside = poly.sum()
    covered = (mask.astype(bool) & poly).sum() / max(inside, 1)
    spill = (mask.astype(bool) & ~poly).sum() / max(inside, 1)
    return float(covered), float(spill)


@pytest.mark.parametrize("jaw", [0.0, 0.8])
def test_masks_cover_the_polygons_they_name(jaw: float) -> None:
    b = _builder()
    posed = _posed(jaw_open=jaw)
    p = b.crop.to_crop(posed.face, SIZE)
    t = b.topology
    masks = b.masks(posed)
    inner = _poly_mask(p[t.lips_inner])
    checks = {
        "lips": _poly_mask(p[t.lips_outer]) & ~inner,
        "eyes": _poly_mask(p[t.left_eye]) | _poly_mask(p[t.right_eye]),
        "skin": _poly_mask(p[t.face_oval]),
    }
    if jaw > 0:
        checks["mouth_interior"] = inner
    for name, poly in checks.items():
        covered, spill = _coverage(masks[name], poly)
        if name == "skin":  # the oval less eyes, brows, lips and mouth
            assert covered > 0.8 and spill < 0.02, (name, covered, spill)
        else:
            assert covered > 0.85 and spill < 0.3, (name, covered, spill)  # thin lips: edge pixels
    # brows: their hulls, irises: inside the eyes
    for idx in (t.left_brow, t.right_brow):
        hull = cv2.convexHull(p[idx].astype(np.float32)).reshape(-1, 2)
        covered, _ = _coverage(masks["brows"], _poly_mask(hull))
        assert covered > 0.9
    assert not (masks["irises"].astype(bool) & ~masks["eyes"].astype(bool)).any()
    assert masks["irises"].sum() > 5
    # the parts do not overlap the skin
    for name in ("lips", "mouth_interior", "eyes", "brows"):
        assert not (masks[name].astype(bool) & masks["skin"].astype(bool)).any(), name


def test_masks_follow_the_expression() -> None:
    b = _builder()
    closed, open_ = b.masks(_posed()), b.masks(_posed(jaw_open=1.0))
    assert open_["mouth_interior"].sum() > closed["mouth_interior"].sum() + 20
    shut = b.masks(_posed(blink_l=1.0, blink_r=1.0))
    assert shut["eyes"].sum() < 0.3 * closed["eyes"].sum()
    assert shut["irises"].sum() < 0.3 * closed["irises"].sum()


def test_dense_map_colours_by_canonical_position() -> None:
    b = _builder()
    posed = _posed()
    dense = b.dense_map(posed)
    p = b.crop.to_crop(posed.face, SIZE)

    # x colour rises from the image-left eye corner (33) to the image-right one (263), y from brow to chin
    def colour(i: int) -> np.ndarray:
        x, y = np.round(p[i]).astype(int)
        return dense[:, y, x]

    assert colour(263)[0] > colour(33)[0] + 0.3
    assert colour(18)[1] > colour(9)[1] + 0.3  # below the lips vs between the brows
    assert dense[:, 0, 0].sum() == 0  # off the face
    # turning the head moves the map with it
    mf = MotionFrame.neutral()
    mf.head[6] = 0.5  # half a face width to the right
    moved = b.dense_map(_avatar().rig.pose(mf))
    cx = lambda d: (d[0] > 0).nonzero()[1].mean()  # noqa: E731
    assert cx(moved) > cx(dense) + 5


def test_stack_channels_and_partial_view() -> None:
    b = _builder()
    a = _avatar()
    posed = _posed()
    stack = b.build(posed, a.image)
    assert stack.shape == (len(CONTROL_CHANNELS), SIZE, SIZE) and stack.dtype == np.float32
    assert set(MASK_NAMES) <= set(CONTROL_CHANNELS)
    assert stack[-3:].min() >= -1 and stack[-3:].max() <= 1
    # the partial view is the crop of the frame it was given
    ref = crop_image(a.image, b.crop, SIZE).astype(np.float32) / 127.5 - 1
    assert np.abs(stack[-3:].transpose(1, 2, 0) - ref).max() < 1e-5
    # body map: the shoulder line is drawn where the shoulders are
    body = stack[CONTROL_CHANNELS.index("body")]
    assert body.sum() > 10


def test_face_crop_holds_face_and_shoulders_and_fits_the_image() -> None:
    a = _avatar()
    crop = face_crop(a.fit, a.image.shape)
    h, w = a.image.shape[:2]
    assert 0 <= crop.x0 and crop.x0 + crop.side <= w and 0 <= crop.y0 and crop.y0 + crop.side <= h
    face = a.fit.face[:, :2]
    inside = (
        (face[:, 0] >= crop.x0)
        & (face[:, 0] < crop.x0 + crop.side)
        & (face[:, 1] >= crop.y0)
        & (face[:, 1] < crop.y0 + crop.side)
    )
    assert inside.all()
    # the mouth is at least 20 px wide at 128 px (vs ~11 px when the whole 512 px frame is 128 px)
    mouth = abs(face[291, 0] - face[61, 0]) * SIZE / crop.side
    assert mouth >= 20
    # out-of-frame boxes repeat the edge
    patch = crop_image(a.image, CropBox(-10.0, -10.0, 64.0), 32)
    assert patch.shape == (32, 32, 3)
