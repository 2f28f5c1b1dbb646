"""Loading a user's photo: any common format in, RGB uint8 out, with bounded memory for huge files.

Decoding goes through ``cv2.imdecode`` on bytes we read ourselves (so non-ASCII paths work). The
header (read with PIL, which does not decode the pixels) tells the size first: a photo over
``max_pixels`` is decoded at 1/2, 1/4 or 1/8 scale (``IMREAD_REDUCED_COLOR_*``: libjpeg decodes
JPEGs directly at that scale, so a 48 MP JPEG never exists in memory at full size) and then
resized with area averaging to fit ``max_pixels``. Other formats than JPEG are decoded at full
size by OpenCV before the reduction, so their peak memory is the full image; files whose header
claims more than ``hard_max_pixels`` are refused before any decoding.
"""

from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path

import cv2
import numpy as np

from vlogger.engines.errors import InputError

__all__ = ["ImageSource", "image_sha256", "load_image", "read_source_bytes", "resize_to_height"]

ImageSource = str | Path | bytes | bytearray | memoryview | np.ndarray

_ORIENTATION_TAG = 274  # EXIF orientation


def _describe(source: object) -> str:
    if isinstance(source, str | Path):
        return f"'{source}'"
    if isinstance(source, bytes | bytearray | memoryview):
        return f"the given image data ({len(source)} bytes)"
    return "the given array"


def read_source_bytes(source: str | Path | bytes | bytearray | memoryview) -> bytes:
    """The raw bytes of an image file or buffer; InputError naming the path when it cannot be read."""
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    path = Path(source).expanduser()
    if not path.exists():
        raise InputError(f"photo not found: '{path}' does not exist")
    if path.is_dir():
        raise InputError(f"photo path '{path}' is a folder, not an image file")
    try:
        return path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read the photo '{path}': {e.strerror or e}") from e


def image_sha256(source: ImageSource) -> str:
    """sha256 hex digest of the source image bytes (of the array's shape, dtype and data for arrays)."""
    h = hashlib.sha256()
    if isinstance(source, np.ndarray):
        arr = np.ascontiguousarray(source)
        h.update(f"ndarray:{arr.shape}:{arr.dtype.str}:".encode())
        h.update(arr.tobytes())
    else:
        h.update(read_source_bytes(source))
    return h.hexdigest()


def _header(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, exif orientation) from the header without decoding pixels; None if PIL can't tell."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            orient = 1
            try:
                orient = int(im.getexif().get(_ORIENTATION_TAG, 1) or 1)
            except Exception:
                orient = 1
            return int(w), int(h), orient
    except Exception as e:
        if type(e).__name__ == "DecompressionBombError":  # PIL's own guard (> ~179 MP)
            return (-1, -1, 1)  # the caller reports it as too large
        return None


def _apply_orientation(img: np.ndarray, orient: int) -> np.ndarray:
    """Rotate/flip as the EXIF orientation says (phone photos are often stored sideways)."""
    ops = {
        2: lambda a: cv2.flip(a, 1),
        3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
        4: lambda a: cv2.flip(a, 0),
        5: lambda a: cv2.flip(cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE), 1),
        6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
        7: lambda a: cv2.flip(cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE), 1),
        8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
    }
    op = ops.get(orient)
    return op(img) if op else img


def _to_rgb8(img: np.ndarray, channel_order: str) -> np.ndarray:
    """Any decoded array (gray, gray+alpha, BGR/RGB, BGRA/RGBA; 8/16-bit or float) -> RGB uint8.

    Alpha is composited on white, so a transparent cut-out keeps a clean background.
    """
    a = np.asarray(img)
    if a.dtype == np.uint8:
        f = None
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) / 65535.0
    elif a.dtype.kind == "f":
        f = np.clip(np.nan_to_num(a.astype(np.float32)), 0.0, 1.0)
    elif a.dtype == np.bool_:
        f = a.astype(np.float32)
    elif a.dtype.kind in "iu":
        f = np.clip(a.astype(np.float32) / float(np.iinfo(a.dtype).max), 0.0, 1.0)
    else:
        raise InputError(f"unsupported image data type {a.dtype}")
    if f is not None:
        a = np.round(f * 255.0).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        return np.ascontiguousarray(np.repeat(a[:, :, None], 3, axis=2))
    if a.ndim != 3 or a.shape[2] not in (2, 3, 4):
        raise InputError(f"unsupported image shape {a.shape}: expected HxW, HxWx3 or HxWx4")
    alpha: np.ndarray | None
    if a.shape[2] == 2:
        color = np.repeat(a[:, :, :1], 3, axis=2)
        alpha = a[:, :, 1]
    else:
        color = a[:, :, :3]
        alpha = a[:, :, 3] if a.shape[2] == 4 else None
        if channel_order == "bgr" and a.shape[2] == 3 and a.flags.writeable and a.flags.c_contiguous:
            color = cv2.cvtColor(a, cv2.COLOR_BGR2RGB, dst=a)  # in place: no second full-size copy
        elif channel_order == "bgr":
            color = color[:, :, ::-1]
    if alpha is not None and alpha.min() < 255:
        w = alpha.astype(np.float32)[:, :, None] / 255.0
        color = np.round(color.astype(np.float32) * w + 255.0 * (1.0 - w)).astype(np.uint8)
    return np.ascontiguousarray(color)


