"""Loading a user's photo: any common format in, RGB uint8 out, with bounded memory for huge files.

Decoding goes through ``cv2.imdecode`` on bytes we read ourselves (so non-ASCII paths work). The
header (read with PIL, which does not decode the pixels) tells the format and size first, and
every decode is planned to fit ``max_decode_bytes`` (OpenCV holds the decoded pixels twice for a
moment: once its own, once copied into the NumPy array):

* a JPEG over ``max_pixels`` is decoded at 1/2, 1/4 or 1/8 scale (``IMREAD_REDUCED_COLOR_*``:
  libjpeg decodes it directly at that scale, so a 48 MP JPEG never exists in memory at full size),
  then resized with area averaging to fit ``max_pixels``; a progressive JPEG also needs its whole
  image's DCT coefficients (2 bytes a sample) whatever the scale, so a huge one is refused;
* other formats can only be decoded at full size: 8-bit BGR (3 bytes a pixel) unless the image is
  transparent or float (then as stored, up to 16-bit or float RGBA, and converted, alpha composited
  on white, in bands of rows), so one over the budget is refused before decoding (at the
  defaults: over 40 MP of plain colour, 30 MP transparent 8-bit, 15 MP transparent 16-bit).

Files PIL cannot size (not an image, or a format such as Radiance HDR whose size is unknown until
decoded) are refused, as are headers claiming more than ``hard_max_pixels`` and decodes whose size
differs from the header's.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vlogger.engines.errors import InputError

__all__ = ["ImageSource", "image_sha256", "load_image", "read_source_bytes", "resize_to_height"]

ImageSource = str | Path | bytes | bytearray | memoryview | np.ndarray

_ORIENTATION_TAG = 274  # EXIF orientation
_BITS_PER_SAMPLE_TAG = 258  # TIFF
#: PIL's names for JPEG files (MPO: a phone's JPEG with extra pictures appended, e.g. depth maps).
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
#: Formats whose pixels never have more than 8 bits a channel.
_EIGHT_BIT_FORMATS = frozenset({"BMP", "DIB", "GIF", "ICO", "WEBP", "SUN", "TGA", "PCX"})
#: Pixels converted at once by :func:`_to_rgb8` (bounds its float temporaries to ~50 MB).
_BAND_PIXELS = 1 << 20
_MB = 1e6


@dataclass(frozen=True)
class _Header:
    """What PIL's header reader says about a photo, without decoding its pixels."""

    width: int
    """Width in pixels as stored (before EXIF orientation)."""
    height: int
    """Height in pixels as stored."""
    orientation: int
    """EXIF orientation (1 = as stored)."""
    format: str
    """PIL's format name ("JPEG", "PNG", "WEBP", ...)."""
    alpha: bool
    """The image is (or may be) transparent: decoded as stored, with its alpha."""
    sample_bytes: int
    """Bytes a channel takes when decoded as stored (2 for 16-bit PNG/TIFF; an upper bound)."""
    coefficient_bytes: int
    """A progressive JPEG's DCT coefficients, held at full size whatever the decode scale; else 0."""


#: PIL refused to even size the image (its own bomb guard, ~179 MP).
_TOO_LARGE = _Header(-1, -1, 1, "", False, 1, 0)


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


def _sample_bytes(im: Any, data: bytes) -> int:
    """Upper bound of the bytes a channel takes when OpenCV decodes ``im`` as stored."""
    if im.format == "PNG" and data[12:16] == b"IHDR" and len(data) > 24:
        return 2 if data[24] == 16 else 1  # IHDR bit depth
    if im.format in _EIGHT_BIT_FORMATS:
        return 1
    if im.format == "TIFF":
        bits = im.tag_v2.get(_BITS_PER_SAMPLE_TAG, 8)
        bits = max(bits) if isinstance(bits, tuple | list) else bits
        return max(1, math.ceil(int(bits) / 8))
    return 2  # JPEG 2000, AVIF, PPM, ...: up to 16 bits a channel


