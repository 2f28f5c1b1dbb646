"""The project's own named linear expression basis, built procedurally from one fitted face.

There is no blendshape model for the 478-point mesh, so each coefficient in ``EXPRESSION_NAMES``
gets a displacement field made from the photo's neutral landmarks (in the head's canonical frame,
units of the outer-eye-corner distance) and the topology's contours: lips, eyes, irises, brows.
Each field has compact support (exact zeros outside it), made with smoothstep falloffs, so a
coefficient moves only its own region. Gaze is piecewise linear: ``positive`` and ``negative``
fields differ (the iris may sit off-centre in the photo); every other coefficient has one field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlogger.engines.avatar.topology import LEFT_IRIS_CENTER, RIGHT_IRIS_CENTER, face_topology
from vlogger.engines.types import EXPRESSION_NAMES

__all__ = ["BasisConfig", "ExpressionBasis", "build_basis"]

_IRIS = np.arange(468, 478)


@dataclass(frozen=True)
class BasisConfig:
    """Strengths of the expression fields at coefficient 1.0 (units: mouth width ``Wm`` or the
    outer-eye-corner distance ``D``, as noted)."""

    jaw_gap: float = 0.42
    """jaw_open: inner-lip gap opened at the lip middle, in mouth widths."""
    jaw_rotation_share: float = 0.5
    """jaw_open: share of the motion that is rotation about the jaw joint (the rest is a straight drop)."""
    jaw_corner_follow: float = 0.5
    """jaw_open: how much less the mouth corners move than the lower lip (0 = as much)."""
    funnel_narrow: float = 0.15
    """lip_funnel: fraction by which the mouth narrows toward its centre."""
    funnel_open: float = 0.08
    """lip_funnel: how far each inner lip moves away from the midline, in mouth widths."""
    funnel_protrude: float = 0.10
    """lip_funnel: forward motion of the lips, in D."""
    pucker_narrow: float = 0.32
    """lip_pucker: fraction by which the mouth narrows toward its centre."""
    pucker_protrude: float = 0.14
    """lip_pucker: forward motion of the lips, in D."""
    press_thin: float = 0.3
    """lip_press: fraction by which the outer lip contour moves toward the lip line (inner lips meet)."""
    stretch_widen: float = 0.12
    """lip_stretch: outward motion of each corner, in mouth widths."""
    smile_widen: float = 0.10
    """smile_*: outward motion of the corner, in mouth widths."""
    smile_lift: float = 0.14
    """smile_*: upward motion of the corner, in mouth widths."""
    upper_lip_up: float = 0.10
    """upper_lip_up: upward motion of the upper lip's middle, in mouth widths."""
    lower_lip_down: float = 0.12
    """lower_lip_down: downward motion of the lower lip's middle, in mouth widths."""
    blink_lower_share: float = 0.2
    """blink_*: share of the closing done by the lower lid (the lids meet there at 1.0)."""
    brow_up: float = 0.10
    """brow_up: upward motion of the brows, in D."""
    brow_down: float = 0.06
    """brow_down: downward motion of the brows, in D (plus a little toward the nose)."""
    gaze_y: float = 0.5
    """gaze_y: vertical iris shift at 1.0, in iris radii."""


@dataclass(frozen=True)
class ExpressionBasis:
    """Displacement fields (len(EXPRESSION_NAMES), 478, 3) in canonical units (D = 1)."""

    positive: np.ndarray
    """Field used when a coefficient is >= 0."""
    negative: np.ndarray
    """Field used when a coefficient is < 0 (equal to ``positive`` except for gaze)."""


#: Displacements (in face widths, at a coefficient of 1) below this are dropped from the fields.
_NEGLIGIBLE = 1e-5


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _bump(t: np.ndarray) -> np.ndarray:
    """1 at t <= 0, smooth, exactly 0 at t >= 1."""
    return 1.0 - _smoothstep(t)


def _curve(q: np.ndarray, idx: np.ndarray, col: int = 1):
    """A contour as a function of canonical x (np.interp, clamped at the ends)."""
    xs = q[idx, 0]
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], q[idx, col][order]

    def f(x: np.ndarray) -> np.ndarray:
        return np.interp(x, xs, ys)

    return f


