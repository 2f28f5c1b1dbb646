"""Train the mouth read-out on real speakers: Whisper features -> the rig's 9 mouth coefficients.

The model (:class:`Readout`): each frame's Whisper feature (the runtime's
:class:`~vlogger.engines.motion.features.FeatureStream`, 768 values, ``lookahead`` frames of
lookahead) minus the training mean, projected on the first ``components`` whitened principal
components, stacked with the ``context`` previous frames, then a ridge regression to the 9 mouth
coefficients; all of it folds into one affine map ``sum_k (f[i-k] - mean) @ A_k + b``, clipped to
[0, 1] (the rig's range). Targets: the coefficients fitted from each clip's own landmarks
(``training/motion/real_clips.py``), minus the clip's mean (speakers rest and open differently; the
read-out learns the timing and the shape, not a speaker's offset), plus the pool's mean.

Settings (context, ridge weight) are never picked on the speakers that are scored: leave-one-
speaker-out (:func:`loso`) picks them for each held-out speaker by an inner grouped k-fold over the
other speakers only; the shipped model picks them by grouped k-fold over all speakers. The score
everywhere (:func:`rig_score`) is the mouth opening of the default avatar posed by the rig with the
predicted coefficients (inner-lip gap / eye-corner distance, the measure of
``benchmarks/lipsync.py``) vs the real clip's FaceMesh opening: Pearson r at the best lag within
+-2 frames, per clip, averaged per speaker, then over speakers.

One command retrains it from the clips (``../shared/data``, or ``--data`` / ``VLOGGER_SHARED_DATA``)::

    python -m training.motion.mouth [--lookaheads 2 0 4 8] [--out training/runs/mouth]

Stages, each resumable (what exists is reused) and printing progress: the real-clip corpus
(``training.motion.real_clips``: FaceMesh landmarks and rig targets per clip, in ``--corpus``), the
Whisper features per lookahead (``training.motion.mouth_data``), leave-one-speaker-out per lookahead
(``loso_L<k>.json`` / ``.npz``: held-out predictions; per-fold models under ``folds_L<k>/``), and
``mouth_readout.onnx`` (all speakers; copy it to ``engines/motion/assets/`` to ship it).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from training.motion.mouth_data import ClipData, build_features, feature_config, load_clips, nonspeech_clips
from vlogger.engines.metrics import LIPSYNC_MAX_LAG, best_lag_r
from vlogger.engines.types import EXPRESSION_NAMES, MotionFrame

__all__ = [
    "GATE_HOLD",
    "GRID",
    "Readout",
    "ReadoutSpec",
    "calibrate",
    "export_onnx",
    "fit_presence",
    "fit_readout",
    "grouped_folds",
    "hold",
    "loso",
    "main",
    "opening_model",
    "rig_score",
    "select_spec",
]

#: lag window of the score (frames), :data:`vlogger.engines.metrics.LIPSYNC_MAX_LAG`
MAX_LAG = LIPSYNC_MAX_LAG


@dataclass(frozen=True)
class ReadoutSpec:
    """The read-out's settings."""

    context: int = 4
    """Previous frames stacked with the current one (causal: no extra lookahead)."""
    alpha: float = 0.3
    """Ridge weight, relative to the number of frames (features are whitened)."""
    components: int = 128
    """Whitened principal components kept per frame."""
    lookahead: int = 2
    """Feature lookahead in frames (``FeatureConfig.lookahead_frames``)."""


#: The settings the inner folds choose from (lookahead is fixed per run).
GRID = tuple(ReadoutSpec(context=c, alpha=a) for c in (0, 2, 4, 8) for a in (0.3, 1.0, 3.0, 10.0))
#: A smaller grid for the lookahead study (``--small-grid``): the contexts and ridge weights the
#: inner folds chose at the shipped lookahead (context 2 for all 27 speakers, ridge 1-10).
SMALL_GRID = tuple(ReadoutSpec(context=c, alpha=a) for c in (0, 2) for a in (1.0, 3.0))


#: Frames the speech gate stays open after speech (a causal hold: pauses inside speech keep the
#: read-out's own mouth).
GATE_HOLD = 6


