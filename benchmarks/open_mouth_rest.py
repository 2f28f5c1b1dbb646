"""Photos taken mid-speech: does the avatar rest with closed lips? (issue #15, ``RigConfig.closed_rest``)

For each real talking clip (``<data>/real/<clip>.mp4``, 25 fps, with its cached 25 fps FaceMesh
landmarks ``training/data/real/<clip>.landmarks25.npz``, key ``real_mouth_opening``) the frame with
the widest mouth opening is decoded with PyAV and used as the avatar photo: it is fitted once
(the real ``Fitter``, which estimates the photo's mouth expression) and rigged twice, with
``closed_rest`` on and off. Reported per clip:

* ``photo``: the photo's own opening (``metrics.mouth_opening`` of the fitted landmarks);
* ``real_closed``: the clip's real closed mouth, the 5th percentile of its per-frame opening, and
  ``real_median`` (the person speaking);
* ``neutral_on`` / ``neutral_off``: the opening of ``avatar.neutral()`` (the rig's rest) with the
  switch on / off;
* ``render_on`` / ``render_off``: the neutral pose rendered by the warp renderer and fitted again
  (what a viewer sees: FaceMesh on the rendered frame);
* the estimated mouth coefficients; and, as a check that closed photos are left alone, the
  estimate on the clip's most closed frame (``closed_frame_estimate``: the sum of its mouth
  coefficients, 0 = the photo is kept as it is).

    python benchmarks/open_mouth_rest.py [--clips all|name,name,...] [--out results/open_mouth_rest.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LANDMARKS = ROOT / "training" / "data" / "real"
#: One clip per source and speaker, each with a wide-open frame (opening 0.24-0.37).
DEFAULT_CLIPS = (
    "edtalk_obama_01",
    "edtalk_ef01_01",
    "grid_gm02_01",
    "pcavs_vm02_01",
    "styletalk_andrew_01",
    "styletalk_feifeili_01",
)


def default_data() -> Path:
    """The shared data folder (``$VLOGGER_SHARED_DATA`` or ``../shared/data`` next to the repo)."""
    env = os.environ.get("VLOGGER_SHARED_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def decode_frame(path: Path, index: int) -> np.ndarray:
    """Frame ``index`` (decode order; the clips are constant 25 fps from t = 0) as RGB uint8."""
    import av

    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
    raise IndexError(f"{path} has fewer than {index + 1} frames")


def measure_clip(clip: str, data: Path, fitter: Any) -> dict[str, Any]:
    from vlogger.engines.avatar import AvatarConfig, RigConfig, load_avatar
    from vlogger.engines.avatar.rig import Rig
    from vlogger.engines.metrics import mouth_opening
    from vlogger.engines.render.warp import WarpRenderer
    from vlogger.engines.types import EXPRESSION_NAMES

    with np.load(LANDMARKS / f"{clip}.landmarks25.npz") as z:
        real = np.asarray(z["real_mouth_opening"], np.float64)
    ok = np.isfinite(real)
    widest = int(np.flatnonzero(ok)[np.argmax(real[ok])])
    closed = int(np.flatnonzero(ok)[np.argmin(real[ok])])
    path = data / "real" / f"{clip}.mp4"
    photo = decode_frame(path, widest)
    height = photo.shape[0] - photo.shape[0] % 2
    t0 = time.perf_counter()
    avatar = load_avatar(photo, height=height, config=AvatarConfig(), cache=False, fitter=fitter)
    fit_s = time.perf_counter() - t0
    renderer = WarpRenderer(avatar.image, avatar.fit)
    row: dict[str, Any] = {
        "clip": clip,
        "frame": widest,
        "size": [int(avatar.width), int(avatar.height)],
        "real_closed": float(np.percentile(real[ok], 5)),
        "real_median": float(np.median(real[ok])),
        "real_at_frame": float(real[widest]),
        "photo": mouth_opening(avatar.fit.face),
        "estimate": {
            n: round(float(v), 3) for n, v in zip(EXPRESSION_NAMES, avatar.fit.expression, strict=True) if v
        },
        "fit_s": round(fit_s, 3),
    }
    for tag, on in (("on", True), ("off", False)):
        rig = Rig(avatar.fit, RigConfig(closed_rest=on))
        neutral = rig.pose(_neutral())
        row[f"neutral_{tag}"] = mouth_opening(neutral.face)
        refit = fitter.fit(renderer.render(neutral))
        row[f"render_{tag}"] = mouth_opening(refit.face)
    closed_photo = decode_frame(path, closed)
    closed_fit = fitter.fit(closed_photo)
    row["closed_frame"] = closed
    row["closed_frame_opening"] = mouth_opening(closed_fit.face)
    row["closed_frame_estimate"] = round(float(np.sum(closed_fit.expression)), 3)
    row["closed_frame_coefficients"] = {
        n: round(float(v), 3) for n, v in zip(EXPRESSION_NAMES, closed_fit.expression, strict=True) if v
    }
    return row


_COLUMNS = ("photo", "real_closed", "real_median", "neutral_on", "neutral_off", "render_on", "render_off")


def _line(cells: list[Any]) -> str:
    """One table row: the clip name, then numbers (3 decimals) or words, right-aligned."""
    out = [f"{cells[0]:24s}"]
    for c in cells[1:]:
        out.append(f"{c:8.3f}" if isinstance(c, float) else f"{c!s:>8s}")
    return " ".join(out)


def _neutral() -> Any:
    from vlogger.engines.types import MotionFrame

    return MotionFrame.neutral()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", default=",".join(DEFAULT_CLIPS), help="comma-separated names, or 'all'")
    ap.add_argument("--data", type=Path, default=None, help="shared data folder (default ../shared/data)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "open_mouth_rest.json")
    args = ap.parse_args(argv)
    from vlogger.engines.avatar import Fitter

    data = args.data or default_data()
    if args.clips == "all":
        clips = sorted(p.name.split(".")[0] for p in LANDMARKS.glob("*.landmarks25.npz"))
        clips = [c for c in clips if (data / "real" / f"{c}.mp4").is_file()]
    else:
        clips = [c for c in args.clips.split(",") if c]
    rows = []
    with Fitter() as fitter:
        for clip in clips:
            mp4, marks = data / "real" / f"{clip}.mp4", LANDMARKS / f"{clip}.landmarks25.npz"
            if not (mp4.is_file() and marks.is_file()):
                print(f"skip {clip}: clip or landmarks missing")
                continue
            rows.append(measure_clip(clip, data, fitter))
    print(_line(["clip", "photo", "real", "real", "neutral", "neutral", "render", "render", "closed"]))
    print(_line(["", "", "closed", "median", "on", "off", "on", "off", "est"]) + "  estimate (widest frame)")
    for r in rows:
        est = " ".join(f"{k}={v:.2f}" for k, v in r["estimate"].items())
        print(_line([r["clip"], *(r[k] for k in _COLUMNS), r["closed_frame_estimate"]]) + f"  {est}")
    summary: dict[str, Any] = {}
    if rows:
        summary = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in _COLUMNS}
        summary["closed_frames_left_alone"] = sum(r["closed_frame_estimate"] == 0 for r in rows)
        summary["clips"] = len(rows)
        print(
            _line(["mean", *(summary[k] for k in _COLUMNS), ""])
            + f"  closed frames read as 0: {summary['closed_frames_left_alone']}/{len(rows)}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"clips": rows, "mean": summary}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