def _arc(contour: np.ndarray, a: int, b: int) -> np.ndarray:
    """The part of a closed ordered contour from landmark a to landmark b (inclusive, forward)."""
    c = list(contour)
    i, j = c.index(a), c.index(b)
    return np.asarray(c[i : j + 1] if i <= j else c[i:] + c[: j + 1], dtype=np.int64)


class _Face:
    """Geometry of the neutral face used by the field builders."""

    def __init__(self, q: np.ndarray) -> None:
        topo = face_topology()
        self.q = q
        self.x, self.y, self.z = q[:, 0], q[:, 1], q[:, 2]
        # lips: upper arcs run corner -> top middle -> corner, lower arcs the other way round
        self.upper_outer = _arc(topo.lips_outer, 291, 61)
        self.lower_outer = _arc(topo.lips_outer, 61, 291)
        self.upper_inner = _arc(topo.lips_inner, 308, 78)
        self.lower_inner = _arc(topo.lips_inner, 78, 308)
        self.corners = np.array([61, 291, 78, 308])
        self.xc = 0.5 * (q[61, 0] + q[291, 0])
        self.hw = 0.5 * abs(q[291, 0] - q[61, 0])
        self.wm = float(np.linalg.norm(q[291] - q[61]))
        up_in, lo_in = _curve(q, self.upper_inner), _curve(q, self.lower_inner)
        self.up_in = up_in
        self.split = lambda x: 0.5 * (up_in(x) + lo_in(x))
        self.up_out, self.lo_out = _curve(q, self.upper_outer), _curve(q, self.lower_outer)
        self.ym = float(self.split(np.array([self.xc]))[0])
        self.hh = max(
            float(self.lo_out(np.array([self.xc]))[0]) - self.ym,
            self.ym - float(self.up_out(np.array([self.xc]))[0]),
            0.02,
        )
        lips = np.unique(np.concatenate([topo.lips_outer, topo.lips_inner]))
        self.lips = lips
        # which side of the lip line: 0 upper, 1 lower, 0.5 corners (contours by membership)
        dx_out = np.abs(self.x - self.xc) - self.hw
        band = 0.03 + 0.5 * np.maximum(dx_out, 0.0)
        self.lower_side = _smoothstep(0.5 + (self.y - self._lip_line(self.x)) / band)
        self.lower_side[self.upper_outer] = 0.0
        self.lower_side[self.upper_inner] = 0.0
        self.lower_side[self.lower_outer] = 1.0
        self.lower_side[self.lower_inner] = 1.0
        self.lower_side[self.corners] = 0.5
        self.lower_side[_IRIS] = 0.0
        # mouth ellipse radius (1 on the lip outline, roughly)
        self.rho = np.hypot((self.x - self.xc) / self.hw, (self.y - self.ym) / self.hh)
        self.ell = np.sqrt(np.clip(1.0 - ((self.x - self.xc) / self.hw) ** 2, 0.0, 1.0))

    def _lip_line(self, x: np.ndarray) -> np.ndarray:
        """Lip line inside the mouth, then straight toward the ears at the jaw pivot's height."""
        q = self.q
        y = self.split(x)
        for corner, ear in ((291, 454), (61, 234)):
            cx, cy = q[corner, 0], self.split(np.array([q[corner, 0]]))[0]
            ex, ey = q[ear, 0], 0.5 * (q[93, 1] + q[323, 1]) + 0.15  # below the ear: ear level stays
            t = np.clip((x - cx) / (ex - cx), 0.0, 1.0)
            beyond = (x - cx) * np.sign(ex - cx) > 0
            y = np.where(beyond, cy + t * (ey - cy), y)
        return y

    def mouth_region(self, reach: float = 0.8) -> np.ndarray:
        """1 inside the lip ellipse, falling to exactly 0 at (1 + reach) ellipse radii."""
        w = _bump((self.rho - 1.0) / reach)
        # nothing at or above the nose base: the philtrum fades out halfway up
        y0, y2 = float(self.q[0, 1]), float(self.q[2, 1])
        w *= _smoothstep((self.y - y2) / max(0.5 * (y0 - y2), 0.01))
        w[_IRIS] = 0.0
        return w


