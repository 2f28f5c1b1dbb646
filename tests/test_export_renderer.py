"""The renderer network in torch: structure, training signal, ONNX export and parity (needs torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.render.common import Windows, sample_window  # noqa: E402
from training.render.dataset import build_generated, load_shards  # noqa: E402
from training.render.model import CONFIGS, TemporalUNet  # noqa: E402
from training.render.train import diffusion_loss  # noqa: E402
from vlogger.engines.backends import make_runner  # noqa: E402
from vlogger.engines.backends.torch_runner import TorchRunner  # noqa: E402
from vlogger.engines.render.diffusion import WindowSampler, frame_scheduler  # noqa: E402
from vlogger.export.renderer import RENDER_DENOISER, export_denoiser, parity  # noqa: E402

torch.set_num_threads(1)


def _model(seed: int = 0, perturb: bool = True) -> TemporalUNet:
    torch.manual_seed(seed)
    m = TemporalUNet(CONFIGS["tiny"])
    m.copy_base_to_control()
    if perturb:  # wake the zero-initialised convs so every path matters
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return m.eval()


def _inputs(n: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    s, c = CONFIGS["tiny"].size, CONFIGS["tiny"].control_channels
    return (
        torch.randn(1, n, 3, s, s, generator=g),
        torch.tensor([300.0]),
        torch.randn(1, 3, s, s, generator=g),
        torch.randn(1, n, c, s, s, generator=g),
    )


def test_fresh_control_branch_is_zero_and_temporal_convs_mix_frames() -> None:
    m = _model(perturb=False)
    x, t, ref, c = _inputs()
    with torch.no_grad():
        a = m(x, t, ref, c)
        b = m(x, t, ref, torch.randn_like(c))
    assert torch.equal(a, b)  # zero convs: the controls do not matter yet (ControlNet init)
    x2 = x.clone()
    x2[:, 3] += 1.0
    with torch.no_grad():
        same = m(x2, t, ref, c)
    assert torch.equal(same[:, 5], a[:, 5])  # zero-initialised temporal convs: frames independent
    m2 = _model()
    with torch.no_grad():
        a2, b2 = m2(x, t, ref, c), m2(x2, t, ref, c)
    d = (a2 - b2).abs().amax(dim=(0, 2, 3, 4))
    assert d[2] > 0 and d[4] > 0  # neighbours see frame 3 (kernel 3 per down block) ...
    assert d[7] > 0 or d[0] > 0  # ... and, through depth, frames further away


def test_onnx_parity_denoiser_and_a_whole_few_step_window(tmp_path: Path) -> None:
    m = _model()
    meta = {"model": m.cfg.to_dict(), "sampler": {"steps": 2, "start": 0.8}, "window": 8}
    path = export_denoiser(m, tmp_path / "r.onnx", meta)
    assert parity(m, path, batch=1, frames=8) < 1e-4
    assert parity(m, path, batch=2, frames=5) < 1e-4  # dynamic batch and frames
    _, _, ref, c = _inputs()
    controls = c[0, :, :13].numpy()
    known = np.tanh(np.random.default_rng(1).standard_normal((4, 3, 32, 32))).astype(np.float32)
    outs = []
    for runner in (
        TorchRunner(m, RENDER_DENOISER.input_names, RENDER_DENOISER.output_names),
        make_runner(path),
    ):
        ws = WindowSampler(runner, frame_scheduler(), steps=2, start=800)
        outs.append(ws.sample(controls, ref[0].numpy(), known, np.random.default_rng(7)))
    assert np.abs(outs[0] - outs[1]).max() < 1e-3
    assert np.array_equal(outs[1][:4], known)


def test_tiny_model_loss_falls_over_a_short_run(tmp_path: Path) -> None:
    shard = build_generated(tmp_path, frames=48, size=32, seed=3)
    w = Windows(load_shards([shard]), 8, seed=0)
    torch.manual_seed(0)
    m = TemporalUNet(CONFIGS["tiny"])
    m.copy_base_to_control()
    from training.render.common import torch_alpha_bar

    ab = torch_alpha_bar()
    fixed = [w.batch(4, known=k) for k in (0, 4, 7)]

    def eval_loss() -> float:
        with torch.no_grad():
            return float(
                np.mean(
                    [
                        diffusion_loss(m, b, ab, 800, torch.Generator().manual_seed(i)).item()
                        for i, b in enumerate(fixed)
                        for _ in range(2)
                    ]
                )
            )

    before = eval_loss()
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(60):
        loss = diffusion_loss(m, w.batch(4), ab, 800, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_loss()
    assert after < 0.6 * before, (before, after)
    # and the sampler, through the runtime code, gives finite frames in range
    x, c, r = w.get(0, 0)
    out = sample_window(m.eval(), c, r, None, 2, 800)
    assert out.shape == x.shape and np.isfinite(out).all() and np.abs(out).max() <= 1.0


def test_distillation_rounds_resume_and_record_their_recipe(tmp_path: Path) -> None:
    from training.render.common import load_checkpoint, save_checkpoint
    from training.render.distill import distill

    shard = build_generated(tmp_path / "data", frames=24, size=32, seed=5)
    teacher = tmp_path / "teacher.pt"
    extra = {"start": 0.8, "window": 8, "data": [str(shard)]}
    save_checkpoint(teacher, _model(), None, 0, [], extra)
    out = tmp_path / "d"
    paths = distill(teacher, out, (2, 1), steps=3, batch=1, data_weight=0.5)
    assert sorted(paths) == [1, 2] and (out / "loss_student1.png").is_file()
    _, ck = load_checkpoint(paths[1])
    assert (ck["distilled_steps"], ck["step"], ck["data_weight"]) == (1, 3, 0.5)
    stamp = {k: p.stat().st_mtime_ns for k, p in paths.items()}
    (out / "student1.pt").unlink()  # as if stopped during the last round
    again = distill(teacher, out, (2, 1), steps=3, batch=1, data_weight=0.5, resume=True)
    assert again[2].stat().st_mtime_ns == stamp[2]  # round 2 loaded, not retrained
    assert again[1].is_file()
    # another recipe does not reuse the saved round
    distill(teacher, out, (2,), steps=3, batch=1, data_weight=0.0, resume=True)
    assert paths[2].stat().st_mtime_ns != stamp[2]
