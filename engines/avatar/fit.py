"""Fitting a photo: 478 face landmarks, 33 body + 2x21 hand keypoints, head pose and a camera.

mediapipe's FaceMesh (``refine_landmarks=True``: 468 mesh points + 10 iris points), Pose
(``model_complexity=1``; 0 and 2 would try to download their models and fail offline) and Hands run
on the photo, at most ``max_fit_side`` pixels on the longer side (downscaled) and at least
``min_fit_side`` on the shorter side (upscaled, for tiny photos); coordinates come back in pixels of
the photo given. When FaceMesh finds no face but Pose finds a person, the face is looked for again
in an upscaled crop around the pose's head keypoints (full-body photos with small faces).

Head pose. The head's canonical frame: x along the outer eye corners (33 -> 263, the image's right
for a frontal face), y from the forehead top (10) towards the chin (152) made orthogonal to x,
z = x cross y (away from the camera). ``head_rotation`` maps canonical axes to camera axes; a
frontal, upright face gives about the identity.

Camera. A pinhole with the principal point at the image centre and a field of view of
``fov_deg`` (default 40 degrees) across the longer side of the image: about a 50 mm lens on full
frame, a typical portrait. Landmarks are placed in 3D at depth ``focal + z`` (z: mediapipe's
relative depth in pixels), so that at the face's depth one unit is one pixel and projecting them
gives back the fitted pixels exactly.

Mouth expression. The photo's own mouth (lips apart mid-speech, a smile) is read as coefficients of
the rig's mouth channels (``AvatarFit.expression``, see ``rest.py``), so the rig can rest with
closed lips.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from vlogger.engines.avatar.types import AvatarFit, Camera
from vlogger.engines.errors import InputError
from vlogger.engines.native_log import quiet_native_stderr

__all__ = [
    "FitConfig",
    "Fitter",
    "backproject",
    "default_camera",
    "fit_photo",
    "head_frame",
]

_NUM_FACE = 478
_NUM_POSE = 33
_NUM_HAND = 21
# pose keypoints 0-10 (face) and the face-mesh landmark that stands for each when pose fails
_POSE_FACE_FROM_MESH = (1, 362, 473, 263, 133, 468, 33, 454, 234, 291, 61)
# rough upright-person template for pose keypoints 11-32 when no body was found: offsets from the
# chin in units of the outer-eye-corner distance (+x = image right = the person's left)
_POSE_TEMPLATE: tuple[tuple[int, float, float], ...] = (
    (11, 1.9, 0.9), (12, -1.9, 0.9), (13, 2.3, 3.2), (14, -2.3, 3.2), (15, 2.2, 5.2), (16, -2.2, 5.2),
    (17, 2.3, 5.7), (18, -2.3, 5.7), (19, 2.1, 5.8), (20, -2.1, 5.8), (21, 2.0, 5.5), (22, -2.0, 5.5),
    (23, 1.2, 6.2), (24, -1.2, 6.2), (25, 1.1, 9.8), (26, -1.1, 9.8), (27, 1.0, 13.5), (28, -1.0, 13.5),
    (29, 1.0, 13.8), (30, -1.0, 13.8), (31, 1.1, 14.2), (32, -1.1, 14.2),
)  # fmt: skip


@dataclass(frozen=True)
class FitConfig:
    """How a photo is fitted (every field is part of the fit cache key)."""

    threads: int = 1
    """OpenCV threads (``cv2.setNumThreads``) used while fitting; mediapipe's own graphs run on
    their default CPU executor."""
    max_fit_side: int = 1280
    """Photos whose longer side is larger are downscaled to this for detection."""
    min_fit_side: int = 384
    """Photos whose shorter side is smaller are upscaled to this for detection (at most 8x)."""
    fov_deg: float = 40.0
    """Assumed field of view of the photo's camera across its longer side, in degrees."""
    min_detection_confidence: float = 0.5
    """mediapipe detection confidence for faces, bodies and hands."""
    max_faces: int = 4
    """How many faces FaceMesh looks for; the largest one is the avatar."""
    detect_hands: bool = True
    """Run the hand detector (2 x 21 keypoints); when off, hands sit at the wrists, invisible."""
    visibility_threshold: float = 0.5
    """Pose keypoints with a lower mediapipe visibility are marked invisible."""
    head_pivot: tuple[float, float, float] = (0.0, 0.5, 1.0)
    """Head rotation centre from the midpoint of the outer eye corners, in the head's canonical
    frame and units of the outer-eye-corner distance (below and behind the eyes: about the neck)."""
    version: int = 1
    """Version of the fitting procedure; bump it when the procedure changes to invalidate caches."""

    def cache_token(self) -> str:
        """A stable text form of the settings that change a fit's result (threads do not)."""
        d = asdict(self)
        d.pop("threads")
        return repr(sorted(d.items()))