@dataclass
class Readout:
    """A fitted read-out, folded to ``mouth[i] = clip(sum_k (f[i-k] - mean) @ weight[k] + bias, 0, 1)``
    times the speech gate ``clip((presence[i] - gate_lo) / (gate_hi - gate_lo), 0, 1)`` held open for
    :data:`GATE_HOLD` frames, where ``presence`` is a second affine map of the same features."""

    spec: ReadoutSpec
    feature_mean: np.ndarray
    """(768,) the training features' mean."""
    weight: np.ndarray
    """(context + 1, 768, 9): ``weight[k]`` multiplies the feature of frame ``i - k``."""
    bias: np.ndarray
    """(9,)"""
    presence_weight: np.ndarray | None = None
    """(context + 1, 768, 1): the speech-presence read-out (``None``: no gate)."""
    presence_bias: np.ndarray | None = None
    """(1,)"""
    gate_lo: float = 0.0
    """Presence at or below which the mouth is closed (the 99th percentile of non-speech)."""
    gate_hi: float = 1.0
    """Presence at or above which the mouth is the read-out's (the 2nd percentile of speech)."""

    def predict(self, features: np.ndarray, gated: bool = True) -> np.ndarray:
        """(n, 9) mouth coefficients of a whole clip's features (n, 768), causally."""
        out = np.clip(_raw(self, features), 0.0, 1.0)
        if gated and self.presence_weight is not None:
            out = out * self.gate(features)[:, None]
        return out

    def presence(self, features: np.ndarray) -> np.ndarray:
        """(n,) the speech-presence read-out (about 1 on speech, 0 on silence, noise and music)."""
        assert self.presence_weight is not None and self.presence_bias is not None
        return _affine(features, self.feature_mean, self.presence_weight, self.presence_bias)[:, 0]

    def gate(self, features: np.ndarray) -> np.ndarray:
        """(n,) the speech gate in [0, 1], held open for :data:`GATE_HOLD` frames."""
        g = np.clip((self.presence(features) - self.gate_lo) / (self.gate_hi - self.gate_lo), 0.0, 1.0)
        return hold(g, GATE_HOLD)


def hold(g: np.ndarray, frames: int) -> np.ndarray:
    """Causal running maximum over the last ``frames`` + 1 values."""
    out = np.array(g, np.float64)
    for k in range(1, frames + 1):
        out[k:] = np.maximum(out[k:], g[:-k])
    return out


def _stack(z: np.ndarray, context: int) -> np.ndarray:
    """[z_i, z_(i-1), ..., z_(i-context)] per row; the first frame repeated before the start (as the
    runtime's :class:`~vlogger.engines.motion.mouth.MouthReadout` does)."""
    n = len(z)
    cols = [z] + [
        np.concatenate([np.repeat(z[:1], min(k, n), axis=0), z[: n - k]]) for k in range(1, context + 1)
    ]
    return np.concatenate(cols, axis=1)


class _Basis:
    """Mean and whitened principal axes of a set of clips' features (shared by several specs)."""

    def __init__(self, clips: Sequence[ClipData], max_components: int) -> None:
        x = np.concatenate([c.features for c in clips]).astype(np.float64)
        self.mean = x.mean(axis=0)
        xc = x - self.mean
        evals, evecs = np.linalg.eigh(xc.T @ xc / len(xc))
        order = np.argsort(evals)[::-1][:max_components]
        self.proj = evecs[:, order] / np.sqrt(np.maximum(evals[order], 1e-12))  # (768, k) whitening

    def project(self, feats: np.ndarray, components: int) -> np.ndarray:
        return (np.asarray(feats, np.float64) - self.mean) @ self.proj[:, :components]


class _Design:
    """The stacked design and targets of some speech clips at one context, for solving several ridge
    weights."""

    def __init__(self, clips: Sequence[ClipData], basis: _Basis, components: int, context: int) -> None:
        z = np.concatenate([_stack(basis.project(c.features, components), context) for c in clips])
        speech = [c for c in clips if c.speech]
        # a closed mouth, relative to a speaker's mean: how far below their mean their pauses sit
        closed = np.mean([np.percentile(c.mouth, 5, axis=0) - c.mouth.mean(axis=0) for c in speech], axis=0)
        y = np.concatenate(
            [
                c.mouth - c.mouth.mean(axis=0) if c.speech else np.tile(closed, (len(c.mouth), 1))
                for c in clips
            ]
        )
        self.pool_mean = np.concatenate([c.mouth for c in speech]).mean(axis=0)
        self.zm, self.ym = z.mean(axis=0), y.mean(axis=0)
        zc = z - self.zm
        self.n = len(z)
        self.gram = zc.T @ zc
        self.cross = zc.T @ (y - self.ym)

    def solve(self, spec: ReadoutSpec, basis: _Basis) -> Readout:
        w = np.linalg.solve(self.gram + spec.alpha * self.n * np.eye(len(self.gram)), self.cross)
        p = spec.components
        proj = basis.proj[:, :p]
        weight = np.stack([proj @ w[k * p : (k + 1) * p] for k in range(spec.context + 1)])
        bias = self.ym + self.pool_mean - self.zm @ w
        return Readout(spec=spec, feature_mean=basis.mean, weight=weight, bias=bias)


