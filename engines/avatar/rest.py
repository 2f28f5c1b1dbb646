"""The photo's own mouth expression, and closing the lips of the rig's rest.

A photo taken mid-speech (lips apart) or smiling would otherwise be the rig's rest: the avatar would
keep that mouth when silent and open it further when speaking. :func:`estimate_mouth_expression`
reads the photo's mouth as coefficients of the rig's 9 mouth channels (``jaw_open`` ...
``lower_lip_down``); the rig takes their displacement out of its rest and :func:`lip_seal` closes
whatever gap is left (``RigConfig.closed_rest``).

The model. Only the photo is known, so its neutral face ``N`` is written as the photo's landmarks
``Q`` minus the rig's own linear fields ``B_k`` (built from this photo; canonical head frame, units
of the outer-eye-corner distance D): ``N = Q - sum_k c_k B_k``, and ``c`` is the maximum
a-posteriori estimate under two priors:

* **a closed, neutral mouth** (Gaussian, on shape features of ``N`` that are linear in the
  landmarks, so in ``c``: :func:`mouth_features`): the 5 inner-lip gaps across the middle of the
  mouth (upper 81 82 13 312 311 over lower 178 87 14 317 402, canonical y) are 0 when the lips
  touch; the mouth width (61 to 291), the mean drop of the two corners below the middle of the lip
  line (13, 14), the difference of the two drops and the lower face length (nose base 2 to chin
  152) lie near population means. Everyone's mouth differs, so each shape feature may sit anywhere
  within ``band`` SDs of its mean at no cost (a bounded slack per feature): only a mouth clearly
  outside the usual range (a broad smile) is read as expression. The means and SDs
  (:class:`RestPrior`) were measured on the closed-mouth frames of ~30 real talking clips (FaceMesh,
  refine_landmarks=True; mediapipe's canonical face model agrees: width 0.553 D): width
  0.54 +- 0.05 D, corner drop 0.017 +- 0.015 D, drop difference 0 +- 0.026 D, lower face
  0.78 +- 0.065 D, inner-lip gaps below 0.01 D (pairs within ~0.01 D in x, y and z).
* **what photos usually show** (a ridge per channel, ``coefficient_sd``): a mouth opens mostly by
  the jaw and a smile is common, while ``upper_lip_up`` / ``lower_lip_down`` and the other lip
  shapes are held close to 0 (as ``training/motion/real_clips.py`` reads clips); then a dead zone:
  channels below ``dead_zone`` are dropped and the others refitted, so the natural spread of closed
  mouths reads as exactly 0 and such a photo keeps its own face.

That is a bounded linear least-squares problem (coefficients in ``[0, max_coefficient]``, slacks in
``[-band, band]``), solved exactly with scipy's BVLS. Gaze, blinks and brows are not estimated (0).

Why a seal. The fields cannot match every opening: the rig's jaw opens the mouth almost evenly from
corner to corner, a real mouth opens like an ellipse. So once the estimate is taken out some gap may
remain in the middle, or the lips may cross near the corners; :func:`lip_seal` moves each inner-lip
pair to its midpoint (the lips between their inner and outer contours follow in proportion), which
closes the rest exactly without moving the outer lip outline or the skin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlogger.engines.avatar.basis import ExpressionBasis
from vlogger.engines.avatar.topology import face_topology
from vlogger.engines.types import EXPRESSION_NAMES

__all__ = [
    "LOWER_INNER_LIP",
    "MOUTH_CHANNELS",
    "UPPER_INNER_LIP",
    "RestPrior",
    "box_lsq",
    "estimate_mouth_expression",
    "lip_seal",
    "mouth_features",
]

#: The expression channels a photo's mouth is read as (the first 9 of ``EXPRESSION_NAMES``).
MOUTH_CHANNELS: tuple[str, ...] = EXPRESSION_NAMES[:9]
#: Inner-lip landmark pairs (upper, lower) across the mouth, corner to corner, without the shared
#: corners 78 and 308; each pair touches when the lips are closed.
UPPER_INNER_LIP: tuple[int, ...] = (191, 80, 81, 82, 13, 312, 311, 310, 415)
LOWER_INNER_LIP: tuple[int, ...] = (95, 88, 178, 87, 14, 317, 402, 318, 324)
# the 5 pairs across the middle of the mouth (81/178 ... 311/402)
_CENTRAL_UPPER, _CENTRAL_LOWER = list(UPPER_INNER_LIP[2:7]), list(LOWER_INNER_LIP[2:7])
_CORNERS = (291, 61)  # the person's left (image right), right
_NOSE_BASE, _CHIN = 2, 152


@dataclass(frozen=True)
class RestPrior:
    """What a closed-lip neutral mouth looks like and how strongly to believe it (units: D, the
    outer-eye-corner distance, in the head's canonical frame; y points down)."""

    gap_sd: float = 0.01
    """Spread of each inner-lip gap of a closed mouth (its mean is 0): small, so closing the lips
    dominates the estimate."""
    width_mean: float = 0.55
    """Mouth width, corner 61 to corner 291."""
    width_sd: float = 0.06
    """Spread of the mouth width between people."""
    corner_drop_mean: float = 0.017
    """How far each mouth corner sits below the middle of the lip line (13, 14)."""
    corner_drop_sd: float = 0.015
    """Spread of the corner height between people."""
    corner_asymmetry_sd: float = 0.04
    """Spread of the difference between the left and the right corner's drop (its mean is 0);
    wider than measured (0.026) because head yaw and lopsided mouths read as one-sided smiles."""
    lower_face_mean: float = 0.775
    """Lower face length: nose base (2) to chin (152), which the jaw lengthens."""
    lower_face_sd: float = 0.07
    """Spread of the lower face length between people (a weak cue for the jaw)."""
    coefficient_sd: tuple[tuple[str, float], ...] = (
        ("jaw_open", 1.0),
        ("lip_funnel", 0.15),
        ("lip_pucker", 0.15),
        ("lip_press", 0.15),
        ("lip_stretch", 0.15),
        ("smile_l", 1.0),
        ("smile_r", 1.0),
        ("upper_lip_up", 0.2),
        ("lower_lip_down", 0.2),
    )
    """Prior spread of each mouth coefficient in photos (a ridge of 1 / sd^2; missing names: 1)."""
    band: float = 1.5
    """Shape features (all but the gaps) within this many SDs of their mean cost nothing."""
    dead_zone: float = 0.05
    """Coefficients below this are dropped (set to 0, the others refitted without them)."""
    max_coefficient: float = 1.0
    """Upper bound of each estimated coefficient (the rig's range)."""


def mouth_features(q: np.ndarray) -> np.ndarray:
    """The shape features of a (478, 3) canonical face (or of a displacement field: the map is
    linear): the 5 central inner-lip gaps, the mouth width, the mean drop of the corners below the
    middle of the lip line, the left drop minus the right one, and the lower face length."""
    p = np.asarray(q, dtype=np.float64)
    y = p[:, 1]
    gaps = y[_CENTRAL_LOWER] - y[_CENTRAL_UPPER]
    width = p[_CORNERS[0], 0] - p[_CORNERS[1], 0]
    line = 0.5 * (y[13] + y[14])
    drop_l, drop_r = (y[c] - line for c in _CORNERS)
    lower = y[_CHIN] - y[_NOSE_BASE]
    return np.concatenate([gaps, [width, 0.5 * (drop_l + drop_r), drop_l - drop_r, lower]])


def _targets(prior: RestPrior) -> tuple[np.ndarray, np.ndarray]:
    n_gap = len(_CENTRAL_UPPER)
    mean = np.concatenate(
        [
            np.zeros(n_gap),
            [prior.width_mean, prior.corner_drop_mean, 0.0, prior.lower_face_mean],
        ]
    )
    sd = np.concatenate(
        [
            np.full(n_gap, prior.gap_sd),
            [prior.width_sd, prior.corner_drop_sd, prior.corner_asymmetry_sd, prior.lower_face_sd],
        ]
    )
    return mean, sd


def estimate_mouth_expression(
    canonical: np.ndarray, basis: ExpressionBasis, prior: RestPrior | None = None
) -> np.ndarray:
    """The photo's mouth expression, (len(EXPRESSION_NAMES),) float32, non-zero only in the mouth
    channels: the MAP estimate described in the module docstring (zeros for non-finite input).

    ``canonical``: the photo's (478, 3) landmarks in the head's canonical frame, units of D (as the
    rig computes them); ``basis``: the rig's expression fields built from those landmarks.
    """
    pr = prior or RestPrior()
    q = np.asarray(canonical, dtype=np.float64)
    out = np.zeros(len(EXPRESSION_NAMES), dtype=np.float32)
    if q.shape != (478, 3) or not np.isfinite(q).all():
        return out
    mean, sd = _targets(pr)
    b = (mouth_features(q) - mean) / sd
    idx = [EXPRESSION_NAMES.index(n) for n in MOUTH_CHANNELS]
    n_c, n_gap = len(idx), len(_CENTRAL_UPPER)
    n_shape = b.shape[0] - n_gap
    # unknowns: the coefficients c, then one slack per shape feature (the neutral face may sit
    # anywhere within +-band SDs of the population mean at no cost)
    a = np.zeros((b.shape[0], n_c + n_shape))
    a[:, :n_c] = np.stack([mouth_features(basis.positive[k]) / sd for k in idx], axis=1)
    a[n_gap:, n_c:] = np.eye(n_shape)
    tau = dict(pr.coefficient_sd)
    ridge = np.zeros(n_c + n_shape)
    ridge[:n_c] = [1.0 / max(tau.get(n, 1.0), 1e-6) ** 2 for n in MOUTH_CHANNELS]
    hi = max(float(pr.max_coefficient), 1e-6)
    lo_b = np.concatenate([np.zeros(n_c), np.full(n_shape, -pr.band)])
    hi_b = np.concatenate([np.full(n_c, hi), np.full(n_shape, pr.band)])
    # the ridge as extra rows: |a x - b|^2 + sum ridge x^2 within the bounds
    a_full = np.vstack([a, np.diag(np.sqrt(ridge))])
    b_full = np.concatenate([b, np.zeros(n_c + n_shape)])

    def solve(cols: np.ndarray) -> np.ndarray:
        x = np.zeros(n_c + n_shape)
        x[cols] = box_lsq(a_full[:, cols], b_full, lo_b[cols], hi_b[cols])
        return x

    try:
        x = solve(np.arange(n_c + n_shape))
        faint = np.flatnonzero(x[:n_c] < pr.dead_zone)
        if faint.size == n_c:
            return out
        if faint.size:  # drop the faint channels and refit the others without them
            x = solve(np.setdiff1d(np.arange(n_c + n_shape), faint))
    except (ValueError, np.linalg.LinAlgError):  # degenerate fields: read the mouth as neutral
        return out
    c = np.where(x[:n_c] >= pr.dead_zone, x[:n_c], 0.0)
    out[idx] = c.astype(np.float32)
    return out


def box_lsq(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """argmin |a x - b|^2 with lo <= x <= hi, for a full-column-rank ``a`` (a strictly convex box QP).

    Active-set iterations (solve for the free variables, clip, repeat) polished by cyclic coordinate
    descent until the optimality conditions hold; the same optimum as scipy's BVLS, without importing
    scipy.optimize (0.2-0.3 s) on every photo fit.
    """
    h = a.T @ a
    g = a.T @ b
    n = h.shape[0]
    if not np.all(np.isfinite(h)) or np.linalg.matrix_rank(h) < n:
        raise np.linalg.LinAlgError("the least-squares problem is rank deficient")
    x = np.clip(np.linalg.solve(h, g), lo, hi)
    scale = max(float(np.abs(g).max()), 1e-12)

    def converged(x: np.ndarray) -> bool:
        grad = h @ x - g  # KKT: zero gradient inside, pointing outward at a bound
        bad = np.where(x <= lo, np.minimum(grad, 0.0), np.where(x >= hi, np.maximum(grad, 0.0), grad))
        return float(np.abs(bad).max()) <= 1e-10 * scale

    for _ in range(4 * n + 4):
        grad = h @ x - g
        fixed = ((x <= lo) & (grad > 0)) | ((x >= hi) & (grad < 0))
        free = ~fixed
        y = x.copy()
        if free.any():
            rhs = g[free] - h[np.ix_(free, fixed)] @ x[fixed]
            y[free] = np.linalg.solve(h[np.ix_(free, free)], rhs)
        y = np.clip(y, lo, hi)
        if np.array_equal(y, x):
            break
        x = y
    for _ in range(10000):  # coordinate descent: converges for any start on a strictly convex QP
        if converged(x):
            break
        for i in range(n):
            x[i] = min(max(x[i] - (h[i] @ x - g[i]) / h[i, i], lo[i]), hi[i])
    return x


def _interp(x: np.ndarray, xs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation over canonical x (clamped at the ends), one column at a time."""
    order = np.argsort(xs, kind="stable")
    v = np.asarray(values, dtype=np.float64).reshape(len(xs), -1)
    return np.stack([np.interp(x, xs[order], v[order, k]) for k in range(v.shape[1])], axis=-1)


def lip_seal(neutral: np.ndarray) -> np.ndarray:
    """(478, 3) canonical displacement that closes what inner-lip gap ``neutral`` has left.

    The linear fields cannot match every photo's opening (the rig's jaw opens the mouth almost
    evenly from corner to corner, a real mouth opens like an ellipse), so after the estimated
    expression is taken out some gap may remain in the middle, or the lips may cross near the
    corners. Each inner-lip pair (``UPPER_INNER_LIP[i]``, ``LOWER_INNER_LIP[i]``) moves to its
    midpoint, in 3D (closed mouths have the pairs within ~0.01 D of each other in x, y and z); the
    points of each lip between its inner and its outer contour follow in proportion (the pair's
    motion, interpolated across the mouth, times 1 on the inner contour falling to 0 on the outer
    one), so the outer lip outline and the skin stay where they are.
    """
    q = np.asarray(neutral, dtype=np.float64)
    out = np.zeros_like(q)
    if q.shape != (478, 3) or not np.isfinite(q).all():
        return out
    topo = face_topology()
    inner, outer = topo.lips_inner.astype(np.int64), topo.lips_outer.astype(np.int64)
    up_in_idx, lo_in_idx = _arc(inner, 308, 78), _arc(inner, 78, 308)
    up_out_idx, lo_out_idx = _arc(outer, 291, 61), _arc(outer, 61, 291)
    up = np.array([78, *UPPER_INNER_LIP, 308])
    lo = np.array([78, *LOWER_INNER_LIP, 308])
    mid = 0.5 * (q[up] + q[lo])
    d_up, d_lo = mid - q[up], mid - q[lo]  # zero at the shared corners
    x, y = q[:, 0], q[:, 1]

    def curve(idx: list[int]) -> np.ndarray:
        return _interp(x, q[idx, 0], q[idx, 1])[:, 0]

    up_in, lo_in, up_out, lo_out = curve(up_in_idx), curve(lo_in_idx), curve(up_out_idx), curve(lo_out_idx)
    x0, x1 = float(q[[61, 291], 0].min()), float(q[[61, 291], 0].max())
    inside = (x > x0) & (x < x1) & (y >= up_out) & (y <= lo_out)
    upper = y < 0.5 * (up_in + lo_in)
    w_up = np.clip((y - up_out) / np.maximum(up_in - up_out, 1e-3), 0.0, 1.0)
    w_lo = np.clip((lo_out - y) / np.maximum(lo_out - lo_in, 1e-3), 0.0, 1.0)
    w = np.where(inside, np.where(upper, w_up, w_lo), 0.0)
    w[up_out_idx + lo_out_idx] = 0.0
    w[np.arange(468, 478)] = 0.0
    out = np.where(upper[:, None], _interp(x, q[up, 0], d_up), _interp(x, q[lo, 0], d_lo)) * w[:, None]
    out[up] = d_up  # the inner contours exactly (crossed lips may lie on the other side of the line)
    out[lo[1:-1]] = d_lo[1:-1]
    return out


def _arc(contour: np.ndarray, a: int, b: int) -> list[int]:
    """The part of a closed ordered contour from landmark a to landmark b (inclusive, forward)."""
    c = [int(v) for v in contour]
    i, j = c.index(a), c.index(b)
    return c[i : j + 1] if i <= j else c[i:] + c[: j + 1]
