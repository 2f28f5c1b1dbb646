"""Settings of the ``warp`` renderer."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WarpConfig"]


@dataclass(frozen=True)
class WarpConfig:
    """How the warp renderer builds its mesh and synthesises mouth interior and eyelids."""

    threads: int = 1
    """OpenCV threads used while rendering (``cv2.setNumThreads``); 1 keeps one core per stream."""
    ring_scales: tuple[float, ...] = (1.15, 1.4, 1.75, 2.2)
    """Outer rings around the face oval, as scale factors of the oval about the face centre."""
    ring_follow: tuple[float, ...] = (1.0, 0.92, 0.5, 0.06)
    """How much each ring follows the head's similarity motion (the rest follows the torso)."""
    ring_residual: tuple[float, ...] = (0.5, 0.15, 0.0, 0.0)
    """How much of the oval's non-rigid motion (jaw opening) each ring carries."""
    border_points: int = 8
    """Fixed points per image side (plus corners): they pin the background."""
    torso_grid: int = 8
    """Cells per image side of the grid that carries the torso (points near the rings are dropped)."""
    torso_keypoints: tuple[int, ...] = (11, 12, 13, 14, 23, 24)
    """Body keypoints (mediapipe pose) whose residuals move the torso grid."""
    torso_reach: float = 0.5
    """Torso motion falls off with distance from the keypoints, in shoulder widths."""
    map_downsample: int = 2
    """The backward map is computed every this many pixels and bilinearly upsampled (1 = exact)."""
    move_epsilon: float = 0.01
    """Vertices that move less than this (pixels) count as still (the map is identity there)."""
    upper_teeth_share: float = 0.6
    """Share of the photo's own mouth opening that stays attached to the upper lip (upper teeth)."""
    mouth_open_range: float = 0.06
    """Extra opening (gap / mouth width beyond the photo's) at which the synthetic interior is full."""
    default_teeth_rgb: tuple[int, int, int] = (222, 214, 196)
    """Teeth colour when the photo shows none."""
    lid_strength: float = 0.85
    """Opacity of the synthesised lid skin when the eye is fully closed."""
    feather: float = 0.035
    """Edge softness of the mouth interior and lids, as a fraction of the mouth / eye width."""
