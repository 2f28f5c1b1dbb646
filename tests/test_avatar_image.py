"""Photo loading: formats, alpha, bit depth, bad files, huge photos and decompression bombs
(engines/avatar/image.py)."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from vlogger.engines.avatar import DEFAULT_PORTRAIT
from vlogger.engines.avatar import image as image_module
from vlogger.engines.avatar.image import image_sha256, load_image, resize_to_height
from vlogger.engines.errors import InputError


def _pattern(h: int = 60, w: int = 80) -> np.ndarray:
    """RGB test picture with distinct channel values: red left half, blue right half."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (200, 30, 10)
    img[:, w // 2 :] = (10, 40, 220)
    return img


def _write(path: Path, rgb: np.ndarray, ext: str = ".png") -> Path:
    bgr = rgb[:, :, ::-1] if rgb.ndim == 3 and rgb.shape[2] == 3 else rgb
    ok, buf = cv2.imencode(ext, bgr)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".bmp", ".tiff"])
def test_formats_load_as_rgb(tmp_path: Path, ext: str) -> None:
    src = _pattern()
    img = load_image(_write(tmp_path / f"p{ext}", src, ext))
    assert img.dtype == np.uint8 and img.shape == src.shape
    # colours come back in RGB order (red on the left, blue on the right), lossy formats within 12
    assert np.abs(img[30, 10].astype(int) - (200, 30, 10)).max() <= 12
    assert np.abs(img[30, 70].astype(int) - (10, 40, 220)).max() <= 12


def test_bytes_and_array_sources_match_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.png", _pattern())
    from_path = load_image(path)
    assert np.array_equal(load_image(path.read_bytes()), from_path)
    assert np.array_equal(load_image(str(path)), from_path)
    assert np.array_equal(load_image(_pattern()), from_path)
    assert image_sha256(path) == image_sha256(path.read_bytes())


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., :3] = (255, 0, 0)
    rgba[:, :10, 3] = 255  # opaque red on the left, fully transparent on the right
    bgra = rgba[:, :, [2, 1, 0, 3]]
    _ok, buf = cv2.imencode(".png", bgra)
    img = load_image(buf.tobytes())
    assert img.shape == (20, 20, 3)
    assert tuple(img[5, 2]) == (255, 0, 0)
    assert tuple(img[5, 15]) == (255, 255, 255)
    half = rgba.copy()
    half[..., 3] = 128
    assert abs(int(load_image(half)[0, 0, 1]) - 127) <= 1  # 50% red over white: G = 127


def test_grayscale_and_16bit(tmp_path: Path) -> None:
    gray = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (5, 1))
    img = load_image(_write(tmp_path / "g.png", gray))
    assert img.shape == (5, 25, 3)
    assert np.array_equal(img[..., 0], gray) and np.array_equal(img[..., 2], gray)
    deep = (np.tile(np.linspace(0, 65535, 16), (4, 1))).astype(np.uint16)
    _ok, buf = cv2.imencode(".png", deep)
    img16 = load_image(buf.tobytes())
    assert img16.dtype == np.uint8
    assert img16[0, 0, 0] == 0 and img16[0, -1, 0] == 255
    assert np.all(np.diff(img16[0, :, 0].astype(int)) > 0)


