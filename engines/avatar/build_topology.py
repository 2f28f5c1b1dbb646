"""Build ``assets/face_topology.npz`` from mediapipe's face-mesh connection lists.

mediapipe ships the 478-point topology only as edge lists (``FACEMESH_TESSELATION`` and the
contour sets); this script rebuilds the triangles (3-cliques of the tessellation graph) and the
ordered contours (lips, eyes, irises, brows, face oval) that the rig and renderers use, so the
runtime never needs mediapipe just to know the topology. Run::

    python -m vlogger.engines.avatar.build_topology
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

__all__ = ["build", "main"]

OUT = Path(__file__).with_name("assets") / "face_topology.npz"


def _triangles(edges: set[tuple[int, int]]) -> np.ndarray:
    und = {(min(a, b), max(a, b)) for a, b in edges}
    adj: dict[int, set[int]] = defaultdict(set)
    for a, b in und:
        adj[a].add(b)
        adj[b].add(a)
    tris = sorted({tuple(sorted((a, b, c))) for a, b in und for c in adj[a] & adj[b]})
    # A 3-clique is not always a face: where all three edges are also shared by two other
    # triangles, the clique covers real faces (e.g. 49-64-129). A surface has <= 2 faces per edge.
    uses: dict[tuple[int, int], int] = defaultdict(int)
    for a, b, c in tris:
        for e in ((a, b), (a, c), (b, c)):
            uses[e] += 1
    faces = [t for t in tris if min(uses[(t[0], t[1])], uses[(t[0], t[2])], uses[(t[1], t[2])]) <= 2]
    return np.asarray(faces, dtype=np.int32)


def _loops(edges: set[tuple[int, int]]) -> list[list[int]]:
    """Split an edge set into closed loops (each an ordered vertex list)."""
    adj: dict[int, list[int]] = defaultdict(list)
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    seen: set[int] = set()
    loops = []
    for start in sorted(adj):
        if start in seen:
            continue
        loop = [start]
        seen.add(start)
        prev, cur = -1, start
        while True:
            nxt = [n for n in adj[cur] if n != prev and (n not in seen or n == start)]
            if not nxt or nxt[0] == start:
                break
            prev, cur = cur, nxt[0]
            loop.append(cur)
            seen.add(cur)
        loops.append(loop)
    return loops


def build() -> dict[str, np.ndarray]:
    import mediapipe as mp  # build-time only

    fm = mp.solutions.face_mesh_connections
    out: dict[str, np.ndarray] = {"triangles": _triangles(set(fm.FACEMESH_TESSELATION))}
    lips = sorted(_loops(set(fm.FACEMESH_LIPS)), key=len, reverse=True)
    # the outer lip loop encloses the inner one; both have 20 points: tell them apart by index 0/13
    outer = next(lp for lp in lips if 0 in lp)
    inner = next(lp for lp in lips if 13 in lp)
    out["lips_outer"] = np.asarray(outer, np.int32)
    out["lips_inner"] = np.asarray(inner, np.int32)
    for name, edges in [
        ("left_eye", fm.FACEMESH_LEFT_EYE),
        ("right_eye", fm.FACEMESH_RIGHT_EYE),
        ("left_iris", fm.FACEMESH_LEFT_IRIS),
        ("right_iris", fm.FACEMESH_RIGHT_IRIS),
        ("face_oval", fm.FACEMESH_FACE_OVAL),
    ]:
        loops = _loops(set(edges))
        out[name] = np.asarray(max(loops, key=len), np.int32)
    for name, edges in [("left_brow", fm.FACEMESH_LEFT_EYEBROW), ("right_brow", fm.FACEMESH_RIGHT_EYEBROW)]:
        out[name] = np.asarray(sorted({i for e in edges for i in e}), np.int32)
    out["nose"] = np.asarray(sorted({i for e in fm.FACEMESH_NOSE for i in e}), np.int32)
    return out


def main() -> None:
    data = build()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **data)  # type: ignore[arg-type]
    for k, v in data.items():
        print(f"{k:12s} {v.shape}")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
