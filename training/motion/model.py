"""The motion network (torch): a causal diffusion transformer decoder over video frames.

Tokens are frames. A token is ``in_proj(motion) + audio_mlp(audio feature) + step_mlp(sinusoid(t))``
(the audio embedding is replaced by a learned null vector when audio is dropped, for
classifier-free guidance). Four pre-LN blocks of self-attention (4 heads, width 256) and a GELU
MLP; separate linear output heads for face (15), head (9) and body (150). The network predicts x0
in the normalised motion space.

Positions: a learned bias per head and per frame distance (0 .. window-1, ALiBi-initialised) is
added to the attention logits, and a frame attends only to the ``window - 1`` frames before it
and itself. So attention never sees absolute positions: the keys and values of a frame, once
computed, stay valid while it is in the window, a streaming engine can cache them (a KV cache of
fixed size), and memory is constant on hour-long audio. (Through the layers a frame's output still
depends on up to ``layers * (window - 1)`` frames back, as in any sliding-window transformer.)

Train it the way it runs (:meth:`MotionTransformer.forward`): a CLEAN stream (the ground-truth
frames, step 0) and a NOISY stream (each frame noised at its own step). Noisy frame i attends to
the clean frames i-window+1 .. i-1 and to itself, exactly what the streaming step sees; every
frame of a sequence is a training example at once. :meth:`MotionTransformer.step` is the
streaming form (one new frame against cached keys/values) that is exported to ONNX.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import cast

import numpy as np
import torch
from torch import nn

from vlogger.engines.diffusion import cosine_alpha_bar

__all__ = ["ModelConfig", "MotionTransformer", "step_embedding"]

N_FACE, N_HEAD, N_BODY = 15, 9, 150
MOTION_DIM = N_FACE + N_HEAD + N_BODY


@dataclass
class ModelConfig:
    """Shape of the motion network."""

    audio_dim: int = 800
    """Length of one frame's audio feature (see ``engines/motion/features.py``)."""
    motion_dim: int = MOTION_DIM
    """15 expression + 9 head + 150 body values per frame."""
    width: int = 256
    """Transformer width."""
    layers: int = 4
    """Transformer blocks."""
    heads: int = 4
    """Attention heads."""
    mlp_ratio: int = 4
    """MLP hidden size over width."""
    window: int = 50
    """Frames a token sees (itself + window-1 before it): the fixed context (2 s at 25 fps)."""
    step_dim: int = 128
    """Sinusoidal diffusion-step embedding size."""
    diffusion_steps: int = 1000
    """Training steps of the cosine schedule."""
    dropout: float = 0.0
    """Dropout inside the blocks."""

    def to_dict(self) -> dict:
        return asdict(self)