def test_bad_inputs_name_the_problem_and_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    with pytest.raises(InputError, match=r"not found.*nope\.png"):
        load_image(missing)
    fake = tmp_path / "fake.png"
    fake.write_text("this is a text file renamed to .png\n")
    with pytest.raises(InputError, match=r"fake\.png.*not an image"):
        load_image(fake)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.jpg.*empty"):
        load_image(empty)
    good = _write(
        tmp_path / "cut.jpg", np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8), ".jpg"
    )
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(InputError, match=r"truncated\.jpg"):
        load_image(truncated)
    with pytest.raises(InputError, match="folder"):
        load_image(tmp_path)
    with pytest.raises(InputError, match="empty"):
        load_image(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(InputError, match="too large"):
        load_image(good, hard_max_pixels=1000)


def test_tiny_image_loads() -> None:
    img = load_image(np.array([[[10, 20, 30]]], np.uint8))
    assert img.shape == (1, 1, 3) and tuple(img[0, 0]) == (10, 20, 30)
    up = resize_to_height(img, 512)
    assert up.shape == (512, 512, 3)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    from PIL import Image

    src = _pattern(40, 80)  # wide; stored rotated with orientation 6 ("rotate 90 cw to view")
    stored = np.ascontiguousarray(np.rot90(src, k=1))  # 80 x 40, counter-clockwise
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[274] = 6
    path = tmp_path / "o.jpg"
    im.save(path, exif=exif, quality=95)
    img = load_image(path)
    assert img.shape == (40, 80, 3)
    assert img[20, 10, 0] > 150 and img[20, 70, 2] > 150  # red left, blue right as shot


def test_resize_to_height_keeps_aspect_with_even_width() -> None:
    img = np.zeros((300, 451, 3), np.uint8)
    out = resize_to_height(img, 512)
    assert out.shape[0] == 512 and out.shape[1] % 2 == 0
    assert abs(out.shape[1] - 451 * 512 / 300) <= 1.0
    assert resize_to_height(np.zeros((512, 512, 3), np.uint8), 512).shape == (512, 512, 3)


def test_default_portrait_loads() -> None:
    img = load_image(DEFAULT_PORTRAIT)
    assert img.shape == (512, 512, 3) and img.dtype == np.uint8
    assert 60 < img.mean() < 200


def test_huge_jpeg_is_downscaled_with_bounded_memory(tmp_path: Path) -> None:
    """An 8000x6000 (48 MP) JPEG comes back under 40 MP without ever decoding at full size."""
    small = cv2.resize(_pattern(60, 80), (8000, 6000), interpolation=cv2.INTER_NEAREST)
    _ok, buf = cv2.imencode(".jpg", small[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
    del small
    path = tmp_path / "huge.jpg"
    path.write_bytes(buf.tobytes())
    code = textwrap.dedent(
        f"""
        import resource, numpy as np
        from vlogger.engines.avatar.image import load_image
        load_image(np.zeros((2, 2, 3), np.uint8))  # warm up imports and allocator
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        img = load_image({str(path)!r})
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(img.shape[0], img.shape[1], int(img[3000 // 2, 100, 0]), (after - before) // 1024)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    h, w, red, grew_mb = (int(v) for v in out.stdout.split())
    assert h * w <= 40e6 and abs(w / h - 8000 / 6000) < 0.01
    assert red > 150  # the left half is still red
    # a full-size cv2 decode of this file raises the peak by ~240 MB (the pixels alone are 144 MB);
    # the reduced decode measured ~75 MB
    assert grew_mb < 120, f"peak memory grew by {grew_mb} MB"


def _png_of_zeros(width: int, height: int, color_type: int = 0, depth: int = 8) -> bytes:
    """A valid PNG of black pixels, written row by row (a 144 MP one is ~150 kB and takes no RAM)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    row = bytes(1 + width * channels * depth // 8)  # filter byte 0, then zeros
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _peak_growth_mb(code: str) -> tuple[str, int]:
    """Run ``code`` (which sets ``result``) in a fresh interpreter: (result, peak RSS growth in MB)."""
    script = (
        textwrap.dedent(
            """
        import resource, numpy as np
        from vlogger.engines.avatar.image import load_image
        load_image(np.zeros((2, 2, 3), np.uint8))  # warm up imports and allocator
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        """
        )
        + textwrap.dedent(code)
        + textwrap.dedent(
            """
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(result)
        print((after - before) // 1024)
        """
        )
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    result, grew = out.stdout.strip().rsplit("\n", 1)
    return result, int(grew)


@pytest.mark.filterwarnings("ignore:Image size")  # PIL warns over 89 MP; we refuse it anyway
def test_png_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    """A 144 MP PNG (under the 150 MP header guard) is refused from its header: no pixel decoded."""
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_of_zeros(12000, 12000))
    assert path.stat().st_size < 400_000
    with pytest.raises(InputError, match=r"bomb\.png.*12000x12000 = 144 MP.*at most 40 MP.*JPEG"):
        load_image(path)
    result, grew_mb = _peak_growth_mb(
        f"""
        try:
            load_image({str(path)!r})
            result = "loaded"
        except ValueError as e:
            result = "refused"
        """
    )
    # decoding it cost +600 MB before (PIL's PNG EXIF lookup alone decoded every pixel)
    assert result == "refused" and grew_mb < 30, f"{result}, peak memory grew by {grew_mb} MB"


def test_png_within_the_budget_loads_at_full_size(tmp_path: Path) -> None:
    png = _png_of_zeros(3000, 2000, color_type=2, depth=16)  # 16-bit colour, 6 MP: read as 8-bit
    img = load_image(png)
    assert img.shape == (2000, 3000, 3) and img.dtype == np.uint8 and int(img.max()) == 0
    # the budget is in bytes: 6 bytes a plain pixel (OpenCV's BGR and the copy NumPy gets)
    with pytest.raises(InputError, match=r"3000x2000 = 6 MP \(PNG\).*at most 5 MP"):
        load_image(png, max_decode_bytes=30e6)
    small = load_image(png, max_pixels=1e6)  # still downscaled to the working size afterwards
    assert small.shape[0] * small.shape[1] <= 1e6 and abs(small.shape[1] / small.shape[0] - 1.5) < 0.01


def test_transparent_and_deep_pngs_count_their_bytes(tmp_path: Path) -> None:
    """Transparent PNGs decode as stored (RGBA, 16-bit): 8 or 16 bytes a pixel with OpenCV's copy."""
    rgba16 = _png_of_zeros(5000, 4000, color_type=6, depth=16)  # 20 MP: 320 MB to decode
    with pytest.raises(InputError, match=r"5000x4000 = 20 MP \(transparent PNG\).*at most 15 MP"):
        load_image(rgba16)
    rgba8 = _png_of_zeros(5000, 4000, color_type=6, depth=8)  # 20 MP: 160 MB
    img = load_image(rgba8)  # fully transparent black: composited on white
    assert img.shape == (4000, 5000, 3) and int(img.min()) == 255


def test_a_header_that_lies_about_the_size_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _ok, buf = cv2.imencode(".png", _pattern(200, 300))
    real = image_module._header

    def lying(data: bytes) -> image_module._Header | None:
        head = real(data)
        assert head is not None
        return image_module._Header(30, 20, 1, head.format, head.alpha, 1, 0)

    monkeypatch.setattr(image_module, "_header", lying)
    with pytest.raises(InputError, match="decodes to 300x200 pixels, not the 30x20 its header gives"):
        load_image(buf.tobytes())


def test_formats_pil_cannot_size_are_refused() -> None:
    ok, hdr = cv2.imencode(".hdr", np.full((8, 8, 3), 0.5, np.float32))  # Radiance: OpenCV only
    assert ok and cv2.imdecode(hdr, cv2.IMREAD_UNCHANGED) is not None
    with pytest.raises(InputError, match="not an image file"):
        load_image(hdr.tobytes())


def test_progressive_jpeg_counts_its_coefficients() -> None:
    """libjpeg holds a progressive JPEG's coefficients at full size even for a reduced decode."""
    rgb = cv2.resize(_pattern(60, 80), (2000, 1500), interpolation=cv2.INTER_NEAREST)
    _ok, prog = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    _ok, base = cv2.imencode(".jpg", rgb[:, :, ::-1])
    # 3 MP at 4:2:0: 9 MB of coefficients; a 1/8 decode is 0.3 MB
    with pytest.raises(InputError, match=r"progressive JPEG of 2000x1500 = 3 MP needs about 9 MB"):
        load_image(prog.tobytes(), max_pixels=1e5, max_decode_bytes=5e6)
    for data in (base, prog):
        img = load_image(data.tobytes(), max_pixels=1e5, max_decode_bytes=12e6)
        assert img.shape[0] * img.shape[1] <= 1e5 and img[img.shape[0] // 2, 5, 0] > 150  # red left
    assert load_image(base.tobytes(), max_pixels=1e5, max_decode_bytes=5e6).shape == (188, 250, 3)


def test_phone_mpo_jpeg_is_decoded_reduced_like_a_jpeg() -> None:
    """Phones save some photos as MPO (a JPEG with pictures appended); PIL names the format MPO."""
    from PIL import Image

    im = Image.fromarray(cv2.resize(_pattern(60, 80), (2000, 1500), interpolation=cv2.INTER_NEAREST))
    out = io.BytesIO()
    im.save(out, format="MPO", save_all=True, append_images=[im])
    # a full-size decode would take 6 bytes x 3 MP = 18 MB: only a reduced one fits 12 MB
    img = load_image(out.getvalue(), max_pixels=1e6, max_decode_bytes=12e6)
    assert img.shape == (750, 1000, 3) and img[375, 10, 0] > 150 and img[375, 990, 2] > 150
