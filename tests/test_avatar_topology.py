"""The committed face topology is a proper surface with the named contours in place."""

from __future__ import annotations

from collections import Counter

import numpy as np

from vlogger.engines.avatar.topology import NUM_LANDMARKS, face_topology


def test_triangles_form_a_surface() -> None:
    topo = face_topology()
    tris = topo.triangles
    assert len(tris) > 800 and tris.max() < 468 and tris.min() >= 0
    edges = Counter(
        tuple(sorted(e)) for t in tris.tolist() for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2]))
    )
    assert max(edges.values()) == 2, "no edge may be shared by more than two triangles"
    assert len({tuple(sorted(t)) for t in tris.tolist()}) == len(tris)
    # the boundary (edges used once) is the face outline plus the eye and mouth holes
    boundary = {i for e, n in edges.items() if n == 1 for i in e}
    assert set(topo.face_oval.tolist()) <= boundary
    assert set(topo.lips_inner.tolist()) <= boundary
    assert set(topo.left_eye.tolist()) <= boundary and set(topo.right_eye.tolist()) <= boundary


def test_contours_are_the_named_landmarks() -> None:
    topo = face_topology()
    assert topo.lips_inner[0] == 13 and 14 in topo.lips_inner
    assert topo.lips_outer[0] == 0 and 17 in topo.lips_outer
    assert set(topo.left_iris.tolist()) == {474, 475, 476, 477}
    assert set(topo.right_iris.tolist()) == {469, 470, 471, 472}
    assert 33 in topo.right_eye and 263 in topo.left_eye
    for name in ("lips_outer", "lips_inner", "left_eye", "right_eye", "face_oval"):
        contour = getattr(topo, name)
        assert len(np.unique(contour)) == len(contour) and contour.max() < NUM_LANDMARKS
