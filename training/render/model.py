"""The temporal diffusion renderer (paper §3.2, supp. C.2) in torch: UNet + ControlNet-style branch.

* Base denoiser: a UNet over each frame of a window (frames folded into the batch) that sees the
  noisy frame and the reference photo (concatenated channels), with a sinusoidal step embedding.
* Temporal mixing: a 1D convolution over frames (kernel 3, residual, zero-initialised) right after
  the first activation of each down block, so the N frames of a window see each other.
* Control branch: a trainable copy of the base encoder that also takes the controls (dense face
  map, semantic masks, body map, partial view, known-frame mask and known frames) through a small
  hint encoder; its outputs join the base's skips and middle through zero-initialised 1x1 convs.
  ``freeze_base`` trains only that branch (a pretrained base later); here both train together.
* Output: the noise (epsilon) of every frame; the cosine schedule lives in the scheduler
  (`vlogger.engines.diffusion`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from vlogger.engines.avatar.controls import CONTROL_CHANNELS

__all__ = ["CONFIGS", "RenderModelConfig", "TemporalUNet", "count_flops", "model_config"]

#: Controls + known-frame mask (1) + known frames (3).
DEFAULT_CONTROL = len(CONTROL_CHANNELS) + 4


@dataclass(frozen=True)
class RenderModelConfig:
    """Sizes of the renderer network."""

    size: int = 32
    """Image side in pixels (square crops)."""
    channels: int = 16
    """Width of the first level."""
    mults: tuple[int, ...] = (1, 2, 2)
    """Width multiplier per level (len = number of levels; each level but the last halves the size)."""
    control_channels: int = DEFAULT_CONTROL
    """Control input channels."""
    groups: int = 8
    """GroupNorm groups."""
    temporal: bool = True
    """1D temporal convs after the first activation of each down block."""

    def to_dict(self) -> dict:
        return {**asdict(self), "mults": list(self.mults)}


#: Named sizes: ``tiny`` for tests and the shipped test model, ``base`` the paper's 128 px.
CONFIGS: dict[str, RenderModelConfig] = {
    "tiny": RenderModelConfig(size=32, channels=8, mults=(1, 2, 2), groups=4),
    "small": RenderModelConfig(size=64, channels=32, mults=(1, 2, 2, 4)),
    "base": RenderModelConfig(size=128, channels=64, mults=(1, 2, 3, 4)),
    "large": RenderModelConfig(size=256, channels=96, mults=(1, 2, 3, 4, 4)),
}


def model_config(name_or_dict: str | dict) -> RenderModelConfig:
    if isinstance(name_or_dict, str):
        if name_or_dict not in CONFIGS:
            raise ValueError(f"unknown model size {name_or_dict!r} (choose from {', '.join(CONFIGS)})")
        return CONFIGS[name_or_dict]
    d = dict(name_or_dict)
    d["mults"] = tuple(d["mults"])
    return RenderModelConfig(**d)


def step_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(a), torch.cos(a)], dim=1)


class TemporalConv(nn.Module):
    """Residual 1D conv (kernel 3) over the frames axis; zero-initialised (starts as identity)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(ch, ch, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)  # type: ignore[arg-type]

    def forward(self, h: torch.Tensor, frames: int) -> torch.Tensor:
        bn, c, hh, ww = h.shape
        x = h.reshape(-1, frames, c, hh, ww).permute(0, 3, 4, 2, 1).reshape(-1, c, frames)
        x = self.conv(x)
        x = x.reshape(-1, hh, ww, c, frames).permute(0, 4, 3, 1, 2).reshape(bn, c, hh, ww)
        return h + x


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int, groups: int, temporal: bool) -> None:
        super().__init__()
        self.n1 = nn.GroupNorm(min(groups, cin), cin)
        self.temporal = TemporalConv(cin) if temporal else None
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.e = nn.Linear(emb, cout)
        self.n2 = nn.GroupNorm(min(groups, cout), cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor, frames: int) -> torch.Tensor:
        h = F.silu(self.n1(x))
        if self.temporal is not None:  # after the first activation of the block
            h = self.temporal(h, frames)
        h = self.c1(h) + self.e(emb)[:, :, None, None]
        h = self.c2(F.silu(self.n2(h)))
        return self.skip(x) + h


