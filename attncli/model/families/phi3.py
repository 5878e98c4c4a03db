"""Phi-3: the Llama layout with fused checkpoint tensors (``qkv_proj`` = [Q | K | V] and
``gate_up_proj`` = [gate; up], which are exactly our fused products), an optional
``partial_rotary_factor``, and an optional ``sliding_window`` on every layer. ``longrope``
scaling (the 128k-context models) is refused by name."""

from __future__ import annotations

from typing import Any

from attncli.model.config import ModelConfig
from attncli.model.families.common import Family, Reader, Src, rotary_dims
from attncli.model.families.llama import DROPPED, layout_to_hf, layout_wants, layout_weights, parse_layout, refuse


def parse(r: Reader) -> dict[str, Any]:
    out = parse_layout(r, partial_rotary=True)
    head_dim = out["head_dim"] or out["hidden_size"] // out["num_heads"]
    out["rotary_dim"] = rotary_dims(r, head_dim)
    # the length longrope scales from; with no longrope (refused) it changes nothing
    r.get("original_max_position_embeddings")
    out["sliding_window"] = r.get("sliding_window", None)
    return out


def to_hf(c: ModelConfig) -> dict[str, Any]:
    uniform = ["sliding" if c.sliding_window else "full"] * c.num_layers
    extra = [] if c.layer_types == uniform else ["per-layer layer_types (Phi-3 applies its window to every layer)"]
    refuse(c, layout_wants(c, qk_norm=False, qkv_bias=False, o_bias=False, mlp_bias=False, rotary_dim=c.rotary_dim),
           extra)
    return {**layout_to_hf(c), "partial_rotary_factor": c.rotary_dim / c.head_dim, "sliding_window": c.sliding_window}


def _weights():
    L = "model.layers.{}."
    out = {k: v for k, v in layout_weights().items() if not k.endswith(".bias")}
    out["layers.{}.attn.qkv.weight"] = [Src(L + "self_attn.qkv_proj.weight")]
    out["layers.{}.mlp.gate_up.weight"] = [Src(L + "mlp.gate_up_proj.weight")]
    return out


FAMILIES = [Family("phi3", "Phi3ForCausalLM", parse, to_hf, _weights(), DROPPED)]
