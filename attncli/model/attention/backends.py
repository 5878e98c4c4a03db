"""Attention backends: the same attention computed by an explicit softmax (eager, which can
keep its scores and weights for inspection) or by torch's fused SDPA kernels.

Letters: B batch, H query heads, Hkv key/value heads, G = H // Hkv, T queries,
S keys, D head dim.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attncli.errors import BadInputError
from attncli.model.attention.masks import LayerMask, build_mask, explicit, spec_batch, spec_fn

Tensor = torch.Tensor

BACKENDS = ("eager", "sdpa", "flex")


@dataclass
class AttnProbe:
    """Per-layer tensors kept for inspection (eager backend only); a model's ``probe`` keep
    function may keep less (one head, one query row, None)."""

    scores: Tensor | None  # (B, H, T, S) float32 (soft-capped where the model caps), masked entries -inf
    weights: Tensor | None  # (B, H, T, S) run dtype, masked entries exactly 0


def _expand_kv(x: Tensor, groups: int) -> Tensor:
    # (B, Hkv, S, D) -> (B, H, S, D) with query head h reading kv head h // G
    if groups == 1:
        return x
    b, hkv, s, d = x.shape
    return x[:, :, None].expand(b, hkv, groups, s, d).reshape(b, hkv * groups, s, d)


def eager_attention(
    q: Tensor, k: Tensor, v: Tensor, lm: LayerMask, *, scale: float, probe: bool = False,
    softcap: float | None = None,
) -> tuple[Tensor, AttnProbe | None]:
    """Explicit softmax(q k^T * scale) v. Softmax in float32; a masked entry gets
    exactly zero weight, and a row with no visible key gives zeros instead of NaN.
    ``softcap``: scores become cap * tanh(scores / cap) before the mask (Gemma 2), in the
    run dtype as the reference rounds them. q (B, H, T, D), k/v (B, Hkv, S, D) -> (B, H, T, D)."""
    k, v = read_kv(k, v, lm)
    groups = q.shape[1] // k.shape[1]
    k, v = _expand_kv(k, groups), _expand_kv(v, groups)
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, H, T, S)
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    mask = explicit(lm, q.shape[2], k.shape[2], q.device)
    scores = scores.float().masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1).masked_fill(~mask, 0.0).to(q.dtype)
    out = torch.matmul(weights, v)
    return out, (AttnProbe(scores, weights) if probe else None)


def read_kv(k: Tensor, v: Tensor, lm: LayerMask) -> tuple[Tensor, Tensor]:
    """The keys and values the call reads: from ``lm.kv_start`` (a window skips the rest) to
    ``lm.kv_stop`` (a compiled step's filled slots)."""
    if lm.kv_start or lm.kv_stop is not None:
        return k[:, :, lm.kv_start : lm.kv_stop], v[:, :, lm.kv_start : lm.kv_stop]
    return k, v


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, lm: LayerMask, *, scale: float) -> Tensor:
    k, v = read_kv(k, v, lm)
    groups = q.shape[1] // k.shape[1]
    if lm.blocks:
        return _windowed_blocks(q, k, v, lm, scale, groups > 1)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=lm.mask, is_causal=lm.is_causal, scale=scale, enable_gqa=groups > 1
    )


def _windowed_blocks(q: Tensor, k: Tensor, v: Tensor, lm: LayerMask, scale: float, gqa: bool) -> Tensor:
    """A windowed call, ``lm.blocks`` (= W) queries at a time: each block's queries see only
    the keys from W - 1 before the block's first to its last, so every SDPA call is over at
    most 2W - 1 keys, with that block's mask built from the layer's spec (never a (T, S) one).
    q (B, H, T, D) at slots q_offset..; k/v (B, Hkv, S, D) at slots kv_start.."""
    spec, w = lm.spec, lm.blocks
    t, s = q.shape[2], k.shape[2]
    out = torch.empty_like(q)
    fn = spec_fn(spec)
    for a in range(0, t, w):
        e = min(t, a + w)
        first = spec.q_offset + a  # the block's first query slot
        lo = max(0, first - w + 1 - lm.kv_start)  # local index of the first key any of them sees
        hi = min(s, spec.q_offset + e - lm.kv_start)
        mask = build_mask(fn, batch=spec_batch(spec), q_len=e - a, kv_len=hi - lo, q_offset=first, kv_offset=lm.kv_start + lo,
                          device=q.device)
        out[:, :, a:e] = F.scaled_dot_product_attention(q[:, :, a:e], k[:, :, lo:hi], v[:, :, lo:hi], attn_mask=mask,
                                                        scale=scale, enable_gqa=gqa)
    return out


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise BadInputError(f"unknown attention backend {name!r}; known: {', '.join(BACKENDS)}")
    return name
