"""GPT-2: learned positions, LayerNorm with biases, a plain GELU MLP, biases everywhere,
Conv1D weights stored (in, out), and an optional ``transformer.`` prefix on exports."""

from __future__ import annotations

from typing import Any

from attncli.model.config import ModelConfig
from attncli.model.families.common import (
    Family, Reader, Src, WeightMap, activation, layer_pairs, plain_wants, refuse_inexpressible,
)

# ours -> the config.json spelling GPT-2 uses for it
HF_ACTIVATIONS = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"}


def parse(r: Reader) -> dict[str, Any]:
    r.refuse_if("add_cross_attention", bool(r.cfg.get("add_cross_attention")), "cross-attention is for encoder-decoders")
    hidden = r.need("n_embd")
    scale = r.get("scale_attn_weights", True)
    return dict(
        vocab_size=r.need("vocab_size"),
        hidden_size=hidden,
        num_layers=r.need("n_layer"),
        num_heads=r.need("n_head"),
        intermediate_size=r.get("n_inner") or 4 * hidden,
        max_position_embeddings=r.get("n_positions", r.cfg.get("n_ctx", 1024)),
        norm="layernorm",
        norm_bias=True,
        norm_eps=r.get("layer_norm_epsilon", 1e-5),
        mlp="plain",
        act=activation(r, "activation_function"),
        pos="learned",
        rope=None,
        qkv_bias=True,
        o_bias=True,
        mlp_bias=True,
        tie_word_embeddings=r.get("tie_word_embeddings", True),
        attn_scale=None if scale else 1.0,
        scale_by_inverse_layer_idx=bool(r.get("scale_attn_by_inverse_layer_idx", False)),
    )


def to_hf(c: ModelConfig) -> dict[str, Any]:
    want = plain_wants(c, norm="layernorm", norm_bias=True, mlp="plain", pos="learned", qkv_bias=True,
                       o_bias=True, mlp_bias=True, qk_norm=False, sliding_window=None)
    refuse_inexpressible(c, want, scales={c.head_dim**-0.5, 1.0}, acts=HF_ACTIVATIONS)  # scale_attn_weights on / off
    return {
        "vocab_size": c.vocab_size,
        "n_embd": c.hidden_size,
        "n_layer": c.num_layers,
        "n_head": c.num_heads,
        "n_inner": c.intermediate_size,
        "n_positions": c.max_position_embeddings,
        "layer_norm_epsilon": c.norm_eps,
        "activation_function": HF_ACTIVATIONS[c.act],
        "scale_attn_weights": c.attn_scale == c.head_dim**-0.5,
        "scale_attn_by_inverse_layer_idx": c.scale_by_inverse_layer_idx,
    }


def _weights() -> WeightMap:
    L = "h.{}."
    out: WeightMap = {
        "embed.weight": [Src("wte.weight")],
        "pos_embed.weight": [Src("wpe.weight")],
        "norm.weight": [Src("ln_f.weight")],
        "norm.bias": [Src("ln_f.bias")],
        "lm_head.weight": [Src("lm_head.weight")],
    }
    out |= layer_pairs(L, [("attn_norm", "ln_1"), ("mlp_norm", "ln_2")])
    conv = [("attn.qkv", "attn.c_attn"), ("attn.o", "attn.c_proj"), ("mlp.up", "mlp.c_fc"), ("mlp.down", "mlp.c_proj")]
    out |= layer_pairs(L, conv, ("weight",), transpose=True)  # Conv1D: (in, out)
    out |= layer_pairs(L, conv, ("bias",))
    return out


FAMILIES = [
    Family(
        arch="gpt2",
        hf_class="GPT2LMHeadModel",
        parse=parse,
        to_hf=to_hf,
        weights=_weights(),
        dropped=(r"h\.\d+\.attn\.bias", r"h\.\d+\.attn\.masked_bias"),  # causal-mask buffers of old exports
        layouts=((("lm_head.", "lm_head."), ("", "transformer.")), ()),  # HF saves with the prefix
    ),
]
