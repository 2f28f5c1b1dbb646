"""Face measures from landmarks: moved to :mod:`vlogger.engines.metrics` (import them from there).

Re-exported here so code written against the old path keeps working.
"""

from __future__ import annotations

from vlogger.engines.metrics import eye_openness, face_width, mouth_opening

__all__ = ["eye_openness", "face_width", "mouth_opening"]