def _jaw_open(f: _Face, cfg: BasisConfig) -> np.ndarray:
    q = f.q
    pivot = np.array([0.0, 0.5 * (q[93, 1] + q[323, 1]), 0.5 * (q[234, 2] + q[454, 2]) + 0.1])
    rel = q[14] - pivot
    target = cfg.jaw_gap * f.wm

    def drop(theta: float) -> float:
        return rel[1] * (np.cos(theta) - 1.0) - rel[2] * np.sin(theta)

    lo, hi = 0.0, 1.2
    for _ in range(50):  # bisection: the rotation that drops the lower lip middle by `target`
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if drop(mid) < target else (lo, mid)
    th = 0.5 * (lo + hi)
    c, s = np.cos(th), np.sin(th)
    r = q - pivot
    rotated = np.stack([r[:, 0], c * r[:, 1] - s * r[:, 2], s * r[:, 1] + c * r[:, 2]], axis=1)
    corner_d = np.minimum(
        np.linalg.norm(q[:, :2] - q[61, :2], axis=1), np.linalg.norm(q[:, :2] - q[291, :2], axis=1)
    )
    w = f.lower_side * (1.0 - cfg.jaw_corner_follow * _bump(corner_d / 0.15))
    # the mandible rotates about the joint and glides down with it: half rotation, half a drop
    # (both give the lower lip the same downward motion, so the calibration above holds)
    glide = np.zeros_like(q)
    glide[:, 1] = drop(th)
    a = cfg.jaw_rotation_share
    return w[:, None] * (a * (rotated - r) + (1.0 - a) * glide)


def _lip_shape(f: _Face, narrow: float, open_: float, protrude: float) -> np.ndarray:
    m = f.mouth_region()
    out = np.zeros_like(f.q)
    out[:, 0] = -narrow * (f.x - f.xc) * m
    side = 2.0 * f.lower_side - 1.0
    lipw = _bump((f.rho - 1.0) / 0.4)
    out[:, 1] = open_ * f.wm * side * f.ell * lipw * m
    out[:, 2] = -protrude * (0.5 + 0.5 * f.ell) * m
    return out


def _lip_press(f: _Face, cfg: BasisConfig) -> np.ndarray:
    x, y = f.x, f.y
    line = f.split(x)
    above = y < line
    outer = np.where(above, f.up_out(x), f.lo_out(x))
    inner = np.abs(f.up_in(x) - line)  # half the inner-lip gap (the line is its middle)
    # r: 0 on the inner contour, 1 on the outer contour
    r = np.clip(np.abs(y - line) - inner, 0.0, None) / np.maximum(np.abs(outer - line) - inner, 1e-3)
    r[f.upper_inner] = 0.0
    r[f.lower_inner] = 0.0
    g = np.where(r <= 1.0, 1.0 - (1.0 - cfg.press_thin) * r, cfg.press_thin * _bump((r - 1.0) / 0.6))
    lateral = _bump((np.abs(x - f.xc) - f.hw) / 0.05)
    g = g * lateral * f.mouth_region()
    out = np.zeros_like(f.q)
    out[:, 1] = (line - y) * g
    return out


def _stretch(f: _Face, cfg: BasisConfig) -> np.ndarray:
    m = f.mouth_region()
    u = np.clip((f.x - f.xc) / f.hw, -1.0, 1.0)
    out = np.zeros_like(f.q)
    out[:, 0] = cfg.stretch_widen * f.wm * u * m
    out[:, 1] = -0.15 * (f.y - f.ym) * np.abs(u) * m
    out[:, 2] = 0.03 * np.abs(u) * m
    return out