class Encoder(nn.Module):
    """conv_in + down blocks (+ downsampling) + middle: the part ControlNet copies."""

    def __init__(self, cfg: RenderModelConfig, cin: int, emb: int) -> None:
        super().__init__()
        ch = cfg.channels
        self.conv_in = nn.Conv2d(cin, ch, 3, padding=1)
        self.blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        self.widths = []
        prev = ch
        for i, m in enumerate(cfg.mults):
            w = ch * m
            self.blocks.append(ResBlock(prev, w, emb, cfg.groups, cfg.temporal))
            self.widths.append(w)
            prev = w
            last = i == len(cfg.mults) - 1
            self.downs.append(nn.Identity() if last else nn.Conv2d(w, w, 3, stride=2, padding=1))
        self.mid = ResBlock(prev, prev, emb, cfg.groups, False)

    def forward(
        self, x: torch.Tensor, emb: torch.Tensor, frames: int, hint: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        h = self.conv_in(x)
        if hint is not None:
            h = h + hint
        skips = []
        for block, down in zip(self.blocks, self.downs, strict=True):
            h = block(h, emb, frames)
            skips.append(h)
            h = down(h)
        return skips, self.mid(h, emb, frames)


def _zero(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)  # type: ignore[arg-type]
    return conv


class TemporalUNet(nn.Module):
    """``forward(x, t, ref, control) -> eps`` over windows (shapes: see export/renderer.py)."""

    def __init__(self, cfg: RenderModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        emb = ch * 4
        self.emb_dim = ch
        self.t_mlp = nn.Sequential(nn.Linear(ch, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.base = Encoder(cfg, 6, emb)
        # ControlNet branch: a copy of the encoder plus a hint encoder for the controls
        self.control = Encoder(cfg, 6, emb)
        self.hint = nn.Sequential(
            nn.Conv2d(cfg.control_channels, ch, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(ch, ch, 3, padding=1),
            nn.SiLU(),
            _zero(nn.Conv2d(ch, ch, 3, padding=1)),
        )
        self.zero_skips = nn.ModuleList(_zero(nn.Conv2d(w, w, 1)) for w in self.base.widths)
        self.zero_mid = _zero(nn.Conv2d(self.base.widths[-1], self.base.widths[-1], 1))
        self.ups = nn.ModuleList()
        self.dec = nn.ModuleList()
        prev = self.base.widths[-1]
        for i in reversed(range(len(cfg.mults))):
            w = self.base.widths[i]
            self.dec.append(ResBlock(prev + w, w, emb, cfg.groups, False))
            prev = w
            self.ups.append(nn.Identity() if i == 0 else nn.Conv2d(w, self.base.widths[i - 1], 3, padding=1))
            if i > 0:
                prev = self.base.widths[i - 1]
        self.out_norm = nn.GroupNorm(min(cfg.groups, ch), ch)
        self.out = nn.Conv2d(ch, 3, 3, padding=1)

    def copy_base_to_control(self) -> None:
        """Initialise the control branch as a copy of the base encoder (ControlNet)."""
        self.control.load_state_dict(self.base.state_dict())

    def base_parameters(self) -> list[nn.Parameter]:
        """Parameters of the base denoiser (frozen when training only the control branch)."""
        ids = {
            id(p) for m in (self.control, self.hint, self.zero_skips, self.zero_mid) for p in m.parameters()
        }
        return [p for p in self.parameters() if id(p) not in ids]

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, ref: torch.Tensor, control: torch.Tensor
    ) -> torch.Tensor:
        b, n, c, s, _ = x.shape
        frames = x.shape[1]  # traced as a shape op, so the ONNX frames axis stays dynamic
        xf = x.reshape(-1, c, s, s)
        reff = ref[:, None].expand(b, n, 3, s, s).reshape(-1, 3, s, s)
        inp = torch.cat([xf, reff], dim=1)
        emb = self.t_mlp(step_embedding(t, self.emb_dim))
        emb = emb[:, None].expand(b, n, emb.shape[-1]).reshape(-1, emb.shape[-1])
        hint = self.hint(control.reshape(-1, control.shape[2], s, s))
        cskips, cmid = self.control(inp, emb, frames, hint)
        skips, h = self.base(inp, emb, frames)
        h = h + self.zero_mid(cmid)
        skips = [sk + z(cs) for sk, z, cs in zip(skips, self.zero_skips, cskips, strict=True)]
        for block, up, sk in zip(self.dec, self.ups, reversed(skips), strict=True):
            h = block(torch.cat([h, sk], dim=1), emb, frames)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.out(F.silu(self.out_norm(h)))
        return out.reshape(b, n, 3, s, s)


def count_flops(model: TemporalUNet, frames: int = 8) -> int:
    """FLOPs per frame: 2 x multiply-accumulates of conv/linear layers over one window / ``frames``."""
    total = [0]

    def hook(mod: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        if isinstance(mod, nn.Conv2d | nn.Conv1d):
            k = mod.weight[0].numel()  # in/groups * kernel
            total[0] += 2 * k * out.numel()
        elif isinstance(mod, nn.Linear):
            total[0] += 2 * mod.in_features * out.numel()

    hs = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Conv1d | nn.Linear)
    ]
    s, cc = model.cfg.size, model.cfg.control_channels
    with torch.no_grad():
        model(
            torch.zeros(1, frames, 3, s, s),
            torch.ones(1),
            torch.zeros(1, 3, s, s),
            torch.zeros(1, frames, cc, s, s),
        )
    for h in hs:
        h.remove()
    return total[0] // frames