def _coefficient_bytes(im: Any) -> int:
    """DCT coefficients libjpeg keeps for a progressive JPEG (2 bytes a sample, blocks of 8)."""
    layers = getattr(im, "layer", None)
    if im.format not in _JPEG_FORMATS or not im.info.get("progressive") or not layers:
        return 0
    h_max = max(int(layer[1]) for layer in layers)
    v_max = max(int(layer[2]) for layer in layers)
    w, h = im.size
    total = 0
    for _, hs, vs, _ in layers:
        cols = math.ceil(w * int(hs) / h_max / 8) * 8
        rows = math.ceil(h * int(vs) / v_max / 8) * 8
        total += 2 * cols * rows
    return total


def _header(data: bytes) -> _Header | None:
    """The photo's header without decoding pixels; None if PIL can't tell, ``_TOO_LARGE`` if huge."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            orient = 1
            # PIL's PNG reader decodes every pixel to look for an eXIf chunk after the image
            # data; one before it (where the PNG spec recommends) is already in ``info``
            if im.format != "PNG" or "exif" in im.info:
                try:
                    orient = int(im.getexif().get(_ORIENTATION_TAG, 1) or 1)
                except Exception:
                    orient = 1
            alpha = "A" in im.mode or "a" in im.mode or "transparency" in im.info
            return _Header(
                int(w), int(h), orient, str(im.format), alpha, _sample_bytes(im, data), _coefficient_bytes(im)
            )
    except Exception as e:
        if type(e).__name__ == "DecompressionBombError":  # PIL's own guard (> ~179 MP)
            return _TOO_LARGE
        return None


@dataclass(frozen=True)
class _Plan:
    """How one photo is decoded."""

    flags: int
    """``cv2.imdecode`` flags."""
    width: int
    """Width the decode must give."""
    height: int
    """Height the decode must give."""
    cost: int
    """Peak bytes of the decode (the pixels twice, plus a progressive JPEG's coefficients)."""


#: JPEG decode scales (1/n) and their flags: libjpeg decodes directly at that scale.
_JPEG_SCALES = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def _plan(head: _Header, max_pixels: float, max_decode_bytes: float, what: str) -> _Plan:
    """The cheapest decode that keeps the photo's detail up to ``max_pixels``, or InputError."""
    w, h = head.width, head.height
    mp = f"{w}x{h} = {w * h / 1e6:.0f} MP"
    if head.format in _JPEG_FORMATS:  # 8-bit BGR, at the largest scale within both limits
        plan = _Plan(0, w, h, 0)
        for reduce, flag in _JPEG_SCALES.items():
            rw, rh = -(-w // reduce), -(-h // reduce)  # libjpeg rounds scaled sizes up
            plan = _Plan(flag, rw, rh, head.coefficient_bytes + 2 * 3 * rw * rh)
            if plan.cost <= max_decode_bytes and (rw * rh <= max_pixels or reduce == 8):
                return plan
        kind = "progressive JPEG" if head.coefficient_bytes else "JPEG"
        raise InputError(
            f"the photo {what} is too large to open: a {kind} of {mp} needs about "
            f"{plan.cost / _MB:.0f} MB to decode (at most {max_decode_bytes / _MB:.0f} MB); "
            f"{'save it as a baseline JPEG or ' if head.coefficient_bytes else ''}scale it down"
        )
    as_stored = head.alpha or head.sample_bytes > 2  # OpenCV can't make 8-bit BGR of float TIFFs
    per_pixel = 2 * 4 * head.sample_bytes if as_stored else 2 * 3
    plan = _Plan(cv2.IMREAD_UNCHANGED if as_stored else cv2.IMREAD_COLOR, w, h, per_pixel * w * h)
    if plan.cost > max_decode_bytes:
        kind = f"transparent {head.format}" if head.alpha else head.format
        raise InputError(
            f"the photo {what} is too large to open: {mp} ({kind}); images other than JPEG are "
            f"decoded at full size, so at most {max_decode_bytes / per_pixel / 1e6:.0f} MP are "
            f"accepted for this one (it would need about {plan.cost / _MB:.0f} MB); save it as a "
            "JPEG or scale it down"
        )
    return plan


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

    Alpha is composited on white, so a transparent cut-out keeps a clean background. 8-bit BGR is
    converted in place; anything else in bands of rows, so temporaries stay small.
    """
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)):
        raise InputError(f"unsupported image shape {a.shape}: expected HxW, HxWx3 or HxWx4")
    if a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3:
        if channel_order == "bgr" and a.flags.writeable and a.flags.c_contiguous:
            return cv2.cvtColor(a, cv2.COLOR_BGR2RGB, dst=a)  # in place: no second full-size copy
        return np.ascontiguousarray(a[:, :, ::-1] if channel_order == "bgr" else a)
    h, w = a.shape[:2]
    out = np.empty((h, w, 3), np.uint8)
    rows = max(1, _BAND_PIXELS // max(1, w))
    for top in range(0, h, rows):
        out[top : top + rows] = _band_to_rgb8(a[top : top + rows], channel_order)
    return out


def _band_to_rgb8(a: np.ndarray, channel_order: str) -> np.ndarray:
    """:func:`_to_rgb8` of a few rows (HxW or HxWxC with C in 2, 3, 4)."""
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
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2)
    alpha: np.ndarray | None
    if a.shape[2] == 2:
        color = np.repeat(a[:, :, :1], 3, axis=2)
        alpha = a[:, :, 1]
    else:
        color = a[:, :, :3]
        alpha = a[:, :, 3] if a.shape[2] == 4 else None
        if channel_order == "bgr":
            color = color[:, :, ::-1]
    if alpha is not None and alpha.min() < 255:
        wt = alpha.astype(np.float32)[:, :, None] / 255.0
        color = np.round(color.astype(np.float32) * wt + 255.0 * (1.0 - wt)).astype(np.uint8)
    return color


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
    max_decode_bytes: float = 240e6,
) -> np.ndarray:
    """Load a photo as an RGB uint8 array (H, W, 3).

    ``source`` is a path, the encoded bytes of an image file (PNG, JPEG, WebP, BMP, TIFF, ... what
    PIL can size and OpenCV decodes) or an array (HxW gray, HxWx3 RGB, HxWx4 RGBA; uint8, uint16 or
    float in [0, 1]). Alpha is composited on white; 16-bit is reduced to 8-bit; EXIF orientation is
    applied. Images over ``max_pixels`` come back downscaled (aspect kept) to at most ``max_pixels``.
    Decoding takes at most ``max_decode_bytes`` (the default, 6 bytes x 40 MP, admits any JPEG up to
    ``hard_max_pixels`` and other formats up to 40 MP, 15 MP if transparent and 16-bit).

    Raises InputError (naming the file) for a missing path, an empty, fake or corrupt file, a
    zero-size image, a header claiming more than ``hard_max_pixels``, a photo whose decode would
    take more than ``max_decode_bytes``, or one that decodes to another size than its header's.
    ``name`` is how messages call the photo (default: its path, or "the given image data").
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
    head = _header(data)
    if head is None:  # nothing to size it by: decoding it could take any amount of memory
        raise InputError(f"the photo {what} could not be read: not an image file (unknown format)")
    w, h = head.width, head.height
    if head is _TOO_LARGE:
        raise InputError(f"the photo {what} is too large (its header claims over 178 MP)")
    if w <= 0 or h <= 0:
        raise InputError(f"the photo {what} has zero size ({w}x{h})")
    if w * h > hard_max_pixels:
        raise InputError(
            f"the photo {what} is too large: {w}x{h} = {w * h / 1e6:.0f} MP "
            f"(at most {hard_max_pixels / 1e6:.0f} MP are accepted)"
        )
    plan = _plan(head, max_pixels, max_decode_bytes, what)
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        img = cv2.imdecode(buf, plan.flags | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as e:
        raise InputError(f"the photo {what} could not be decoded: {str(e).strip().splitlines()[-1]}") from e
    if img is None:
        raise InputError(f"the photo {what} could not be read: corrupt or truncated image")
    if img.size == 0 or img.shape[0] == 0 or img.shape[1] == 0:
        raise InputError(f"the photo {what} has zero size")
    if img.shape[:2] != (plan.height, plan.width):  # a header that lies, or two readers that disagree
        raise InputError(
            f"the photo {what} could not be read: it decodes to {img.shape[1]}x{img.shape[0]} pixels, "
            f"not the {plan.width}x{plan.height} its header gives"
        )
    rgb = _to_rgb8(img, "bgr")
    del img
    rgb = _apply_orientation(rgb, head.orientation)
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
