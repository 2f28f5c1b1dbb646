"""The avatar engine: a photo in, a fitted and rigged avatar out.

``load_avatar(source)`` loads the photo (any common format), resizes it to the working height,
fits face landmarks, head pose, body and hand keypoints and a camera (cached on disk by the photo's
hash and the settings) and builds the expression rig; ``avatar.rig.pose(motion_frame)`` gives the
target geometry (``PosedFrame``) renderers warp the photo onto.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlogger.engines.avatar.config import AvatarConfig
from vlogger.engines.avatar.fit import FitConfig, Fitter
from vlogger.engines.avatar.fitcache import fit_cache_key, load_cached_fit, save_fit
from vlogger.engines.avatar.image import (
    ImageSource,
    image_sha256,
    load_image,
    read_source_bytes,
    resize_to_height,
)
from vlogger.engines.avatar.rig import Rig, RigConfig
from vlogger.engines.avatar.types import AvatarFit, Camera, PosedFrame
from vlogger.engines.errors import InputError
from vlogger.engines.types import MotionFrame

__all__ = [
    "DEFAULT_PORTRAIT",
    "Avatar",
    "AvatarConfig",
    "AvatarFit",
    "Camera",
    "FitConfig",
    "Fitter",
    "PosedFrame",
    "Rig",
    "RigConfig",
    "load_avatar",
]

_log = logging.getLogger(__name__)

#: The shipped default portrait (public domain NASA photo of Eileen Collins).
DEFAULT_PORTRAIT = Path(__file__).with_name("assets") / "default_portrait.png"


@dataclass
class Avatar:
    """A photo at working size with its fit and rig."""

    image: np.ndarray
    """(H, W, 3) uint8 RGB photo at the working size (H = the requested height, W even)."""
    fit: AvatarFit
    """What fitting found, in pixels of ``image``."""
    rig: Rig
    """The expression rig: ``rig.pose(MotionFrame) -> PosedFrame``."""
    name: str = ""
    """Where the photo came from (a path, or a description), for messages."""
    from_cache: bool = False
    """Whether the fit came from the disk cache."""

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    def neutral(self) -> PosedFrame:
        """The rest pose (``rig.pose(MotionFrame.neutral())``): the photo's head and body, with
        closed lips and a neutral mouth when ``RigConfig.closed_rest`` is on (the default)."""
        return self.rig.pose(MotionFrame.neutral())


def load_avatar(
    source: ImageSource | None = None,
    height: int | None = None,
    config: AvatarConfig | None = None,
    cache: bool = True,
    fitter: Fitter | None = None,
) -> Avatar:
    """Load, resize, fit (or take the cached fit) and rig a photo.

    ``source``: a path, encoded image bytes or an RGB array; None means the shipped default
    portrait. ``height``: working height (default ``config.height``, 512); the width follows the
    aspect ratio, rounded to even. ``cache``: read and write fits under the user cache directory.
    ``fitter``: an open ``Fitter`` to reuse (else one is made and closed here, only on a cache miss).
    Raises InputError for unreadable photos, extreme aspect ratios and photos without a face.
    """
    cfg = config or AvatarConfig()
    h = int(height if height is not None else cfg.height)
    if source is None:
        source = DEFAULT_PORTRAIT
    if isinstance(source, str | Path):
        name = str(source)
        data: ImageSource = read_source_bytes(source)
        image_hash = image_sha256(data)
    else:
        name = "the given image" if isinstance(source, np.ndarray) else "the given image data"
        data = source
        image_hash = image_sha256(source)
    photo = load_image(data, max_pixels=cfg.max_pixels, name=name)
    ph, pw = photo.shape[:2]
    if max(pw / ph, ph / pw) > cfg.max_aspect:
        raise InputError(
            f"the photo '{name}' is {pw}x{ph}: its aspect ratio is too extreme (at most "
            f"{cfg.max_aspect:g}:1); crop it around the person"
        )
    image = resize_to_height(photo, h)
    key = fit_cache_key(image_hash, cfg.fit, image.shape[1], image.shape[0])
    fit = load_cached_fit(key) if cache else None
    from_cache = fit is not None
    if fit is None:
        own = fitter is None
        f = Fitter(cfg.fit) if fitter is None else fitter
        try:
            try:
                fit = f.fit(image, image_hash)
            except InputError as e:
                raise InputError(f"{e} ('{name}')") from None
        finally:
            if own:
                f.close()
        if cache:
            try:
                save_fit(key, fit)
            except OSError as e:  # a read-only cache must not stop the avatar
                _log.warning("could not write the fit cache: %s", e)
    return Avatar(image=image, fit=fit, rig=Rig(fit, cfg.rig), name=name, from_cache=from_cache)
