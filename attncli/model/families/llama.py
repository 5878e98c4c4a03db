"""Llama and Mistral: RMSNorm, rotary positions (default, linear or Llama-3 scaling), a
gated SiLU MLP, grouped-query attention; Mistral adds a sliding window on every layer.

The Llama layout (its config.json fields, weight names and export) is shared with the
families built on it (qwen.py): they call ``parse_layout`` / ``layout_to_hf`` and add
their own switches.
"""

from __future__ import annotations

from typing import Any

from attncli.model.config import ModelConfig, RopeConfig
from attncli.model.families.common import (
    Family, Reader, Src, WeightMap, activation, plain_wants, read_rope, refuse_inexpressible, rope_to_hf,
    shape_to_hf,
)

# ours -> the config.json spelling of hidden_act
HF_ACTIVATIONS = {"silu": "silu", "gelu_tanh": "gelu_pytorch_tanh", "gelu": "gelu", "relu": "relu"}
DROPPED = (r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq",)  # RoPE buffers of old exports


def parse_layout(r: Reader, *, partial_rotary: bool = False) -> dict[str, Any]:
    """The fields every Llama-layout config.json has (``partial_rotary``: the family reads
    partial_rotary_factor itself)."""
    max_pos = r.get("max_position_embeddings", 2048)
    return dict(
        vocab_size=r.need("vocab_size"),
        hidden_size=r.need("hidden_size"),
        num_layers=r.need("num_hidden_layers"),
        num_heads=r.need("num_attention_heads"),
        num_kv_heads=r.get("num_key_value_heads", None),
        head_dim=r.get("head_dim", None),
        intermediate_size=r.need("intermediate_size"),
        max_position_embeddings=max_pos,
        norm="rmsnorm",
        norm_eps=r.get("rms_norm_eps", 1e-6),
        mlp="gated",
        act=activation(r, "hidden_act"),
        pos="rope",
        rope=read_rope(r, max_pos, partial=partial_rotary),
        tie_word_embeddings=r.get("tie_word_embeddings", False),
    )


def layout_wants(c: ModelConfig, **more: Any) -> dict[str, Any]:
    """The fields a Llama-layout config.json cannot change, plus a family's own."""
    return plain_wants(c, norm="rmsnorm", norm_bias=False, mlp="gated", pos="rope", scale_by_inverse_layer_idx=False,
                       **more)


def refuse(c: ModelConfig, want: dict[str, Any], extra: list[str] = ()) -> None:
    refuse_inexpressible(c, want, scales={c.head_dim**-0.5}, acts=HF_ACTIVATIONS, extra=extra)


def layout_to_hf(c: ModelConfig) -> dict[str, Any]:
    return {
        **shape_to_hf(c, act_key="hidden_act", acts=HF_ACTIVATIONS),
        "rms_norm_eps": c.norm_eps,
        **rope_to_hf(c.rope or RopeConfig()),
    }


def layout_weights() -> WeightMap:
    L = "model.layers.{}."
    qkv = ["q_proj", "k_proj", "v_proj"]
    return {
        "embed.weight": [Src("model.embed_tokens.weight")],
        "layers.{}.attn_norm.weight": [Src(L + "input_layernorm.weight")],
        "layers.{}.attn.qkv.weight": [Src(L + f"self_attn.{p}.weight") for p in qkv],
        "layers.{}.attn.qkv.bias": [Src(L + f"self_attn.{p}.bias") for p in qkv],
        "layers.{}.attn.o.weight": [Src(L + "self_attn.o_proj.weight")],
        "layers.{}.attn.o.bias": [Src(L + "self_attn.o_proj.bias")],
        "layers.{}.attn.q_norm.weight": [Src(L + "self_attn.q_norm.weight")],
        "layers.{}.attn.k_norm.weight": [Src(L + "self_attn.k_norm.weight")],
        "layers.{}.mlp_norm.weight": [Src(L + "post_attention_layernorm.weight")],
        "layers.{}.mlp.gate_up.weight": [Src(L + "mlp.gate_proj.weight"), Src(L + "mlp.up_proj.weight")],
        "layers.{}.mlp.gate_up.bias": [Src(L + "mlp.gate_proj.bias"), Src(L + "mlp.up_proj.bias")],
        "layers.{}.mlp.down.weight": [Src(L + "mlp.down_proj.weight")],
        "layers.{}.mlp.down.bias": [Src(L + "mlp.down_proj.bias")],
        "norm.weight": [Src("model.norm.weight")],
        "lm_head.weight": [Src("lm_head.weight")],
    }


# ---- llama ----
def parse_llama(r: Reader) -> dict[str, Any]:
    out = parse_layout(r)
    out["qkv_bias"] = out["o_bias"] = bool(r.get("attention_bias", False))
    out["mlp_bias"] = bool(r.get("mlp_bias", False))
    r.refuse_if("sliding_window", r.cfg.get("sliding_window") is not None, "Llama has no sliding window")
    return out


def llama_to_hf(c: ModelConfig) -> dict[str, Any]:
    # one switch, attention_bias, for the q/k/v and o biases
    refuse(c, layout_wants(c, qk_norm=False, o_bias=c.qkv_bias, sliding_window=None))
    return {**layout_to_hf(c), "attention_bias": c.qkv_bias, "mlp_bias": c.mlp_bias}


# ---- mistral ----
def parse_mistral(r: Reader) -> dict[str, Any]:
    out = parse_layout(r)
    window = r.get("sliding_window", None)
    r.refuse_if("layer_types", "layer_types" in r.cfg and r.cfg["layer_types"] is not None,
                "Mistral with per-layer types is another architecture (Ministral)")
    out["sliding_window"] = window
    return out


def mistral_to_hf(c: ModelConfig) -> dict[str, Any]:
    uniform = ["sliding" if c.sliding_window else "full"] * c.num_layers
    extra = [] if c.layer_types == uniform else ["per-layer layer_types (Mistral applies its window to every layer)"]
    refuse(c, layout_wants(c, qk_norm=False, qkv_bias=False, o_bias=False, mlp_bias=False), extra)
    return {**layout_to_hf(c), "sliding_window": c.sliding_window}


def layout_family(arch: str, hf_class: str, parse, to_hf) -> Family:
    """A family on the Llama layout: its weight names and the buffers old exports carry."""
    return Family(arch, hf_class, parse, to_hf, layout_weights(), DROPPED)


FAMILIES = [
    layout_family("llama", "LlamaForCausalLM", parse_llama, llama_to_hf),
    layout_family("mistral", "MistralForCausalLM", parse_mistral, mistral_to_hf),
]