def _smile(f: _Face, cfg: BasisConfig, corner: int) -> np.ndarray:
    q = f.q
    s = np.sign(q[corner, 0] - f.xc)
    k = _bump(np.linalg.norm(q[:, :2] - q[corner, :2], axis=1) / 0.42)
    side = _smoothstep(0.5 + s * (f.x - f.xc) / (0.6 * f.hw))
    # the nose stays: above the nose base only the cheek beside the nostrils moves
    nose_base = float(q[2, 1]) + 0.03
    off_nose = np.where(f.y < nose_base, _smoothstep((np.abs(f.x - f.xc) - 0.3) / 0.1), 1.0)
    w = k * side * off_nose
    w[_IRIS] = 0.0
    out = np.zeros_like(q)
    out[:, 0] = s * cfg.smile_widen * f.wm * w
    out[:, 1] = -cfg.smile_lift * f.wm * w
    out[:, 2] = 0.03 * w
    return out


def _lip_vertical(f: _Face, amount: float, upper: bool) -> np.ndarray:
    x, y = f.x, f.y
    if upper:
        side = 1.0 - f.lower_side
        edge = f.up_out(x)
        reach = max(0.8 * (float(f.up_out(np.array([f.xc]))[0]) - f.y[2]), 0.03)  # to the nose base
        beyond = np.clip(edge - y, 0.0, None)  # above the outer upper contour
        sign = -1.0
    else:
        side = f.lower_side.copy()
        edge = f.lo_out(x)
        reach = max(0.5 * (f.y[152] - float(f.lo_out(np.array([f.xc]))[0])), 0.03)
        beyond = np.clip(y - edge, 0.0, None)
        sign = 1.0
    side = np.where(np.abs(x - f.xc) < f.hw, side, 0.0)
    w = side * f.ell * _bump(beyond / reach)
    w[_IRIS] = 0.0
    out = np.zeros_like(f.q)
    out[:, 1] = sign * amount * f.wm * w
    out[:, 2] = -0.02 * f.wm * w
    return out


def _blink(f: _Face, cfg: BasisConfig, contour: np.ndarray, outer: int, inner: int) -> np.ndarray:
    q = f.q
    a, b = (outer, inner) if q[outer, 0] < q[inner, 0] else (inner, outer)
    # the lid arcs between the corners: the one with smaller y is the upper lid
    arc1, arc2 = _arc(contour, a, b), _arc(contour, b, a)
    if q[arc1, 1].mean() > q[arc2, 1].mean():
        arc1, arc2 = arc2, arc1
    up_y, lo_y = _curve(q, arc1, 1), _curve(q, arc2, 1)
    up_z, lo_z = _curve(q, arc1, 2), _curve(q, arc2, 2)
    x0, x1 = q[a, 0], q[b, 0]
    x = f.x
    share = cfg.blink_lower_share
    meet_y = lo_y(x) + share * (up_y(x) - lo_y(x))
    meet_z = lo_z(x) + share * (up_z(x) - lo_z(x))
    inside = (x > x0) & (x < x1)
    height = 0.35 * (x1 - x0)
    out = np.zeros_like(q)
    # skin above the upper lid and below the lower lid follows with a falloff
    above = np.clip(up_y(x) - f.y, 0.0, None)
    below = np.clip(f.y - lo_y(x), 0.0, None)
    w_up = np.where(inside & (f.y <= up_y(x)), _bump(above / height), 0.0)
    w_lo = np.where(inside & (f.y >= lo_y(x)), _bump(below / (0.5 * height)), 0.0)
    out[:, 1] = w_up * (meet_y - up_y(x)) + w_lo * (meet_y - lo_y(x))
    # the lid contours themselves land exactly on the meeting curve
    for arc in (arc1, arc2):
        lid = arc[1:-1]
        out[lid, 1] = meet_y[lid] - f.y[lid]
        out[lid, 2] = meet_z[lid] - f.z[lid]
    out[_IRIS] = 0.0
    out[[a, b]] = 0.0
    return out