def default_camera(width: int, height: int, fov_deg: float = 40.0) -> Camera:
    """Pinhole camera with the given field of view across the image's longer side."""
    focal = 0.5 * max(width, height) / math.tan(math.radians(fov_deg) / 2.0)
    return Camera(focal=float(focal), cx=width / 2.0, cy=height / 2.0)


def backproject(points: np.ndarray, camera: Camera) -> np.ndarray:
    """Pixel landmarks (N, 3) [x, y, relative depth z] -> 3D camera-space points (float64).

    Depth is ``focal + z``; projecting the result with ``camera`` gives back x, y.
    """
    p = np.asarray(points, dtype=np.float64)
    depth = camera.focal + p[:, 2]
    out = np.empty((p.shape[0], 3), dtype=np.float64)
    out[:, 0] = (p[:, 0] - camera.cx) * depth / camera.focal
    out[:, 1] = (p[:, 1] - camera.cy) * depth / camera.focal
    out[:, 2] = depth
    return out


def head_frame(
    face3d: np.ndarray, pivot: tuple[float, float, float] = (0.0, 0.5, 1.0)
) -> tuple[np.ndarray, np.ndarray, float]:
    """(rotation canonical->camera, head centre, outer-eye-corner distance) from 3D landmarks."""
    p = np.asarray(face3d, dtype=np.float64)
    x = p[263] - p[33]
    size = float(np.linalg.norm(x))
    if not np.isfinite(size) or size <= 1e-9:
        raise InputError("the face found in the photo is degenerate (eye corners coincide)")
    x /= size
    y = p[152] - p[10]
    y -= x * float(x @ y)
    ny = float(np.linalg.norm(y))
    if ny <= 1e-9:
        raise InputError("the face found in the photo is degenerate (forehead and chin align with eyes)")
    y /= ny
    z = np.cross(x, y)
    rot = np.stack([x, y, z], axis=1)
    eyes = 0.5 * (p[33] + p[263])
    center = eyes + rot @ (np.asarray(pivot, dtype=np.float64) * size)
    return rot, center, size


def _detection_scale(width: int, height: int, config: FitConfig) -> float:
    s = 1.0
    if max(width, height) > config.max_fit_side:
        s = config.max_fit_side / float(max(width, height))
    elif min(width, height) < config.min_fit_side:
        s = min(8.0, config.min_fit_side / float(min(width, height)))
        s = min(s, config.max_fit_side / float(max(width, height)))  # never beyond the max side
    return max(s, 1e-6)


