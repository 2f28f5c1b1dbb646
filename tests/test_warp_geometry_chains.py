"""The warp renderer's lip and lid chains: the upper chain is the one with the upper landmark."""

from __future__ import annotations

import numpy as np

from vlogger.engines.avatar import load_avatar
from vlogger.engines.avatar.topology import face_topology
from vlogger.engines.render.warp.geometry import eye_chains


def test_touching_lips_keep_the_upper_chain_upper() -> None:
    """A closed mouth whose inner lips coincide (gap ~0.01 px, as FaceMesh gives for some closed
    photos): the mean y of the two chains is a coin toss, the landmark 13 is not."""
    face = load_avatar(None).fit.face.astype(np.float64).copy()
    contour = np.asarray(face_topology().lips_inner, np.int64)
    for shift in (-0.01, 0.0, 0.01):  # the lower lip a hair above, on, or below the upper one
        f = face.copy()
        _, _, upper_ref, lower_ref = eye_chains(contour, face)
        # both chains run from the same corner: put each lower-lip point on its counterpart of the
        # upper lip, `shift` px below (or above, for a negative shift)
        for u, lo in zip(upper_ref, lower_ref, strict=False):
            f[lo, :2] = f[u, :2] + [0.0, shift]
        _, _, upper, lower = eye_chains(contour, f)
        assert 13 in upper and 14 in lower