def step_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (float) diffusion steps, shape t.shape + (dim,)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[..., None] * freqs
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.width
        self.heads = cfg.heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(
            nn.Linear(d, cfg.mlp_ratio * d),
            nn.GELU(),
            nn.Linear(cfg.mlp_ratio * d, d),
            nn.Dropout(cfg.dropout),
        )

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pre-LN q, k, v of tokens x (B, L, D), each (B, H, L, dh)."""
        b, n, d = x.shape
        qkv = self.qkv(self.ln1(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def finish(
        self, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor
    ) -> torch.Tensor:
        """x + attention(q, k, v, bias) then the MLP; bias (B or 1, H, Lq, Lk) with -inf masked."""
        dh = q.shape[-1]
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh) + bias, dim=-1)
        o = (att @ v).transpose(1, 2).reshape(x.shape)
        x = x + self.proj(o)
        return x + self.mlp(self.ln2(x))


class MotionTransformer(nn.Module):
    alpha_bar: torch.Tensor

    def __init__(self, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg if cfg is not None else ModelConfig()
        d = cfg.width
        self.in_proj = nn.Linear(cfg.motion_dim, d)
        self.audio_mlp = nn.Sequential(nn.Linear(cfg.audio_dim, d), nn.GELU(), nn.Linear(d, d))
        self.null_audio = nn.Parameter(torch.zeros(d))
        self.step_mlp = nn.Sequential(nn.Linear(cfg.step_dim, d), nn.GELU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.layers)])
        self.ln_out = nn.LayerNorm(d)
        self.head_face = nn.Linear(d, N_FACE)
        self.head_head = nn.Linear(d, N_HEAD)
        self.head_body = nn.Linear(d, N_BODY)
        # Relative position bias per head and distance, ALiBi-initialised.
        slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / cfg.heads) for h in range(cfg.heads)])
        dist = torch.arange(cfg.window, dtype=torch.float32)
        self.rel_bias = nn.Parameter(-slopes[:, None] * dist[None, :])
        # the cosine schedule as a float32 table, the one the runtime's scheduler uses
        ab = torch.from_numpy(cosine_alpha_bar(cfg.diffusion_steps, dtype=np.float32))
        self.register_buffer("alpha_bar", ab, persistent=False)

    # ---- shared pieces -----------------------------------------------------------------
    def embed(
        self, x: torch.Tensor, audio: torch.Tensor, t: torch.Tensor, keep: torch.Tensor
    ) -> torch.Tensor:
        """Tokens: x (B, L, M), audio (B, L, A), t (B, L) steps, keep (B,) 1 = audio, 0 = dropped."""
        a = self.audio_mlp(audio)
        k = keep.to(a.dtype)[:, None, None]
        a = k * a + (1.0 - k) * self.null_audio
        return self.in_proj(x) + a + self.step_mlp(step_embedding(t, self.cfg.step_dim))

    def out(self, h: torch.Tensor) -> torch.Tensor:
        h = self.ln_out(h)
        return torch.cat([self.head_face(h), self.head_head(h), self.head_body(h)], dim=-1)

    # ---- training form: clean past, noisy current ---------------------------------------
    def forward(
        self,
        clean: torch.Tensor,
        noisy: torch.Tensor,
        t: torch.Tensor,
        audio: torch.Tensor,
        keep: torch.Tensor,
    ) -> torch.Tensor:
        """x0 predictions for every noisy frame, (B, L, M).

        clean, noisy: (B, L, M) normalised motion; t: (B, L) step of each noisy frame; audio
        (B, L, A); keep (B,). Noisy frame i sees clean frames i-window+1..i-1 and itself.
        """
        n = clean.shape[1]
        w = self.cfg.window
        dev = clean.device
        hc = self.embed(clean, audio, torch.zeros_like(t), keep)
        hn = self.embed(noisy, audio, t, keep)
        i = torch.arange(n, device=dev)
        dist = i[:, None] - i[None, :]  # (Lq, Lk)
        band = (dist >= 0) & (dist < w)
        rb = self.rel_bias[:, dist.clamp(0, w - 1)]  # (H, L, L)
        neg = torch.tensor(float("-inf"), device=dev)
        bias_cc = torch.where(band, rb, neg)  # clean queries on clean keys (incl. itself)
        bias_nc = torch.where(band & (dist > 0), rb, neg)  # noisy on clean past (excl. itself)
        bias_nn = torch.where(dist == 0, rb[:, :1, :1].expand(-1, n, n), neg)  # noisy on itself
        bias_n = torch.cat([bias_nc, bias_nn], dim=-1)[None]
        bias_c = bias_cc[None]
        last = len(self.blocks) - 1
        for li, blk in enumerate(cast(list[Block], list(self.blocks))):
            qc, kc, vc = blk.split(hc)
            qn, kn, vn = blk.split(hn)
            hn = blk.finish(hn, qn, torch.cat([kc, kn], 2), torch.cat([vc, vn], 2), bias_n)
            if li < last:  # the clean stream's last output is never used
                hc = blk.finish(hc, qc, kc, vc, bias_c)
        return self.out(hn)

    # ---- streaming form (exported) -------------------------------------------------------
    def step(
        self,
        x: torch.Tensor,
        audio: torch.Tensor,
        t: torch.Tensor,
        keep: torch.Tensor,
        past_k: torch.Tensor,
        past_v: torch.Tensor,
        past_valid: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """New frames against the cache.

        x (B, Q, M): Q consecutive new frames, each noisy or (with t = 0) clean; audio (B, Q, A);
        t (B, Q); keep (B,); past_k, past_v (layers, B, H, window-1, dh): the cached frames in
        time order, newest last (they come right before the new frames); past_valid
        (B, window-1): 1 where a cached frame exists. New frame j attends to the cached frames
        within its window and to new frames <= j (so a clean previous frame and the noisy current
        frame can share one call). Returns the x0 predictions (B, Q, M) and the new frames'
        keys and values (layers, B, H, Q, dh) for the cache.
        """
        w = self.cfg.window
        q = x.shape[1]
        h = self.embed(x, audio, t, keep)
        # Positions: cached frames 0..w-2, new frames w-1 .. w-2+q.
        qpos = torch.arange(q, device=x.device) + (w - 1)
        kpos = torch.cat([torch.arange(w - 1, device=x.device), qpos])
        dist = qpos[:, None] - kpos[None, :]  # (Q, W-1+Q)
        ok = (dist >= 0) & (dist < w)
        rb = self.rel_bias[:, dist.clamp(0, w - 1)]  # (H, Q, K)
        valid = torch.cat([past_valid, torch.ones_like(past_valid[:, :1]).expand(-1, q)], dim=1)  # (B, K)
        allowed = ok[None] & (valid[:, None, :] > 0.5)  # (B, Q, K)
        bias = rb[None] + torch.where(allowed, 0.0, -1e9)[:, None]  # (B, H, Q, K)
        ks, vs = [], []
        for li, blk in enumerate(cast(list[Block], list(self.blocks))):
            qq, k, v = blk.split(h)
            ks.append(k)
            vs.append(v)
            h = blk.finish(h, qq, torch.cat([past_k[li], k], 2), torch.cat([past_v[li], v], 2), bias)
        return self.out(h), torch.stack(ks), torch.stack(vs)