class Fitter:
    """Holds mediapipe's FaceMesh, Pose and Hands graphs (created once) and fits many photos.

    Use as a context manager or call ``close()``; ``fits`` counts the photos fitted so far.
    """

    def __init__(self, config: FitConfig | None = None) -> None:
        import mediapipe as mp  # heavy: imported only when a fit is needed

        self.config = config or FitConfig()
        self.fits = 0
        cv2.setNumThreads(int(self.config.threads))
        conf = float(self.config.min_detection_confidence)
        sol: Any = mp.solutions
        with quiet_native_stderr():
            self._create_graphs(sol, conf)
        self._closed = False

    def _create_graphs(self, sol: Any, conf: float) -> None:
        self._face = sol.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=int(self.config.max_faces),
            refine_landmarks=True,
            min_detection_confidence=conf,
        )
        self._pose = sol.pose.Pose(
            static_image_mode=True,
            model_complexity=1,
            enable_segmentation=False,
            min_detection_confidence=conf,
        )
        self._hands = (
            sol.hands.Hands(static_image_mode=True, max_num_hands=2, min_detection_confidence=conf)
            if self.config.detect_hands
            else None
        )

    def __enter__(self) -> Fitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the mediapipe graphs (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for g in (self._face, self._pose, self._hands):
            if g is not None:
                g.close()

    # -- detection --------------------------------------------------------------------------------

    def _faces(self, img: np.ndarray) -> list[np.ndarray]:
        """All faces FaceMesh finds in ``img``, as (478, 3) arrays in ``img`` pixels."""
        with quiet_native_stderr():
            res = self._face.process(img)
        if not res.multi_face_landmarks:
            return []
        h, w = img.shape[:2]
        out = []
        for lms in res.multi_face_landmarks:
            a = np.array([(p.x, p.y, p.z) for p in lms.landmark], dtype=np.float64)
            if a.shape[0] != _NUM_FACE:
                continue
            out.append(a * np.array([w, h, w], dtype=np.float64))
        return out

    def _pose_points(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        with quiet_native_stderr():
            res = self._pose.process(img)
        if res.pose_landmarks is None:
            return None
        h, w = img.shape[:2]
        lm = res.pose_landmarks.landmark
        xy = np.array([(p.x * w, p.y * h) for p in lm], dtype=np.float64)
        vis = np.array([p.visibility for p in lm], dtype=np.float64)
        return xy, vis

    def _hand_points(self, img: np.ndarray) -> list[tuple[np.ndarray, str]]:
        if self._hands is None:
            return []
        with quiet_native_stderr():
            res = self._hands.process(img)
        if not res.multi_hand_landmarks:
            return []
        h, w = img.shape[:2]
        out = []
        for lms, hd in zip(res.multi_hand_landmarks, res.multi_handedness or [], strict=False):
            xy = np.array([(p.x * w, p.y * h) for p in lms.landmark], dtype=np.float64)
            out.append((xy, hd.classification[0].label))
        return out

    def _face_from_pose_crop(self, det: np.ndarray, pose_xy: np.ndarray) -> list[np.ndarray]:
        """Look for the face again in an upscaled crop around the pose's head keypoints."""
        head = pose_xy[:11]
        cx, cy = head.mean(axis=0)
        span = float(np.ptp(head, axis=0).max())
        half = max(24.0, 1.6 * span)
        h, w = det.shape[:2]
        x0, x1 = int(max(0, cx - half)), int(min(w, cx + half))
        y0, y1 = int(max(0, cy - half)), int(min(h, cy + half))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return []
        crop = det[y0:y1, x0:x1]
        s = 384.0 / max(crop.shape[:2])
        if s > 1.0:
            crop = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC)
        else:
            s = 1.0
        faces = self._faces(np.ascontiguousarray(crop))
        return [f / s + np.array([x0, y0, 0.0]) for f in faces]

    # -- fitting ----------------------------------------------------------------------------------

    def fit(self, image_rgb: np.ndarray, image_hash: str = "") -> AvatarFit:
        """Fit one RGB uint8 photo; InputError("no face found in the photo ...") if there is none."""
        if self._closed:
            raise RuntimeError("this Fitter is closed")
        img = np.asarray(image_rgb)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or img.size == 0:
            raise InputError(f"expected an RGB uint8 image, got shape {img.shape} dtype {img.dtype}")
        h, w = img.shape[:2]
        cfg = self.config
        s = _detection_scale(w, h, cfg)
        det = (
            img
            if s == 1.0
            else cv2.resize(
                img,
                (max(1, round(w * s)), max(1, round(h * s))),
                interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC,
            )
        )
        det = np.ascontiguousarray(det)
        sx, sy = det.shape[1] / float(w), det.shape[0] / float(h)
        self.fits += 1

        faces = self._faces(det)
        pose = self._pose_points(det)
        if not faces and pose is not None:
            faces = self._face_from_pose_crop(det, pose[0])
        if not faces:
            raise InputError(
                f"no face found in the photo ({w}x{h} pixels): use a photo where one face is clearly "
                "visible, lit and roughly frontal"
            )
        face = max(faces, key=lambda f: float(np.prod(np.ptp(f[:, :2], axis=0))))
        face = face / np.array([sx, sy, sx])  # back to the photo's pixels (z scales with x)

        camera = default_camera(w, h, cfg.fov_deg)
        rot, center, _ = head_frame(backproject(face, camera), cfg.head_pivot)
        body, visible = self._body(det, pose, face, sx, sy, w, h)
        fit = AvatarFit(
            face=face.astype(np.float32),
            body=body.astype(np.float32),
            body_visible=visible,
            head_rotation=rot.astype(np.float32),
            head_center=center.astype(np.float32),
            camera=camera,
            image_hash=image_hash,
        )
        from vlogger.engines.avatar.rig import photo_expression  # the rig imports this module

        fit.expression = photo_expression(fit)
        return fit

    def _body(
        self,
        det: np.ndarray,
        pose: tuple[np.ndarray, np.ndarray] | None,
        face: np.ndarray,
        sx: float,
        sy: float,
        w: int,
        h: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        scale = np.array([sx, sy])
        body = np.zeros((_NUM_POSE + 2 * _NUM_HAND, 2), dtype=np.float64)
        vis = np.zeros(body.shape[0], dtype=bool)
        if pose is not None:
            body[:_NUM_POSE] = pose[0] / scale
            vis[:_NUM_POSE] = pose[1] >= cfg.visibility_threshold
        else:  # no body found: a rough upright template below the face, all invisible
            d = float(np.linalg.norm(face[263, :2] - face[33, :2]))
            chin = face[152, :2]
            body[:11] = face[list(_POSE_FACE_FROM_MESH), :2]
            vis[:11] = True
            for k, ox, oy in _POSE_TEMPLATE:
                body[k] = chin + d * np.array([ox, oy])
        # hands: assign each detected hand to the nearer pose wrist (15 left, 16 right)
        hands = self._hand_points(det)
        slots: dict[int, np.ndarray] = {}
        for xy, label in hands:
            xy = xy / scale
            if pose is not None:
                dl = float(np.linalg.norm(xy[0] - body[15]))
                dr = float(np.linalg.norm(xy[0] - body[16]))
                slot = 0 if dl <= dr else 1
            else:  # mediapipe labels assume a mirrored (selfie) image: "Right" is the person's left
                slot = 0 if label == "Right" else 1
            if slot in slots:
                slot = 1 - slot
            if slot not in slots:
                slots[slot] = xy
        for slot, wrist in ((0, 15), (1, 16)):
            a = _NUM_POSE + slot * _NUM_HAND
            if slot in slots:
                body[a : a + _NUM_HAND] = slots[slot]
                vis[a : a + _NUM_HAND] = True
            else:
                body[a : a + _NUM_HAND] = body[wrist]  # rest at the wrist, invisible
        inside = (body[:, 0] >= 0) & (body[:, 0] <= w - 1) & (body[:, 1] >= 0) & (body[:, 1] <= h - 1)
        vis &= inside & np.isfinite(body).all(axis=1)
        body = np.nan_to_num(body, nan=0.0, posinf=0.0, neginf=0.0)
        return body, vis


def fit_photo(image_rgb: np.ndarray, config: FitConfig | None = None, image_hash: str = "") -> AvatarFit:
    """Fit one photo with a temporary ``Fitter`` (use a ``Fitter`` to fit many)."""
    with Fitter(config) as fitter:
        return fitter.fit(image_rgb, image_hash)
