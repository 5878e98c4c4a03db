"""Rotary position embedding: inverse frequencies (with linear or Llama-3 scaling), the
cos/sin tables for given positions, and the rotation of q and k by halves.

Letters: B batch, T tokens, D head dim, R rotating dims (D, or fewer under partial rotary).
"""

from __future__ import annotations

import math

import torch

from attncli.model.config import RopeConfig

Tensor = torch.Tensor


def rope_inv_freq(rope: RopeConfig, head_dim: int) -> Tensor:
    """Inverse frequencies (R/2,) in float32 for R = ``head_dim`` rotating dims (the rotary
    dims under partial rotary), with linear or Llama-3 scaling applied.
    Always computed on the CPU: under a meta-device build, this arithmetic would pull in
    torch's Python meta kernels (sympy and ~800 modules, ~75 MB, ~1 s) for nothing."""
    steps = torch.arange(0, head_dim, 2, dtype=torch.int64, device="cpu").float()
    inv = 1.0 / (rope.theta ** (steps / head_dim))
    if rope.kind == "linear":
        return inv / rope.factor
    if rope.kind == "llama3":
        # Long wavelengths are slowed by `factor`, short ones kept, the band between blended.
        old = rope.original_max_position_embeddings
        low_wavelen = old / rope.low_freq_factor
        high_wavelen = old / rope.high_freq_factor
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > low_wavelen, inv / rope.factor, inv)
        smooth = (old / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor)
        blended = (1 - smooth) * scaled / rope.factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        return torch.where(medium, blended, scaled)
    return inv


def rope_cos_sin(inv_freq: Tensor, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """positions (B, T) -> cos, signed sin (B, T, 1, R), computed in float32 then cast.
    The sin's first half is negated so that apply_rope needs a roll, not a neg and a cat."""
    freqs = positions[..., None].float() * inv_freq  # (B, T, R/2)
    sin = freqs.sin()
    cos = freqs.cos()
    return torch.cat((cos, cos), dim=-1)[:, :, None].to(dtype), torch.cat((-sin, sin), dim=-1)[:, :, None].to(dtype)


def apply_rope(x: Tensor, cos: Tensor, signed_sin: Tensor) -> Tensor:
    """x (B, T, heads, D). Rotation by halves of the first R dims (x1, x2) -> (x1 cos - x2 sin,
    x2 cos + x1 sin), the Hugging Face layout of q/k weights: x*cos + roll(x, R/2) * [-sin, sin];
    dims past R (partial rotary) pass through. In float32 one addcmul; in reduced precision
    the two products and the sum each round, as the reference's do, unless the tables are
    float32 (OLMo 2's reference rotates in float32 and rounds once)."""
    r = cos.shape[-1]
    if r < x.shape[-1]:
        return torch.cat((apply_rope(x[..., :r], cos, signed_sin), x[..., r:]), dim=-1)
    if cos.dtype != x.dtype:  # float32 tables on reduced-precision q/k: rotate in float32, round once
        xf = x.float()
        return (xf * cos + xf.roll(r // 2, dims=-1) * signed_sin).to(x.dtype)
    rolled = x.roll(r // 2, dims=-1)
    if x.dtype == torch.float32:
        return torch.addcmul(x * cos, rolled, signed_sin)
    return x * cos + rolled * signed_sin
