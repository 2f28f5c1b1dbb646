"""The warp renderer on the shipped portrait: identity, jaw, blinks, gaze, head and torso motion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from warp_inputs import close_eyes, default_fit, open_jaw, posed, rotate_face, shift_gaze, sway_body

from vlogger.engines.avatar.topology import LEFT_IRIS_CENTER, RIGHT_IRIS_CENTER, face_topology
from vlogger.engines.errors import InputError
from vlogger.engines.render.base import Renderer
from vlogger.engines.render.warp import WarpConfig, WarpRenderer
from vlogger.engines.render.warp.raster import compute_backward_map


@pytest.fixture(scope="module")
def scene():
    image, fit = default_fit()
    return image, fit, WarpRenderer(image, fit)


def _lum(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _poly_mask(shape, pts: np.ndarray, erode: int = 0) -> np.ndarray:
    m = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)
    if erode:
        m = cv2.erode(m, np.ones((2 * erode + 1, 2 * erode + 1), np.uint8))
    return m > 0


def _match(img: np.ndarray, patch: np.ndarray, x0: int, y0: int, search: int) -> tuple[float, float]:
    """Where ``patch`` (taken at x0, y0 in the photo) lies in ``img``: sub-pixel shift (dx, dy)."""
    ph, pw = patch.shape[:2]
    win = img[y0 - search : y0 + ph + search, x0 - search : x0 + pw + search]
    res = cv2.matchTemplate(win.astype(np.float32), patch.astype(np.float32), cv2.TM_SQDIFF)
    _, _, (mx, my), _ = cv2.minMaxLoc(-res)

    def sub(v: np.ndarray, i: int) -> float:
        if 0 < i < len(v) - 1:
            den = v[i - 1] - 2 * v[i] + v[i + 1]
            return i + 0.5 * (v[i - 1] - v[i + 1]) / den if den != 0 else float(i)
        return float(i)

    return sub(res[my, :], mx) - search, sub(res[:, mx], my) - search


def test_satisfies_renderer_protocol(scene):
    _, _, r = scene
    renderer: Renderer = r
    assert renderer.name == "warp"
    renderer.reset()


def test_identity_reproduces_the_photo(scene):
    image, fit, r = scene
    out = r.render(posed(fit))
    assert out.dtype == np.uint8 and out.shape == image.shape
    diff = np.abs(out.astype(int) - image.astype(int))
    assert diff.mean() < 1.0
    assert (diff.max(axis=2) > 2).sum() <= 5


def test_tiny_motion_keeps_the_photo(scene):
    """Sub-pixel motion goes through the whole map + remap path and must not blur the face."""
    image, fit, r = scene
    out = r.render(posed(fit, rotate_face(fit.face[:, :2], 0.0, (0.05, 0.0))))
    diff = np.abs(out.astype(int) - image.astype(int))
    assert diff.mean() < 0.5
    assert np.percentile(diff.max(axis=2), 99.9) <= 10


def test_whole_frame_of_any_size(scene):
    image, fit, _ = scene
    wide = np.concatenate([image, image[:, :128]], axis=1)  # 640 x 512, face where it was
    r = WarpRenderer(wide, fit)
    out = r.render(posed(fit, open_jaw(fit.face[:, :2], 0.12)))
    assert out.shape == (512, 640, 3) and out.dtype == np.uint8
    assert np.array_equal(out[:, 560:], wide[:, 560:])  # far background untouched


def test_bad_image_is_an_input_error(scene):
    _, fit, _ = scene
    with pytest.raises(InputError, match="RGB"):
        WarpRenderer(np.zeros((64, 64), np.uint8), fit)
    with pytest.raises(InputError, match="uint8"):
        WarpRenderer(np.zeros((64, 64, 3), np.float32), fit)


def test_jaw_open_darkens_the_mouth_and_moves_the_chin_down(scene):
    image, fit, r = scene
    face = open_jaw(fit.face[:, :2], 0.15)
    out = r.render(posed(fit, face, jaw_open=1.0))
    topo = face_topology()
    inner = _poly_mask(image.shape, face[topo.lips_inner], erode=1)
    # where the photo had teeth or lips, the opened mouth shows a dark cavity in its lower part
    lower_half = inner & (np.arange(image.shape[0])[:, None] > face[topo.lips_inner, 1].mean())
    assert lower_half.sum() > 30
    assert np.median(_lum(out)[lower_half]) < 90
    assert _lum(out)[lower_half].mean() < _lum(image)[lower_half].mean() - 60
    # the chin texture moved down by about the chin landmark's displacement
    cx, cy = np.round(fit.face[152, :2]).astype(int)
    errs = [
        np.abs(
            out[cy - 14 + k : cy - 2 + k, cx - 12 : cx + 12].astype(float)
            - image[cy - 14 : cy - 2, cx - 12 : cx + 12]
        ).mean()
        for k in range(0, 16)
    ]
    dy = float(np.argmin(errs))
    expect = face[152, 1] - fit.face[152, 1]
    assert expect > 5
    assert abs(dy - expect) < 2.0


def test_closed_eyes_are_covered_by_lid_skin(scene):
    image, fit, r = scene
    face = close_eyes(fit.face[:, :2], 1.0)
    out = r.render(posed(fit, face, blink_l=1.0, blink_r=1.0))
    topo = face_topology()
    for contour in (topo.left_eye, topo.right_eye):
        eye = _poly_mask(image.shape, fit.face[contour, :2], erode=1)
        upper = eye & (np.arange(image.shape[0])[:, None] < fit.face[contour, 1].mean())
        assert upper.sum() > 10
        # the photo's upper-lid skin: a band 2-4 px above the lid line, middle third of the eye
        lid = fit.face[contour, :2]
        x_lo, x_hi = np.percentile(lid[:, 0], [33, 67])
        top = lid[(lid[:, 0] > x_lo) & (lid[:, 0] < x_hi)]
        top_y = top[:, 1].min()
        band = image[int(top_y) - 4 : int(top_y) - 1, int(x_lo) : int(x_hi) + 1].reshape(-1, 3)
        skin = np.median(band, axis=0).astype(float)
        skin_lum = float(_lum(skin[None])[0])
        # the photo's open eye has a dark iris there; the closed eye is skin
        assert _lum(image)[upper].min() < 0.5 * skin_lum
        assert _lum(out)[upper].min() > 0.6 * skin_lum
        assert np.abs(out[upper].mean(axis=0) - skin).max() < 40


def _iris_centroid(img: np.ndarray, contour_pts: np.ndarray) -> np.ndarray:
    eye = _poly_mask(img.shape, contour_pts, erode=1)
    lum = _lum(img)
    vals = lum[eye]
    dark = eye & (lum < np.percentile(vals, 40))
    ys, xs = np.nonzero(dark)
    return np.array([xs.mean(), ys.mean()])


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_gaze_moves_the_iris(scene, direction):
    image, fit, r = scene
    face = shift_gaze(fit.face[:, :2], 0.15 * direction)
    out = r.render(posed(fit, face, gaze_x=direction * 0.5))
    topo = face_topology()
    for contour, centre in ((topo.left_eye, LEFT_IRIS_CENTER), (topo.right_eye, RIGHT_IRIS_CENTER)):
        pts = fit.face[contour, :2]
        before = _iris_centroid(image, pts)
        after = _iris_centroid(out, pts)
        moved = face[centre, 0] - fit.face[centre, 0]
        assert np.sign(after[0] - before[0]) == np.sign(moved)
        assert abs(after[0] - before[0]) > 0.25 * abs(moved)
        assert abs(after[1] - before[1]) < 1.0


def test_head_rotation_carries_the_hair_and_keeps_the_corners(scene):
    image, fit, r = scene
    deg = 5.0
    face = rotate_face(fit.face[:, :2], deg)
    out = r.render(posed(fit, face))
    # hair and forehead just outside the face oval move like the head: compare with the photo
    # rotated rigidly about the same centre, over the band between the oval and 1.3x the oval
    centre = fit.face[:468, :2].mean(axis=0)
    m_rot = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), -deg, 1.0)
    rigid = cv2.warpAffine(image, m_rot, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR)
    moved_oval = face[face_topology().face_oval]
    band = _poly_mask(image.shape, centre + 1.3 * (moved_oval - centre)) & ~_poly_mask(
        image.shape, centre + 1.05 * (moved_oval - centre)
    )
    band &= np.arange(image.shape[0])[:, None] < centre[1]  # the top half: hair, not collar
    assert band.sum() > 500
    err_warp = np.abs(out.astype(float) - rigid)[band].mean()
    err_still = np.abs(image.astype(float) - rigid)[band].mean()
    assert err_warp < 0.5 * err_still
    for ys, xs in (
        (slice(0, 12), slice(0, 12)),
        (slice(0, 12), slice(-12, None)),
        (slice(-12, None), slice(0, 12)),
        (slice(-12, None), slice(-12, None)),
    ):
        assert np.array_equal(out[ys, xs], image[ys, xs])


def test_map_has_no_seams_or_cracks(scene):
    """The backward map is continuous at the rings and around the face (no jumps, no holes)."""
    image, fit, r = scene
    face = rotate_face(fit.face[:, :2], 6.0, (3.0, -2.0))
    p = posed(fit, face, body=sway_body(fit.body, 4.0))
    targets = r.mesh.targets(p.face, p.body)
    x0, y0, mx, my = compute_backward_map(
        r.mesh.source, targets.vertices, r.mesh.triangles, image.shape[:2], 1
    )
    jump_x = np.hypot(np.diff(mx, axis=1) - 1.0, np.diff(my, axis=1))
    jump_y = np.hypot(np.diff(mx, axis=0), np.diff(my, axis=0) - 1.0)
    # the rings: from just inside the face oval to the outermost ring, away from the image border
    ring_out = targets.vertices[r.mesh.ring_idx[-1]]
    oval = targets.vertices[r.mesh.ring_idx[0]]
    centre = oval.mean(axis=0)
    keep = _poly_mask(image.shape, ring_out) & ~_poly_mask(image.shape, centre + 0.85 * (oval - centre))
    keep[:4] = keep[-4:] = False
    keep[:, :4] = keep[:, -4:] = False
    skip = ~keep[y0 : y0 + mx.shape[0], x0 : x0 + mx.shape[1]]
    assert jump_x[~skip[:, 1:]].max() < 1.0  # a crack or seam would jump by the motion (>3 px)
    assert jump_y[~skip[1:, :]].max() < 1.0


def test_rendered_rings_are_not_sharper_than_the_photo(scene):
    image, fit, r = scene
    face = rotate_face(fit.face[:, :2], 6.0, (3.0, 0.0))
    out = r.render(posed(fit, face))
    lum_o = cv2.GaussianBlur(_lum(out), (0, 0), 0.7)
    lum_i = cv2.GaussianBlur(_lum(image), (0, 0), 0.7)
    go = np.hypot(cv2.Sobel(lum_o, cv2.CV_64F, 1, 0), cv2.Sobel(lum_o, cv2.CV_64F, 0, 1))
    gi = np.hypot(cv2.Sobel(lum_i, cv2.CV_64F, 1, 0), cv2.Sobel(lum_i, cv2.CV_64F, 0, 1))
    mesh = r.mesh
    targets = mesh.targets(face, fit.body).vertices
    for ring in mesh.ring_idx[1:]:
        pts_o = np.round(targets[ring]).astype(int)
        pts_i = np.round(mesh.source[ring]).astype(int)
        ok = (pts_o.min(1) > 0) & (pts_o[:, 0] < 511) & (pts_o[:, 1] < 511)
        assert go[pts_o[ok, 1], pts_o[ok, 0]].mean() < 1.3 * gi[pts_i[ok, 1], pts_i[ok, 0]].mean() + 2.0


def test_torso_sway_moves_the_shoulders_not_the_corners(scene):
    image, fit, r = scene
    out = r.render(posed(fit, body=sway_body(fit.body, 5.0)))
    for key in (11, 12):  # both shoulders move right by a few pixels
        sx, sy = np.round(fit.body[key]).astype(int)
        ref = image[sy - 15 : sy + 15, sx - 25 : sx + 25].astype(float)
        errs = [np.abs(out[sy - 15 : sy + 15, sx - 25 + k : sx + 25 + k] - ref).mean() for k in range(-2, 8)]
        shift = int(np.argmin(errs)) - 2
        assert 2 <= shift <= 6
    assert np.array_equal(out[:8, :8], image[:8, :8]) and np.array_equal(out[-8:, -8:], image[-8:, -8:])


def test_exact_and_downsampled_maps_agree(scene):
    image, fit, _ = scene
    exact = WarpRenderer(image, fit, WarpConfig(map_downsample=1))
    fast = WarpRenderer(image, fit, WarpConfig(map_downsample=2))
    p = posed(fit, rotate_face(open_jaw(fit.face[:, :2], 0.08), 3.0))
    a, b = exact.render(p), fast.render(p)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 0.6


def test_triangle_raster_last_drawn_wins_and_slivers_cover_nothing():
    from vlogger.engines.render.warp.geometry import barycentric_affines
    from vlogger.engines.render.warp.raster import _triangle_ids

    tris = np.array(
        [
            [[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]],  # big, drawn first
            [[2.0, 2.0], [8.0, 2.0], [2.0, 8.0]],  # small, on top of it
            [[0.0, 15.0], [19.0, 15.0], [10.0, 15.0]],  # zero area: covers nothing
        ],
        np.float32,
    )
    bary = barycentric_affines(tris).astype(np.float32)
    gx = (np.arange(20, dtype=np.float32) + 0.5)[None, :]
    gy = (np.arange(20, dtype=np.float32) + 0.5)[:, None]
    ids = _triangle_ids(tris, bary, gx, gy, 1, 99)
    assert ids[3, 3] == 1 and ids[10, 3] == 0 and ids[3, 10] == 0
    assert ids[15, 2] == 0  # the sliver on y=15 does not claim the big triangle's pixels
    assert ids[19, 19] == 99  # outside every triangle: identity
    # every pixel centre inside the big triangle is claimed by it or the small one
    inside = (gx + gy) < 20
    assert np.all(ids[inside] != 99)


def test_downsampled_map_is_exact_across_a_cut():
    """Two strips meet in the frame but come from parts of the photo 8 px apart (closed lips over
    an open photo): the upsampled low-res map must not blend them (it would sample the photo
    between them); it matches the exact map everywhere."""
    src = np.array(
        [[10, 10], [50, 10], [50, 30], [10, 30], [10, 38], [50, 38], [50, 58], [10, 58]], np.float64
    )
    dst = src.copy()
    dst[4:, 1] -= 8.0  # the lower strip moves up onto the upper one: its top edge meets y=30
    dst[:4, 0] += 0.5  # and everything moves a little, so the whole box is remapped
    dst[4:, 0] += 0.5
    tris = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]], np.int32)

    def whole(downsample: int) -> tuple[np.ndarray, np.ndarray]:
        bmap = compute_backward_map(src, dst, tris, (64, 64), downsample=downsample)
        assert bmap is not None
        x0, y0, mx, my = bmap
        gx, gy = np.meshgrid(np.arange(64, dtype=np.float32), np.arange(64, dtype=np.float32))
        gx[y0 : y0 + mx.shape[0], x0 : x0 + mx.shape[1]] = mx
        gy[y0 : y0 + my.shape[0], x0 : x0 + my.shape[1]] = my
        return gx, gy

    (ex, ey), (fx, fy) = whole(1), whole(2)
    # inside the strips (their outer edges border uncovered, identity pixels: half a pixel off)
    inside = np.zeros((64, 64), bool)
    inside[12:49, 12:49] = True
    err = np.hypot(fx - ex, fy - ey)[inside]
    assert err.max() < 0.05, f"the upsampled map strays by {err.max():.1f} px at the cut"
    # nowhere does the frame sample the photo's band between the strips
    assert not np.any((fy[inside] > 30.5) & (fy[inside] < 37.5))


def test_closed_rest_over_an_open_photo_shows_no_teeth(scene):
    """The rig closes the portrait's open, smiling mouth at rest; the rendered lips meet: along
    the closed lip line the frame is the exact map's (no photo teeth blended in by the low-res map:
    before the fix the band differed by 16 levels on average, up to 100, and FaceMesh read the
    rendered rest as open)."""
    import dataclasses

    from vlogger.engines.avatar import Rig
    from vlogger.engines.avatar.rig import photo_expression
    from vlogger.engines.metrics import mouth_opening
    from vlogger.engines.types import MotionFrame

    image, fit, r = scene
    rig = Rig(dataclasses.replace(fit, expression=photo_expression(fit)))
    p = rig.pose(MotionFrame.neutral())
    assert mouth_opening(fit.face) > 0.08 and mouth_opening(p.face) < 0.01
    fast = r.render(p)
    exact = WarpRenderer(image, fit, WarpConfig(map_downsample=1)).render(p)
    line = p.face[[78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]]
    band = np.zeros(image.shape[:2], np.uint8)
    cv2.polylines(band, [np.round(line).astype(np.int32)], False, 1, 3)
    band = band > 0
    diff = np.abs(fast.astype(int) - exact.astype(int)).max(axis=2)
    assert diff[band].mean() < 1.0 and diff.mean() < 0.05

    def teeth_share(img: np.ndarray) -> float:
        px = img[band].astype(np.float64)
        hi = px.max(axis=1)
        return float(((hi > 200) & ((hi - px.min(axis=1)) / hi < 0.2)).mean())

    # the photo shows teeth along there; the closed lips (nearly) none (measured 0.06 vs 0.34)
    assert teeth_share(image) > 0.25 and teeth_share(fast) < 0.1
