"""Fits cached on disk by the sha256 of the photo bytes + the fit settings + the working size.

Files are ``.npz`` under ``cache_dir("fits")`` (the user cache, never the package folder), written
atomically; a missing, stale or unreadable file is simply a miss.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from vlogger.engines.avatar.fit import FitConfig
from vlogger.engines.avatar.types import AvatarFit, Camera
from vlogger.engines.cache import atomic_write_bytes, cache_dir
from vlogger.engines.types import EXPRESSION_NAMES

__all__ = ["fit_cache_key", "fit_cache_path", "load_cached_fit", "save_fit"]

#: Version of the stored fit: part of the key, and checked on load. 2: fits carry the photo's mouth
#: expression (``AvatarFit.expression``). 3: fitted by the project's own landmarkers (no mediapipe;
#: its attention face model run by onnxruntime), with the number of faces in the photo. Bump it
#: whenever what a fit holds or how it is computed (fitting, the mouth estimate in rest.py or the
#: default expression fields) changes.
_FORMAT = 3


def fit_cache_key(image_hash: str, config: FitConfig, width: int, height: int) -> str:
    """Cache key: photo hash, every setting that changes a fit, and the size it was fitted at."""
    text = f"fit-v{_FORMAT}|{image_hash}|{width}x{height}|{config.cache_token()}"
    return hashlib.sha256(text.encode()).hexdigest()


def fit_cache_path(key: str, root: Path | None = None) -> Path:
    """Where the fit with this key lives (``root`` defaults to ``cache_dir("fits")``)."""
    return (root if root is not None else cache_dir("fits")) / f"{key}.npz"


def save_fit(key: str, fit: AvatarFit, root: Path | None = None) -> Path:
    """Write a fit to the cache (atomically) and return its path."""
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        format=np.int64(_FORMAT),
        face=fit.face,
        body=fit.body,
        body_visible=fit.body_visible,
        head_rotation=fit.head_rotation,
        head_center=fit.head_center,
        camera=np.array([fit.camera.focal, fit.camera.cx, fit.camera.cy], dtype=np.float64),
        image_hash=np.array(fit.image_hash),
        expression=np.asarray(fit.expression, dtype=np.float32),
        faces=np.int64(fit.faces),
    )
    path = fit_cache_path(key, root)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_cached_fit(key: str, root: Path | None = None) -> AvatarFit | None:
    """The cached fit for ``key``, or None when there is none (or it cannot be read)."""
    path = fit_cache_path(key, root)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as d:
            if int(d["format"]) != _FORMAT:
                return None
            cam = d["camera"]
            fit = AvatarFit(
                face=np.asarray(d["face"], dtype=np.float32),
                body=np.asarray(d["body"], dtype=np.float32),
                body_visible=np.asarray(d["body_visible"], dtype=bool),
                head_rotation=np.asarray(d["head_rotation"], dtype=np.float32),
                head_center=np.asarray(d["head_center"], dtype=np.float32),
                camera=Camera(focal=float(cam[0]), cx=float(cam[1]), cy=float(cam[2])),
                image_hash=str(d["image_hash"]),
                expression=np.asarray(d["expression"], dtype=np.float32),
                faces=int(d["faces"]),
            )
    except Exception:
        return None
    if fit.face.shape != (478, 3) or fit.body.shape != (75, 2) or not np.isfinite(fit.face).all():
        return None
    if fit.expression.shape != (len(EXPRESSION_NAMES),) or not np.isfinite(fit.expression).all():
        return None
    return fit