def calibrate(model: Readout, clips: Sequence[ClipData], low: float = 5.0) -> Readout:
    """Give the read-out the real mouths' range: ridge shrinks its output towards the mean (the
    mouth would barely move, and a pause would look half open). Per channel, with statistics
    averaged over ``clips`` (each clip's own, so a speaker's offset does not count): the output's
    ``low``-th percentile is moved to the targets' (a closed mouth, ~0: the targets are relative to
    each clip's most closed frame) and its within-clip spread scaled to the targets'. Linear, so
    it folds into the weights. One gain for all channels, the jaw's (the jaw carries the opening):
    matching each channel's spread would amplify the channels the audio predicts worst (their ridge
    output is shrunk the most) and blur the mouth shape; r is unchanged up to the clip to [0, 1]."""
    clips = [c for c in clips if c.speech]
    raw = [_raw(model, c.features) for c in clips]
    lo_raw = np.mean([np.percentile(r, low, axis=0) for r in raw], axis=0)
    lo_tgt = np.mean([np.percentile(c.mouth, low, axis=0) for c in clips], axis=0)
    sd_raw = np.mean([r.std(axis=0) for r in raw], axis=0)
    sd_tgt = np.mean([c.mouth.std(axis=0) for c in clips], axis=0)
    gain = float(sd_tgt[0] / max(sd_raw[0], 1e-9))
    return Readout(
        spec=model.spec,
        feature_mean=model.feature_mean,
        weight=model.weight * gain,
        bias=gain * (model.bias - lo_raw) + lo_tgt,
    )


