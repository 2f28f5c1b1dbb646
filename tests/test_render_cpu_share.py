"""The renderer's per-frame CPU shortcuts compute what the plain versions compute."""

from __future__ import annotations

import math

import cv2
import numpy as np

from vlogger.engines.avatar.controls import _fix, _poly
from vlogger.engines.diffusion import DDIMScheduler
from vlogger.engines.render.diffusion import WindowSampler, frame_scheduler
from vlogger.engines.render.diffusion.window import control_tensor
from vlogger.engines.render.warp.geometry import barycentric_affines
from vlogger.engines.render.warp.raster import _EPS, _triangle_ids


class _Affine:
    """A stand-in network: eps depends on every input, so a wrong feed shows in the frames."""

    input_names = ("x", "t", "ref", "control")
    output_names = ("eps",)

    def infer(self, feed):
        x, c = feed["x"], feed["control"]
        eps = np.tanh(0.3 * x + 0.2 * c[:, :, :3] - 0.1 * c[:, :, -4:-1] + 0.05 * feed["ref"][:, None])
        return {"eps": (eps + 1e-3 * feed["t"][0]).astype(np.float32)}


def test_control_tensor_layout() -> None:
    rng = np.random.default_rng(0)
    controls = rng.uniform(-1, 1, (5, 13, 8, 8)).astype(np.float32)
    known = rng.uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)
    c = control_tensor(list(controls), known)
    assert c.shape == (1, 5, 17, 8, 8) and c.dtype == np.float32
    assert np.array_equal(c[0, :, :13], controls)
    assert (c[0, :2, 13] == 1).all() and (c[0, 2:, 13] == 0).all()
    assert np.array_equal(c[0, :2, 14:], known) and not c[0, 2:, 14:].any()
    assert not control_tensor(controls, None)[0, :, 13:].any()


def test_window_sampler_takes_a_sequence_and_samples_only_new_frames() -> None:
    rng = np.random.default_rng(1)
    controls = rng.uniform(-1, 1, (6, 13, 8, 8)).astype(np.float32)
    known = rng.uniform(-1, 1, (3, 3, 8, 8)).astype(np.float32)
    ref = rng.uniform(-1, 1, (3, 8, 8)).astype(np.float32)
    for eta in (0.0, 0.5):
        ws = WindowSampler(_Affine(), frame_scheduler(eta=eta), steps=3, start=900)
        a = ws.sample(controls, ref, known, np.random.default_rng(7))
        b = ws.sample(list(controls), ref, known, np.random.default_rng(7))
        assert a.dtype == np.float32 and np.array_equal(a, b)
        assert np.array_equal(a[:3], known) and np.abs(a[3:]).max() <= 1.0


def test_add_noise_into_out_matches_the_plain_formula() -> None:
    rng = np.random.default_rng(2)
    x0, noise = rng.standard_normal((2, 4, 3, 5, 5), dtype=np.float32)
    s = DDIMScheduler()
    out = np.empty_like(x0)
    assert s.add_noise(x0, noise, 600, out=out) is out
    a = float(s.alpha_bar[600])
    assert np.array_equal(out, (math.sqrt(a) * x0 + math.sqrt(1 - a) * noise).astype(np.float32))
    assert np.array_equal(s.add_noise(x0, noise, 600), out)


def _poly_full(size: int, pts: np.ndarray, ss: int = 4) -> np.ndarray:
    m = np.zeros((size * ss, size * ss), np.uint8)
    cv2.fillPoly(m, [_fix(pts * ss - 0.5)], 255, cv2.LINE_8, 4)
    return (cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA) >= 128).astype(np.uint8)


def test_poly_in_its_box_equals_the_whole_image_supersampled() -> None:
    rng = np.random.default_rng(3)
    for size in (16, 37, 64):
        for _ in range(30):
            centre = rng.uniform(-0.3, 1.3, 2) * size
            angle = np.sort(rng.uniform(0, 2 * np.pi, 9))
            pts = centre + rng.uniform(0.5, 0.6 * size, (9, 1)) * np.stack([np.cos(angle), np.sin(angle)], 1)
            m = _poly(size, pts)
            assert m.dtype == np.uint8 and np.array_equal(m, _poly_full(size, pts))


def test_triangle_ids_match_a_per_pixel_reference() -> None:
    rng = np.random.default_rng(4)
    tris = rng.uniform(-5, 45, (60, 3, 2))
    tris[5, 2] = tris[5, 1]  # degenerate: covers nothing
    bary = barycentric_affines(tris).astype(np.float32)
    n = 2
    gx = (0.5 + n * np.arange(20, dtype=np.float32))[None, :]
    gy = (0.5 + n * np.arange(18, dtype=np.float32))[:, None]
    ids = _triangle_ids(tris, bary, gx, gy, n, 99)
    e1, e2 = tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
    area = np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    lo, hi = tris.min(axis=1), tris.max(axis=1)
    for j in range(gy.shape[0]):
        for i in range(gx.shape[1]):
            px, py = gx[0, i], gy[j, 0]
            want = 99
            for t, b in enumerate(bary):
                in_box = lo[t, 0] - 1e-4 <= px <= hi[t, 0] + 1e-4 and lo[t, 1] - 1e-4 <= py <= hi[t, 1] + 1e-4
                c1 = b[0] * px + b[1] * py + b[2]
                c2 = b[3] * px + b[4] * py + b[5]
                if area[t] > 1e-6 and in_box and min(c1, c2, 1.0 - c1 - c2) >= -_EPS:
                    want = t
            assert ids[j, i] == want, (j, i)
