"""The small modules every decoder is made of: norms, the embedding table, activations."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attncli.model.config import ModelConfig

Tensor = torch.Tensor


class RMSNorm(nn.Module):
    """x / rms(x), scaled by the weight. ``style`` says how the reference scales and rounds
    (the same math in float32): "llama" w * x.to(dtype); "float32" (w * x) in float32, then
    cast; "gemma" (1 + w) * x in float32, then cast, the weight storing the offset from 1."""

    def __init__(self, dim: int, eps: float, style: str = "llama"):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(dim) if style == "gemma" else torch.ones(dim))
        self.eps = eps
        self.style = style
        self.tp = None  # tensor parallel, a norm over a sharded dim (OLMo 2's q/k): the mean spans the ranks

    def _mean_square(self, x32: Tensor) -> Tensor:
        if self.tp is None:
            return x32.pow(2).mean(-1, keepdim=True)
        return self.tp.all_reduce(x32.pow(2).sum(-1, keepdim=True)) / (x32.shape[-1] * self.tp.world)

    def forward(self, x: Tensor) -> Tensor:
        if self.style == "gemma":
            x32 = x.float()
            x32 = x32 * torch.rsqrt(self._mean_square(x32) + self.eps)
            return (x32 * (1.0 + self.weight.float())).to(x.dtype)
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32 and self.tp is None:
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)  # one fused kernel, same math
        # Normalise in float32 and scale where the reference does, so that reduced-precision
        # runs round at the same points.
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(self._mean_square(x32) + self.eps)
        if self.style == "float32":
            return (self.weight * x32).to(dtype)
        return self.weight * x32.to(dtype)


class Embedding(nn.Module):
    """A lookup table (V, C). Not nn.Embedding: its constructor imports torch._dynamo
    (~75 MB and ~1 s of start-up, measured), which a CLI that loads a model never needs."""

    def __init__(self, num: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num, dim))
        self.tp = None  # tensor parallel: this rank's rows are ids start .. start + rows - 1
        self.start = 0

    def forward(self, ids: Tensor) -> Tensor:
        if self.tp is None:
            return F.embedding(ids, self.weight)
        local = ids - self.start
        mine = (local >= 0) & (local < self.weight.shape[0])  # ids of this rank's rows
        rows = F.embedding(local.clamp(0, self.weight.shape[0] - 1), self.weight) * mine[..., None]
        return self.tp.all_reduce(rows)  # every id found on exactly one rank: the sum is exact


def make_norm(cfg: ModelConfig, dim: int) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return RMSNorm(dim, cfg.norm_eps, cfg.norm_style)
    return nn.LayerNorm(dim, eps=cfg.norm_eps, bias=cfg.norm_bias)


def activation(name: str):
    if name == "gelu_tanh":
        return lambda x: F.gelu(x, approximate="tanh")
    return {"gelu": F.gelu, "silu": F.silu, "relu": F.relu}[name]