def _affine(features: np.ndarray, mean: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``sum_k (f[i-k] - mean) @ weight[k] + bias`` (the first frame repeated before the start)."""
    f = np.asarray(features, np.float64) - mean
    out = np.tile(np.asarray(bias, np.float64), (len(f), 1))
    for k in range(weight.shape[0]):
        shifted = np.concatenate([np.repeat(f[:1], min(k, len(f)), axis=0), f[: len(f) - k]]) if k else f
        out += shifted @ weight[k]
    return out


def _raw(model: Readout, features: np.ndarray) -> np.ndarray:
    """The read-out's mouth before the clip to [0, 1] and the gate."""
    return _affine(features, model.feature_mean, model.weight, model.bias)


def fit_presence(clips: Sequence[ClipData], model: Readout, basis: _Basis, alpha: float = 1.0) -> Readout:
    """``model`` with a speech gate: a ridge read-out of speech presence on the same stacked
    features (1 on every frame of the real clips, pauses included, 0 on the generated non-speech
    clips; the two classes weighted equally), gated between the 99th percentile of its output on
    non-speech and the 2nd percentile on speech. Without non-speech clips, ``model`` unchanged."""
    ns = [c for c in clips if not c.speech]
    sp = [c for c in clips if c.speech]
    if not ns or not sp:
        return model
    p, ctx = model.spec.components, model.spec.context
    z = np.concatenate([_stack(basis.project(c.features, p), ctx) for c in sp + ns])
    n_sp, n_ns = sum(len(c.features) for c in sp), sum(len(c.features) for c in ns)
    y = np.concatenate([np.ones(n_sp), np.zeros(n_ns)])
    w = np.concatenate([np.full(n_sp, 0.5 / n_sp), np.full(n_ns, 0.5 / n_ns)]) * len(y)
    zm = (w[:, None] * z).sum(axis=0) / w.sum()
    ym = float((w * y).sum() / w.sum())
    zc = z - zm
    beta = np.linalg.solve(
        (zc * w[:, None]).T @ zc + alpha * len(z) * np.eye(z.shape[1]), (zc * w[:, None]).T @ (y - ym)
    )
    proj = basis.proj[:, :p]
    pw = np.stack([proj @ beta[k * p : (k + 1) * p, None] for k in range(ctx + 1)])
    pb = np.array([ym - zm @ beta])
    out = Readout(model.spec, model.feature_mean, model.weight, model.bias, pw, pb)
    on_ns = np.concatenate([out.presence(c.features) for c in ns])
    on_sp = np.concatenate([out.presence(c.features) for c in sp])
    out.gate_lo = float(np.percentile(on_ns, 99))
    out.gate_hi = float(max(out.gate_lo + 0.1, np.percentile(on_sp, 2)))
    return out


def fit_readout(clips: Sequence[ClipData], spec: ReadoutSpec, basis: _Basis | None = None) -> Readout:
    """Calibrated ridge read-out of the speech ``clips`` (targets centred per clip;
    :func:`calibrate`) with the speech gate learned against the non-speech ones (:func:`fit_presence`)."""
    sp = [c for c in clips if c.speech]
    basis = basis if basis is not None else _Basis(sp, spec.components)
    model = calibrate(_Design(sp, basis, spec.components, spec.context).solve(spec, basis), sp)
    return fit_presence(clips, model, basis)


def opening_model() -> Callable[[np.ndarray], np.ndarray]:
    """Mouth opening of the default avatar posed with mouth coefficients (n, 9) -> (n,).

    The rig moves landmarks 13, 14, 33 and 263 linearly with the coefficients up to the camera
    projection; this uses the projected unit displacements (max error 0.002 against
    ``rig.pose`` on random coefficients in [0, 0.6], openings ~0.28), which is fast enough for the
    inner folds. ``benchmarks/lipsync.py`` poses the rig exactly."""
    from vlogger.engines.avatar import load_avatar

    rig = load_avatar(None).rig

    def points(c: np.ndarray) -> np.ndarray:
        f = MotionFrame.neutral()
        e = f.expression.copy()
        e[:9] = c
        f.expression = e
        return np.asarray(rig.pose(f).face[[13, 14, 33, 263], :2], np.float64)

    p0 = points(np.zeros(9))
    d = np.stack([points(np.eye(9)[k]) - p0 for k in range(9)])

    def opening(coefs: np.ndarray) -> np.ndarray:
        p = p0[None] + np.einsum("nk,kpd->npd", np.asarray(coefs, np.float64), d)
        return np.linalg.norm(p[:, 0] - p[:, 1], axis=1) / np.linalg.norm(p[:, 2] - p[:, 3], axis=1)

    return opening


def rig_score(
    clips: Sequence[ClipData], preds: Sequence[np.ndarray], opening: Callable[[np.ndarray], np.ndarray]
) -> dict[str, float]:
    """Per-speaker mean r of the posed opening vs the real one."""
    per: dict[str, list[float]] = {}
    for c, p in zip(clips, preds, strict=True):
        per.setdefault(c.speaker, []).append(best_lag_r(c.real_opening, opening(p), MAX_LAG)[0])
    return {s: float(np.mean(v)) for s, v in per.items()}


def grouped_folds(speakers: Sequence[str], k: int) -> list[list[str]]:
    """``k`` speaker groups, round-robin over the sorted speakers (deterministic)."""
    s = sorted(set(speakers))
    return [s[i::k] for i in range(min(k, len(s)))]


def select_spec(
    clips: Sequence[ClipData],
    opening: Callable[[np.ndarray], np.ndarray],
    grid: Sequence[ReadoutSpec] = GRID,
    k: int = 4,
) -> tuple[ReadoutSpec, dict[str, float]]:
    """The grid entry with the best mean per-speaker r over grouped ``k``-fold CV of the speech
    ``clips`` (the mouth alone, before the speech gate)."""
    clips = [c for c in clips if c.speech]
    folds = grouped_folds([c.speaker for c in clips], k)
    scores: dict[ReadoutSpec, list[float]] = {g: [] for g in grid}
    for held in folds:
        tr = [c for c in clips if c.speaker not in held]
        te = [c for c in clips if c.speaker in held]
        basis = _Basis(tr, max(g.components for g in grid))
        designs: dict[tuple[int, int], _Design] = {}
        for g in grid:
            key = (g.components, g.context)
            if key not in designs:
                designs[key] = _Design(tr, basis, g.components, g.context)
            model = calibrate(designs[key].solve(g, basis), tr)
            preds = [model.predict(c.features, gated=False) for c in te]
            scores[g].extend(rig_score(te, preds, opening).values())
    means = {g: float(np.mean(v)) for g, v in scores.items()}
    best = max(means, key=lambda g: means[g])
    return best, {f"context={g.context} alpha={g.alpha}": round(v, 4) for g, v in means.items()}


def loso(
    clips: Sequence[ClipData],
    opening: Callable[[np.ndarray], np.ndarray],
    folds_dir: Path | None = None,
    log: Callable[[str], None] = print,
    grid: Sequence[ReadoutSpec] = GRID,
) -> dict:
    """Leave-one-speaker-out: per held-out speaker, settings chosen on the others (inner grouped
    4-fold), a model fitted on the others, predictions on the held-out clips. Returns the report
    (per speaker: spec, r) and the held-out predictions (``"pred"``: clip -> (n, 9))."""
    speakers = sorted({c.speaker for c in clips if c.speech})
    report: dict = {"speakers": {}, "pred": {}}
    t0 = time.perf_counter()
    for n, s in enumerate(speakers):
        tr = [c for c in clips if c.speaker != s]
        te = [c for c in clips if c.speaker == s and c.speech]
        spec, _ = select_spec(tr, opening, _grid(clips, grid))
        model = fit_readout(tr, spec)
        preds = [model.predict(c.features) for c in te]
        r = rig_score(te, preds, opening)[s]
        report["speakers"][s] = {"r": round(r, 4), "context": spec.context, "alpha": spec.alpha}
        for c, p in zip(te, preds, strict=True):
            report["pred"][c.clip] = p.astype(np.float32)
        if folds_dir is not None:
            folds_dir.mkdir(parents=True, exist_ok=True)
            export_onnx(model, folds_dir / f"{s}.onnx", {"held_out_speaker": s})
        log(
            f"  [{n + 1}/{len(speakers)}] held out {s}: r {r:.3f} "
            f"(context {spec.context}, alpha {spec.alpha}) "
            f"{time.perf_counter() - t0:.0f} s"
        )
    rs = [v["r"] for v in report["speakers"].values()]
    report["mean_r"] = round(float(np.mean(rs)), 4)
    return report


def _grid(clips: Sequence[ClipData], grid: Sequence[ReadoutSpec] = GRID) -> list[ReadoutSpec]:
    """``grid`` at the lookahead the clips' features were computed at."""
    return [ReadoutSpec(g.context, g.alpha, g.components, clips[0].lookahead) for g in grid]


def export_onnx(model: Readout, path: Path, extra: dict | None = None) -> Path:
    """The read-out as ONNX: input ``features`` (n, context + 1, 768) (index 0 = the current frame,
    k = k frames back; repeat the stream's first feature before its start), outputs ``mouth``
    (n, 9) clipped to [0, 1] and ``presence`` (n, 1) (the speech gate is applied by the runtime,
    which holds it open over frames: :class:`~vlogger.engines.motion.mouth.MouthReadout`).
    Metadata ``vlogger_mouth_readout`` (JSON): spec, feature config, channel names, gate settings,
    feature mean and what ``extra`` adds."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from vlogger.engines.motion.mouth import METADATA_KEY

    if model.presence_weight is None or model.presence_bias is None:
        raise ValueError("export a read-out with its speech gate (fit it with non-speech clips)")
    k, d, m = model.weight.shape
    w = np.concatenate([model.weight, model.presence_weight], axis=2).reshape(k * d, m + 1)
    b = np.concatenate([model.bias, model.presence_bias])
    inits = [
        numpy_helper.from_array(model.feature_mean.astype(np.float32), "mean"),
        numpy_helper.from_array(np.array([-1, k * d], np.int64), "flat"),
        numpy_helper.from_array(w.astype(np.float32), "weight"),
        numpy_helper.from_array(b.astype(np.float32), "bias"),
        numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
        numpy_helper.from_array(np.array(1.0, np.float32), "hi"),
        numpy_helper.from_array(np.array([m, 1], np.int64), "sizes"),
    ]
    nodes = [
        helper.make_node("Sub", ["features", "mean"], ["centred"]),
        helper.make_node("Reshape", ["centred", "flat"], ["stacked"]),
        helper.make_node("MatMul", ["stacked", "weight"], ["linear"]),
        helper.make_node("Add", ["linear", "bias"], ["raw"]),
        helper.make_node("Split", ["raw", "sizes"], ["mouth_raw", "presence"], axis=1),
        helper.make_node("Clip", ["mouth_raw", "lo", "hi"], ["mouth"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mouth_readout",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", k, d])],
        [
            helper.make_tensor_value_info("mouth", TensorProto.FLOAT, ["n", m]),
            helper.make_tensor_value_info("presence", TensorProto.FLOAT, ["n", 1]),
        ],
        inits,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx_model.ir_version = 8
    meta = {
        "spec": asdict(model.spec),
        "feature_config": {
            k2: v for k2, v in asdict(feature_config(model.spec.lookahead)).items() if k2 != "threads"
        },
        "channels": list(EXPRESSION_NAMES[:m]),
        "gate": {"lo": model.gate_lo, "hi": model.gate_hi, "hold_frames": GATE_HOLD},
        "feature_mean": [round(float(x), 6) for x in model.feature_mean],
        **(extra or {}),
    }
    helper.set_model_props(onnx_model, {METADATA_KEY: json.dumps(meta)})
    onnx.checker.check_model(onnx_model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    onnx.save(onnx_model, str(tmp))
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train the mouth read-out on the real clips (speaker-disjoint).")
    ap.add_argument("--corpus", type=Path, default=Path("training/data/real"))
    ap.add_argument("--data", type=Path, default=None, help="the shared data folder (default ../shared/data)")
    ap.add_argument("--out", type=Path, default=Path("training/runs/mouth"))
    ap.add_argument("--lookaheads", type=int, nargs="+", default=[2], help="feature lookaheads to evaluate")
    ap.add_argument("--ship", type=int, default=2, help="the lookahead of the exported model")
    ap.add_argument("--no-loso", action="store_true", help="only fit and export the shipped model")
    ap.add_argument(
        "--small-grid", action="store_true", help="inner folds choose from SMALL_GRID (the lookahead study)"
    )
    args = ap.parse_args(argv)
    if not (args.corpus / "manifest.json").exists():
        from training.motion.real_clips import _default_data, build_clips, clip_paths

        data = args.data if args.data is not None else _default_data()
        if not clip_paths(data):
            print(f"no real clips under {data}: nothing to train on (set --data or VLOGGER_SHARED_DATA)")
            return 1
        print(f"building the real-clip corpus from {data} into {args.corpus} ...", flush=True)
        build_clips(data, args.corpus)
    build_features(args.corpus, sorted(set(args.lookaheads) | {args.ship}))
    args.out.mkdir(parents=True, exist_ok=True)
    opening = opening_model()
    if not args.no_loso:
        for lookahead in args.lookaheads:
            done = args.out / f"loso_L{lookahead}.json"
            if done.exists():
                print(f"loso L={lookahead}: cached ({json.loads(done.read_text())['mean_r']})")
                continue
            print(f"loso L={lookahead} ({lookahead * 40} ms lookahead) ...", flush=True)
            clips = load_clips(args.corpus, lookahead) + nonspeech_clips(lookahead)
            rep = loso(
                clips,
                opening,
                args.out / f"folds_L{lookahead}",
                log=lambda s: print(s, flush=True),
                grid=SMALL_GRID if args.small_grid else GRID,
            )
            rep["grid"] = "small" if args.small_grid else "full"
            np.savez_compressed(args.out / f"loso_L{lookahead}.npz", **rep.pop("pred"))
            rep["lookahead_frames"] = lookahead
            done.write_text(json.dumps(rep, indent=1))
            print(f"loso L={lookahead}: mean r {rep['mean_r']}", flush=True)
    final = args.out / "mouth_readout.onnx"
    clips = load_clips(args.corpus, args.ship) + nonspeech_clips(args.ship)
    spec, table = select_spec(clips, opening, _grid(clips), k=5)
    n_sp = len({c.speaker for c in clips if c.speech})
    print(f"shipped settings (grouped 5-fold over all {n_sp} speakers): {spec}")
    model = fit_readout(clips, spec)
    info = {
        "trained_on": sorted({c.clip for c in clips if c.speech}),
        "speakers": sorted({c.speaker for c in clips if c.speech}),
        "frames": int(sum(len(c.features) for c in clips if c.speech)),
        "nonspeech": sorted(c.clip for c in clips if not c.speech),
        "selection": table,
    }
    export_onnx(model, final, info)
    print(f"wrote {final}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