def _brows(f: _Face, cfg: BasisConfig, up: bool) -> np.ndarray:
    topo = face_topology()
    weights = []
    for brow, eye in ((topo.left_brow, topo.left_eye), (topo.right_brow, topo.right_eye)):
        by = float(f.y[brow].mean())
        lid_top = float(f.y[eye].min()) - 0.04
        bx0, bx1 = float(f.x[brow].min()), float(f.x[brow].max())
        lateral = _bump(np.maximum(np.maximum(bx0 - f.x, f.x - bx1), 0.0) / 0.12)
        below = np.clip((f.y - by) / max(lid_top - by, 0.02), 0.0, None)
        above = np.clip((by - f.y) / 0.45, 0.0, None)
        vert = np.where(f.y >= by, _bump(below), _bump(above))
        vert = np.where(f.y >= lid_top, 0.0, vert)
        w = lateral * vert
        w[brow] = 1.0
        weights.append(w)
    w = np.maximum(weights[0], weights[1])
    w[_IRIS] = 0.0
    out = np.zeros_like(f.q)
    if up:
        out[:, 1] = -cfg.brow_up * w
    else:
        out[:, 1] = cfg.brow_down * w
        out[:, 0] = -0.4 * cfg.brow_down * np.sign(f.x) * w
    return out


def _gaze(f: _Face, cfg: BasisConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(gaze_x +, gaze_x -, gaze_y +, gaze_y -) fields: 1.0 puts the iris edge at the eye corner."""
    topo = face_topology()
    q = f.q
    fields = [np.zeros_like(q) for _ in range(4)]
    for center, ring, contour in (
        (LEFT_IRIS_CENTER, topo.left_iris, topo.left_eye),
        (RIGHT_IRIS_CENTER, topo.right_iris, topo.right_eye),
    ):
        pts = np.concatenate([[center], ring])
        r = float(np.linalg.norm(q[ring, :2] - q[center, :2], axis=1).mean())
        xl, xr = float(q[contour, 0].min()), float(q[contour, 0].max())
        cx = float(q[center, 0])
        fields[0][pts, 0] = max(0.0, xr - r - cx)
        fields[1][pts, 0] = max(0.0, cx - (xl + r))  # multiplied by a negative coefficient
        fields[2][pts, 1] = cfg.gaze_y * r
        fields[3][pts, 1] = cfg.gaze_y * r
    return fields[0], fields[1], fields[2], fields[3]


def build_basis(q: np.ndarray, config: BasisConfig | None = None) -> ExpressionBasis:
    """All expression fields for a neutral face given in canonical coordinates (478, 3), D = 1."""
    cfg = config or BasisConfig()
    f = _Face(np.asarray(q, dtype=np.float64))
    topo = face_topology()
    gx_pos, gx_neg, gy_pos, gy_neg = _gaze(f, cfg)
    fields = {
        "jaw_open": _jaw_open(f, cfg),
        "lip_funnel": _lip_shape(f, cfg.funnel_narrow, cfg.funnel_open, cfg.funnel_protrude),
        "lip_pucker": _lip_shape(f, cfg.pucker_narrow, 0.0, cfg.pucker_protrude),
        "lip_press": _lip_press(f, cfg),
        "lip_stretch": _stretch(f, cfg),
        "smile_l": _smile(f, cfg, 291),
        "smile_r": _smile(f, cfg, 61),
        "upper_lip_up": _lip_vertical(f, cfg.upper_lip_up, upper=True),
        "lower_lip_down": _lip_vertical(f, cfg.lower_lip_down, upper=False),
        "blink_l": _blink(f, cfg, topo.left_eye, 263, 362),
        "blink_r": _blink(f, cfg, topo.right_eye, 33, 133),
        "brow_up": _brows(f, cfg, up=True),
        "brow_down": _brows(f, cfg, up=False),
        "gaze_x": gx_pos,
        "gaze_y": gy_pos,
    }
    pos = np.stack([fields[n] for n in EXPRESSION_NAMES]).astype(np.float64)
    neg = pos.copy()
    neg[EXPRESSION_NAMES.index("gaze_x")] = gx_neg
    neg[EXPRESSION_NAMES.index("gaze_y")] = gy_neg
    pos[~np.isfinite(pos)] = 0.0
    neg[~np.isfinite(neg)] = 0.0
    # the falloffs leave specks far out (1e-7 face widths): a landmark moved by less than
    # _NEGLIGIBLE at full strength does not move, so each field's support is exact
    pos[np.linalg.norm(pos, axis=2) < _NEGLIGIBLE] = 0.0
    neg[np.linalg.norm(neg, axis=2) < _NEGLIGIBLE] = 0.0
    return ExpressionBasis(positive=pos, negative=neg)
