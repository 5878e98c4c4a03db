"""Analytic cost of a forward pass: FLOPs (projections/MLP vs attention) and bytes
(weights, KV cache, the eager score matrix), to set next to what profile measures.

A multiply-add counts 2 FLOPs. Attention work is counted for the keys each query really
attends (causal: query i sees i+1 keys; a window caps it at W), which is what a fused
kernel does; eager attention computes the full T x S score matrix and masks it after.
Letters: B batch, T queries, S keys, C hidden, H heads, Hkv kv heads, D head dim, V vocab.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from attncli.model.attention.flex import BLOCK, block_states
from attncli.model.attention.masks import MaskSpec, build_mask, spec_fn
from attncli.model.cache import KVCache
from attncli.model.config import ModelConfig


def linear_flops_per_token(cfg: ModelConfig) -> int:
    """Projection and MLP FLOPs of one token through every layer (LM head excluded)."""
    c, qd, kvd, i = cfg.hidden_size, cfg.q_dim, cfg.kv_dim, cfg.intermediate_size
    attn = c * (qd + 2 * kvd) + qd * c
    mlp = (3 if cfg.mlp == "gated" else 2) * c * i
    return 2 * cfg.num_layers * (attn + mlp)


def attended_pairs(t: int, offset: int, window: int | None) -> int:
    """Sum over queries at slots offset..offset+t-1 of the keys each sees: query slot q
    sees min(q + 1, W) keys (causal, windowed)."""
    lo, hi = offset + 1, offset + t  # the counts k = q + 1 run over lo..hi

    def ramp(a: int, b: int) -> int:  # a + (a+1) + ... + b
        return (a + b) * (b - a + 1) // 2 if b >= a else 0

    if window is None or hi <= window:
        return ramp(lo, hi)
    if lo > window:
        return window * t
    return ramp(lo, window) + window * (hi - window)


@dataclass(frozen=True)
class Cost:
    linear_flops: int  # projections + MLP + LM head
    attention_flops: int  # QK^T and weights @ V over attended pairs
    weight_bytes: int
    kv_cache_bytes: int
    score_bytes: int  # one layer's eager float32 score matrix B*H*T*S (the eager backend's extra)

    @property
    def flops(self) -> int:
        return self.linear_flops + self.attention_flops

    def to_dict(self) -> dict:
        return {**asdict(self), "flops": self.flops}


def forward_cost(
    cfg: ModelConfig, *, batch: int, t: int, offset: int, weight_bytes: int, dtype: torch.dtype, logits_for: int = 1
) -> Cost:
    """One forward of ``t`` new tokens after ``offset`` cached ones (S = offset + t keys);
    the LM head runs for ``logits_for`` positions per row."""
    s = offset + t
    pairs = sum(attended_pairs(t, offset, cfg.window_of(layer)) for layer in range(cfg.num_layers))
    attention = 2 * 2 * batch * cfg.num_heads * cfg.head_dim * pairs
    linear = batch * (t * linear_flops_per_token(cfg) + logits_for * 2 * cfg.hidden_size * cfg.vocab_size)
    kv_per_token = KVCache.bytes_per_token(cfg, dtype)
    return Cost(
        linear_flops=linear,
        attention_flops=attention,
        weight_bytes=weight_bytes,
        kv_cache_bytes=batch * s * kv_per_token,
        score_bytes=batch * cfg.num_heads * t * s * 4,
    )


def attention_crossover(cfg: ModelConfig) -> int | None:
    """The prefill length T from which attention FLOPs exceed projection+MLP FLOPs
    (full causal layers: 4*H*D*T(T+1)/2 per layer against T * linear per layer)."""
    per_token = linear_flops_per_token(cfg) / cfg.num_layers
    per_pair = 4 * cfg.num_heads * cfg.head_dim
    # 4HD * T(T+1)/2 > T * per_token  <=>  T + 1 > 2 * per_token / (4HD)
    t = int(2 * per_token / per_pair)
    if cfg.sliding_window is not None and all(k == "sliding" for k in cfg.layer_types) and t > cfg.sliding_window:
        return None  # a window caps each query's keys: attention never overtakes
    return max(t, 1)


def block_skipped_fraction(cfg: ModelConfig, t: int, size: int = BLOCK) -> float:
    """The share of the T x T score matrices (averaged over layers) that a block kernel
    (FlexAttention, blocks of ``size``) never computes in a prefill: causality's upper
    triangle, and with a window or chunks everything outside them, block by block."""
    per_kind: dict[tuple, float] = {}
    total = 0.0
    for layer in range(cfg.num_layers):
        key = (cfg.window_of(layer), cfg.chunk_of(layer))
        if key not in per_kind:
            window, chunk = key
            spec = MaskSpec(window=window if window is not None and window < t else None,
                            chunk=chunk if chunk is not None and chunk < t else None)
            mask = build_mask(spec_fn(spec), batch=1, q_len=t, kv_len=t)
            per_kind[key] = block_states(mask, size).summary()["skipped_fraction"]
        total += per_kind[key]
    return total / cfg.num_layers
