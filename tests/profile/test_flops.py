"""Analytic FLOPs and bytes against hand counts and brute force."""

import pytest
import torch

from attncli.profile.flops import attended_pairs, attention_crossover, forward_cost, linear_flops_per_token
from attncli.model.config import ModelConfig


def brute_pairs(t, offset, window):
    return sum(min(q + 1, window) if window else q + 1 for q in range(offset, offset + t))


@pytest.mark.parametrize("t, offset, window", [(1, 0, None), (8, 0, None), (1, 99, None), (5, 3, 4), (10, 0, 4),
                                                (3, 10, 4), (6, 1, 6), (7, 2, 100), (50, 0, 1)])
def test_attended_pairs_closed_form(t, offset, window):
    assert attended_pairs(t, offset, window) == brute_pairs(t, offset, window)


def gpt2_small():
    return ModelConfig(arch="gpt2", vocab_size=50257, hidden_size=768, num_layers=12, num_heads=12,
                       intermediate_size=3072, max_position_embeddings=1024, mlp="plain", norm="layernorm")


def test_linear_flops_of_gpt2_small():
    # per layer: 4 C^2 (qkv + o) + 2 * 4 C^2 (MLP) = 12 C^2 multiply-adds
    assert linear_flops_per_token(gpt2_small()) == 2 * 12 * 12 * 768**2


def test_prefill_cost_and_crossover():
    cfg = gpt2_small()
    cost = forward_cost(cfg, batch=2, t=100, offset=0, weight_bytes=1000, dtype=torch.float32)
    assert cost.attention_flops == 2 * 2 * 2 * 12 * 64 * 12 * (100 * 101 // 2)
    assert cost.kv_cache_bytes == 2 * 100 * 2 * 12 * 12 * 64 * 4
    assert cost.score_bytes == 2 * 12 * 100 * 100 * 4
    # per layer: attention 4C * T(T+1)/2 against linear 24 C^2 * T: equal at T + 1 = 12 C
    t = attention_crossover(cfg)
    assert t == 12 * 768
    at = forward_cost(cfg, batch=1, t=t + 10, offset=0, weight_bytes=0, dtype=torch.float32, logits_for=0)
    before = forward_cost(cfg, batch=1, t=t - 10, offset=0, weight_bytes=0, dtype=torch.float32, logits_for=0)
    assert at.attention_flops > at.linear_flops and before.attention_flops < before.linear_flops


def test_window_caps_attention():
    cfg = ModelConfig(arch="mistral", vocab_size=100, hidden_size=64, num_layers=2, num_heads=4,
                      intermediate_size=128, max_position_embeddings=10_000, sliding_window=16)
    step = forward_cost(cfg, batch=1, t=1, offset=5000, weight_bytes=0, dtype=torch.float32)
    assert step.attention_flops == 2 * 2 * 4 * 16 * 2 * 16  # 16 keys per layer, not 5001
    assert attention_crossover(cfg) is None or attention_crossover(cfg) <= 16


def test_attention_flops_count_each_layer_kind_window():
    """Gemma 2 alternates sliding (W = 4,096) and global layers: at T = 8,192 the sliding
    half attends W keys per query past the window, the global half all earlier ones."""
    from attncli.model.presets import preset_config

    cfg = preset_config("gemma-2-2b")
    t, w, half = 8192, 4096, cfg.num_layers // 2
    cost = forward_cost(cfg, batch=1, t=t, offset=0, weight_bytes=0, dtype=torch.bfloat16)
    full_pairs = t * (t + 1) // 2
    window_pairs = w * (w + 1) // 2 + w * (t - w)
    assert cost.attention_flops == 4 * cfg.num_heads * cfg.head_dim * half * (full_pairs + window_pairs)