def _fit_pixels(img: np.ndarray, max_pixels: float) -> np.ndarray:
    h, w = img.shape[:2]
    if h * w <= max_pixels:
        return img
    s = math.sqrt(max_pixels / float(h * w))
    size = (max(1, int(w * s)), max(1, int(h * s)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def load_image(
    source: ImageSource,
    max_pixels: float = 40e6,
    hard_max_pixels: float = 150e6,
    name: str | None = None,
) -> np.ndarray:
    """Load a photo as an RGB uint8 array (H, W, 3).

    ``source`` is a path, the encoded bytes of an image file (PNG, JPEG, WebP, BMP, TIFF, ... what
    OpenCV decodes) or an array (HxW gray, HxWx3 RGB, HxWx4 RGBA; uint8, uint16 or float in [0, 1]).
    Alpha is composited on white; 16-bit is reduced to 8-bit; EXIF orientation is applied. Images over
    ``max_pixels`` come back downscaled (aspect kept) to at most ``max_pixels``.

    Raises InputError (naming the file) for a missing path, an empty, fake or corrupt file, a
    zero-size image, or a header claiming more than ``hard_max_pixels``. ``name`` is how messages
    call the photo (default: its path, or "the given image data").
    """
    what = f"'{name}'" if name else _describe(source)
    if isinstance(source, np.ndarray):
        if source.size == 0 or source.ndim < 2 or source.shape[0] == 0 or source.shape[1] == 0:
            raise InputError(f"the image is empty (shape {source.shape})")
        channel_order = "rgb"
        return _fit_pixels(_to_rgb8(source, channel_order), max_pixels)

    data = read_source_bytes(source)
    if len(data) == 0:
        raise InputError(f"the photo {what} is an empty file (0 bytes)")
    header = _header(data)
    orient = 1
    reduce = 1
    if header is not None:
        w, h, orient = header
        if (w, h) == (-1, -1):
            raise InputError(f"the photo {what} is too large (its header claims over 178 MP)")
        if w <= 0 or h <= 0:
            raise InputError(f"the photo {what} has zero size ({w}x{h})")
        if w * h > hard_max_pixels:
            raise InputError(
                f"the photo {what} is too large: {w}x{h} = {w * h / 1e6:.0f} MP "
                f"(at most {hard_max_pixels / 1e6:.0f} MP are accepted)"
            )
        while reduce < 8 and w * h / float(reduce * reduce) > max_pixels:
            reduce *= 2
    buf = np.frombuffer(data, dtype=np.uint8)
    flags = {
        1: cv2.IMREAD_UNCHANGED,
        2: cv2.IMREAD_REDUCED_COLOR_2,
        4: cv2.IMREAD_REDUCED_COLOR_4,
        8: cv2.IMREAD_REDUCED_COLOR_8,
    }[reduce] | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        img = cv2.imdecode(buf, flags)
    except cv2.error as e:
        raise InputError(f"the photo {what} could not be decoded: {str(e).strip().splitlines()[-1]}") from e
    if img is None:
        kind = "corrupt or truncated image" if header is not None else "not an image file (unknown format)"
        raise InputError(f"the photo {what} could not be read: {kind}")
    if img.size == 0 or img.shape[0] == 0 or img.shape[1] == 0:
        raise InputError(f"the photo {what} has zero size")
    rgb = _to_rgb8(img, "bgr")
    rgb = _apply_orientation(rgb, orient)
    return _fit_pixels(rgb, max_pixels)


def resize_to_height(img: np.ndarray, height: int) -> np.ndarray:
    """Resize to ``height`` rows; the width keeps the aspect ratio, rounded to an even number (>= 2)."""
    if height < 2:
        raise ValueError(f"height must be at least 2, got {height}")
    h, w = img.shape[:2]
    if h == 0 or w == 0:
        raise InputError(f"the image is empty ({w}x{h})")
    width = max(2, round(w * height / float(h) / 2.0) * 2)
    if (h, w) == (height, width):
        return img
    interp = cv2.INTER_AREA if height < h else cv2.INTER_CUBIC
    return cv2.resize(img, (width, height), interpolation=interp)
