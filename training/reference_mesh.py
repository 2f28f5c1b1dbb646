"""mediapipe FaceMesh with ``refine_landmarks=True``: the reference for real mouths.

The runtime fits faces with its own landmarker (``vlogger.engines.avatar.landmarks``: mediapipe's
face, pose and hand models run by onnxruntime, the attention face model's custom ops in numpy), which
gives FaceMesh(refine_landmarks=True)'s landmarks within 0.02% of the eye distance. mediapipe itself
stays the measuring stick for real mouths, so that those figures stay comparable across versions:
the mouth read-out's training targets (``training/motion/real_clips.py``) and the lip-sync
benchmarks (``benchmarks/lipsync.py``, ``lipsync_render.py``, ``teacher_lipsync.py``).
mediapipe 0.10.21 pins protobuf<5, so it is installed in a side environment, never beside the runtime::

    python -m venv .venv-ref && .venv-ref/bin/pip install -e ".[reference]"
"""

from __future__ import annotations

from typing import Any

__all__ = ["MissingReference", "face_mesh"]

INSTALL_HINT = (
    "mediapipe (the lip-sync reference, FaceMesh refine_landmarks=True) is not installed here. It pins "
    "protobuf<5, so it lives in a side environment: python -m venv .venv-ref && "
    '.venv-ref/bin/pip install -e ".[reference]", then run this with .venv-ref/bin/python'
)


class MissingReference(RuntimeError):
    """mediapipe is not installed in this environment."""


def face_mesh(static: bool, min_detection_confidence: float = 0.5, max_faces: int = 1) -> Any:
    """A ``mediapipe.solutions.face_mesh.FaceMesh(refine_landmarks=True)`` (a context manager)."""
    try:
        import mediapipe as mp
    except ImportError as exc:
        raise MissingReference(INSTALL_HINT) from exc
    return mp.solutions.face_mesh.FaceMesh(
        static_image_mode=static,
        max_num_faces=max_faces,
        refine_landmarks=True,
        min_detection_confidence=min_detection_confidence,
    )
