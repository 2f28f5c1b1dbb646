"""Fitting a photo: 478 face landmarks, 33 body + 2x21 hand keypoints, head pose and a camera.

The project's own landmarkers (``landmarks/``: mediapipe's face detector, attention face mesh, pose
and hand models run by onnxruntime, with the pre- and post-processing and the attention model's
custom ops written here) find the 478 face points of mediapipe's FaceMesh(refine_landmarks=True)
(468 mesh points with refined lips and eyes + 10 iris points), 33 body and 2 x 21 hand keypoints
on the photo, at most ``max_fit_side`` pixels on the longer side
(downscaled) and at least ``min_fit_side`` on the shorter side (upscaled, for tiny photos);
coordinates come back in pixels of the photo given. When no face is found but the pose model finds a
person, the face is looked for again in an upscaled crop around the pose's head keypoints
(full-body photos with small faces).

Head pose. The head's canonical frame: x along the outer eye corners (33 -> 263, the image's right
for a frontal face), y from the forehead top (10) towards the chin (152) made orthogonal to x,
z = x cross y (away from the camera). ``head_rotation`` maps canonical axes to camera axes; a
frontal, upright face gives about the identity.

Camera. A pinhole with the principal point at the image centre and a field of view of
``fov_deg`` (default 40 degrees) across the longer side of the image: about a 50 mm lens on full
frame, a typical portrait. Landmarks are placed in 3D at depth ``focal + z`` (z: the relative
depth in pixels, as mediapipe defines it), so that at the face's depth one unit is one pixel and
projecting them gives back the fitted pixels exactly.

Mouth expression. The photo's own mouth (lips apart mid-speech, a smile) is read as coefficients of
the rig's mouth channels (``AvatarFit.expression``, see ``rest.py``), so the rig can rest with
closed lips.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from vlogger.engines.avatar.landmarks import FaceLandmarker, HandLandmarker, PoseLandmarker
from vlogger.engines.avatar.types import AvatarFit, Camera
from vlogger.engines.errors import InputError

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
#: Faces tilted further than this (eye line vs horizontal, degrees) are refused with advice.
_MAX_ROLL_DEG = 60.0
_TURN = {
    90: "the face lies on its side: turn the photo 90 degrees clockwise so that the face is upright",
    -90: "the face lies on its side: turn the photo 90 degrees counter-clockwise so that the face is upright",
    180: "the face is upside down: turn the photo 180 degrees",
}
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
    """Inference threads of each landmark model and OpenCV threads (``cv2.setNumThreads``)."""
    max_fit_side: int = 1280
    """Photos whose longer side is larger are downscaled to this for detection."""
    min_fit_side: int = 384
    """Photos whose shorter side is smaller are upscaled to this for detection (at most 8x)."""
    fov_deg: float = 40.0
    """Assumed field of view of the photo's camera across its longer side, in degrees."""
    min_detection_confidence: float = 0.5
    """Detection confidence for faces, bodies and hands."""
    max_faces: int = 4
    """How many faces are looked for; the largest one is the avatar (``AvatarFit.faces`` counts them)."""
    detect_hands: bool = True
    """Run the hand detector (2 x 21 keypoints); when off, hands sit at the wrists, invisible."""
    visibility_threshold: float = 0.5
    """Pose keypoints with a lower visibility score are marked invisible."""
    head_pivot: tuple[float, float, float] = (0.0, 0.5, 1.0)
    """Head rotation centre from the midpoint of the outer eye corners, in the head's canonical
    frame and units of the outer-eye-corner distance (below and behind the eyes: about the neck)."""
    version: int = 2
    """Version of the fitting procedure; bump it when the procedure changes to invalidate caches.
    2: the project's own landmarkers (mediapipe's models run by onnxruntime, the same landmarks as
    FaceMesh(refine_landmarks=True) within 0.02% of the eye distance) replace mediapipe itself."""

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
    """Holds the face, pose and hand landmarkers (models loaded once) and fits many photos.

    Use as a context manager or call ``close()``; ``fits`` counts the photos fitted so far.
    """

    def __init__(self, config: FitConfig | None = None) -> None:
        self.config = config or FitConfig()
        self.fits = 0
        threads = int(self.config.threads)
        cv2.setNumThreads(threads)
        conf = float(self.config.min_detection_confidence)
        self._face = FaceLandmarker(
            static=True, max_faces=int(self.config.max_faces), min_detection_confidence=conf, threads=threads
        )
        self._pose = PoseLandmarker(min_detection_confidence=conf, threads=threads)
        self._hands = (
            HandLandmarker(max_hands=2, min_detection_confidence=conf, threads=threads)
            if self.config.detect_hands
            else None
        )
        self._closed = False

    def __enter__(self) -> Fitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the models (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for g in (self._face, self._pose, self._hands):
            if g is not None:
                g.close()

    # -- detection --------------------------------------------------------------------------------

    def _faces(self, img: np.ndarray) -> list[np.ndarray]:
        """All faces found in ``img``, as (478, 3) float64 arrays in ``img`` pixels."""
        return [np.asarray(f, dtype=np.float64) for f in self._face.process(img) if len(f) == _NUM_FACE]

    def _pose_points(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        res = self._pose.process(img)
        if res is None:
            return None
        xy, vis = res
        return np.asarray(xy, dtype=np.float64), np.asarray(vis, dtype=np.float64)

    def _hand_points(self, img: np.ndarray) -> list[tuple[np.ndarray, str]]:
        if self._hands is None:
            return []
        return [(np.asarray(xy, dtype=np.float64), label) for xy, label in self._hands.process(img)]

    def _turned_face(self, det: np.ndarray) -> str | None:
        """How to turn the photo for a face to appear, when it has none upright (else None)."""
        for advice, code in (
            (_TURN[180], cv2.ROTATE_180),
            (_TURN[90], cv2.ROTATE_90_CLOCKWISE),
            (_TURN[-90], cv2.ROTATE_90_COUNTERCLOCKWISE),
        ):
            if self._faces(np.ascontiguousarray(cv2.rotate(det, code))):
                return advice
        return None

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
            turn = self._turned_face(det)
            if turn is not None:
                raise InputError(f"no upright face found in the photo ({w}x{h} pixels): {turn}")
            raise InputError(
                f"no face found in the photo ({w}x{h} pixels): use a photo where one face is clearly "
                "visible, lit and roughly frontal"
            )
        face = max(faces, key=lambda f: float(np.prod(np.ptp(f[:, :2], axis=0))))
        face = face / np.array([sx, sy, sx])  # back to the photo's pixels (z scales with x)
        roll = math.degrees(math.atan2(face[263, 1] - face[33, 1], face[263, 0] - face[33, 0]))
        if abs(roll) > _MAX_ROLL_DEG:  # the rig and renderers animate upright heads
            turn = _TURN[180] if abs(roll) > 135 else _TURN[90 if roll < 0 else -90]
            raise InputError(
                f"the face in the photo ({w}x{h} pixels) is tilted by {roll:.0f} degrees: {turn}"
            )

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
            faces=len(faces),
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
            else:  # the hand model's labels assume a mirrored (selfie) image: "Right" is the person's left
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
