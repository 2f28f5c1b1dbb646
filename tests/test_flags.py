"""The flags ``render`` and ``serve`` share (``runtime/flags.py``): one mapping onto VloggerConfig,
one set of limits, the same error in both commands."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from vlogger.runtime.cli import build_parser, main, render_config
from vlogger.runtime.config import VloggerConfig
from vlogger.runtime.flags import FPS_RANGE, SIZE_RANGE
from vlogger.runtime.serve_cli import serve_config

SHARED = [
    "--size", "320",
    "--fps", "30",
    "--seed", "7",
    "--renderer", "warp",
    "--motion", "teacher",
    "--mouth", "phonemes",
    "--threads", "3",
]  # fmt: skip


def _render_args(tmp_path: Path, *flags: str) -> list[str]:
    return ["render", "--text", "Hello there.", "--out", str(tmp_path / "o.mp4"), *flags]


def _serve_args(*flags: str) -> list[str]:
    return ["serve", "--port", "0", *flags]


def _engine_part(config: VloggerConfig) -> dict[str, Any]:
    """Everything but the server's own settings (which only ``serve`` has)."""
    out = dataclasses.asdict(config)
    out.pop("server")
    return out


def test_the_same_shared_flags_give_the_same_config_in_both_commands(tmp_path: Path) -> None:
    parser = build_parser()
    rendered = render_config(parser.parse_args(_render_args(tmp_path, *SHARED)))
    served = serve_config(parser.parse_args(_serve_args(*SHARED)))
    assert _engine_part(rendered) == _engine_part(served)
    # and they are mapped where they belong, every engine's threads included (serve once skipped
    # the motion network's, and whisper followed the voice's)
    c = served
    assert (c.output.height, c.output.fps, c.seed, c.motion_engine, c.mouth) == (
        320,
        30.0,
        7,
        "teacher",
        "phonemes",
    )
    assert c.tts.threads == c.asr.cpu_threads == c.network.threads == c.warp.threads == 3
    assert c.output.encoder_threads == 3


def test_defaults_agree_too(tmp_path: Path) -> None:
    parser = build_parser()
    rendered = render_config(parser.parse_args(_render_args(tmp_path)))
    served = serve_config(parser.parse_args(_serve_args()))
    assert _engine_part(rendered) == _engine_part(served)
    default = VloggerConfig()
    assert (rendered.output.height, rendered.output.fps, rendered.seed) == (
        default.output.height,
        default.output.fps,
        default.seed,
    )


def test_serve_puts_its_photo_in_the_config(tmp_path: Path) -> None:
    photo = tmp_path / "me.png"
    photo.write_bytes(b"not read here")
    config = serve_config(build_parser().parse_args(_serve_args("--image", str(photo), "--no-listen")))
    assert config.server.default_image == str(photo) and not config.server.listen_enabled


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--size", str(SIZE_RANGE[1] + 1)), "--size 2049 is out of range (64 to 2048)"),
        (("--size", str(SIZE_RANGE[0] - 1)), "--size 63 is out of range (64 to 2048)"),
        (("--fps", str(FPS_RANGE[1] + 0.5)), "--fps 60.5 is out of range (1 to 60)"),
        (("--fps", "0"), "--fps 0 is out of range (1 to 60)"),
        (("--threads", "0"), "--threads 0 is out of range (1 to 256)"),
        (("--seed", "-1"), "--seed -1 is out of range (0 to 4294967295)"),
        (("--renderer", "nerf"), "--renderer 'nerf' is unknown (choose from warp, diffusion)"),
        (("--diffusion-model", "/nowhere/mine.onnx"), "--diffusion-model not found: /nowhere/mine.onnx"),
    ],
)
def test_bad_shared_flags_get_the_same_error_in_both_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: tuple[str, ...], message: str
) -> None:
    errors = []
    for argv in (_render_args(tmp_path, *flags), _serve_args(*flags)):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err and "Traceback" not in "\n".join(err)
        errors.append(err[-1])
    assert errors[0] == errors[1] == f"error: {message}"
    assert not (tmp_path / "o.mp4").exists()


def test_unparseable_shared_flags_are_usage_errors_in_both(tmp_path: Path) -> None:
    for argv in (_render_args(tmp_path, "--size", "big"), _serve_args("--size", "big")):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
