"""The ``warp`` renderer: a piecewise-affine warp of the photo, plus mouth interior and eyelids."""

from __future__ import annotations

import cv2
import numpy as np

from vlogger.engines.avatar.topology import (
    LEFT_IRIS_CENTER,
    NUM_LANDMARKS,
    RIGHT_IRIS_CENTER,
    face_topology,
)
from vlogger.engines.avatar.types import AvatarFit, PosedFrame
from vlogger.engines.errors import InputError

from .config import WarpConfig
from .eyes import EyeModel
from .mesh import WarpMesh
from .mouth import MouthModel
from .raster import compute_backward_map

__all__ = ["WarpRenderer"]


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise InputError(f"the avatar image must be an RGB array of shape (H, W, 3), got {shape}")
    if image.dtype != np.uint8:
        raise InputError(f"the avatar image must be uint8 RGB, got dtype {image.dtype}")
    if min(image.shape[:2]) < 16:
        raise InputError(f"the avatar image is too small ({image.shape[1]}x{image.shape[0]} pixels)")
    return np.ascontiguousarray(image)


class WarpRenderer:
    """Real-time CPU renderer: warps the photo onto each posed frame (the embedded default).

    Everything that does not change per frame (mesh, triangulation of the rings, photo colours of
    teeth and lids) is computed here; ``render`` moves vertices, rasterises one backward map over
    the moving part of the frame, remaps once and blends the mouth interior and eyelids.
    """

    name = "warp"

    def __init__(self, image: np.ndarray, fit: AvatarFit, config: WarpConfig | None = None) -> None:
        self.config = config or WarpConfig()
        self._image = _check_image(image)
        face = np.asarray(fit.face, dtype=np.float64)
        if face.shape[0] != NUM_LANDMARKS or face.shape[1] < 2:
            raise InputError(f"the avatar fit must have {NUM_LANDMARKS} face landmarks, got {face.shape}")
        h, w = self._image.shape[:2]
        self._shape = (h, w)
        topo = face_topology()
        face2 = face[:, :2]
        self._eyes = [
            EyeModel(self._image, face2, topo.left_eye, LEFT_IRIS_CENTER),
            EyeModel(self._image, face2, topo.right_eye, RIGHT_IRIS_CENTER),
        ]
        self._mouth = MouthModel(self._image, face2, topo.lips_inner, self.config)
        body = np.asarray(fit.body, dtype=np.float64)
        self._body_rest = body
        self._mesh = WarpMesh(
            (h, w), face, body, np.asarray(fit.body_visible, bool), topo, self._eyes, self._mouth, self.config
        )

    @property
    def mesh(self) -> WarpMesh:
        """The warp mesh (source vertices, triangles in draw order): for tools and tests."""
        return self._mesh

    def render(self, posed: PosedFrame) -> np.ndarray:
        """The whole frame (uint8 RGB, the photo's size) with the avatar in the posed geometry."""
        if cv2.getNumThreads() != self.config.threads:
            cv2.setNumThreads(self.config.threads)
        face = np.asarray(posed.face, dtype=np.float64)
        if face.shape[0] != NUM_LANDMARKS or face.shape[1] < 2:
            raise ValueError(f"posed.face must be ({NUM_LANDMARKS}, 2), got {face.shape}")
        body = np.asarray(posed.body, dtype=np.float64)
        if body.shape != self._body_rest.shape:
            body = self._body_rest
        targets = self._mesh.targets(face[:, :2], body)
        out = self._image.copy()
        bmap = compute_backward_map(
            self._mesh.source,
            targets.vertices,
            self._mesh.triangles,
            self._shape,
            downsample=self.config.map_downsample,
            epsilon=self.config.move_epsilon,
        )
        if bmap is not None:
            x0, y0, mx, my = bmap
            hh, ww = mx.shape
            out[y0 : y0 + hh, x0 : x0 + ww] = cv2.remap(
                self._image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
        f2 = face[:, :2]
        self._mouth.composite(out, f2, self.config)
        for eye, fill, closure in zip(self._eyes, targets.eye_fill, targets.eye_closure, strict=True):
            eye.composite(out, f2, fill, closure, self.config)
        return out

    def push(self, posed: PosedFrame) -> list[np.ndarray]:
        """Frame at a time: ``[render(posed)]``."""
        return [self.render(posed)]

    def flush(self) -> list[np.ndarray]:
        """Nothing is held back."""
        return []

    def close(self) -> None:
        """Nothing to release."""

    def reset(self) -> None:
        """Nothing to forget: every frame is rendered from the photo alone."""
