"""GPT-NeoX (Pythia): LayerNorm with biases, biases on every product, exact GELU, no GQA.
The fused ``query_key_value`` runs per head ([q k v] for head 0, then head 1, ...), read into
our [Q | K | V] layout; only the first ``rotary_pct`` of each head's dims rotate (0.25 by
default); the residual is parallel (h + attn(ln1(h)) + mlp(ln2(h))) unless
``use_parallel_residual`` is false; the head is ``embed_out``, untied. The checkpoints'
``attention.bias`` / ``masked_bias`` / ``rotary_emb.inv_freq`` buffers are not weights."""

from __future__ import annotations

from typing import Any

from attncli.model.config import ModelConfig
from attncli.model.families.common import (
    Family, Reader, Src, WeightMap, activation, layer_pairs, plain_wants, read_rope, refuse_inexpressible, rope_to_hf,
    rotary_dims, shape_to_hf,
)

HF_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}


def parse(r: Reader) -> dict[str, Any]:
    hidden = r.need("hidden_size")
    heads = r.need("num_attention_heads")
    max_pos = r.get("max_position_embeddings", 2048)
    bias = bool(r.get("attention_bias", True))
    r.get("classifier_dropout")  # the sequence-classification head's, not ours
    return dict(
        vocab_size=r.need("vocab_size"),
        hidden_size=hidden,
        num_layers=r.need("num_hidden_layers"),
        num_heads=heads,
        intermediate_size=r.need("intermediate_size"),
        max_position_embeddings=max_pos,
        norm="layernorm",
        norm_bias=True,
        norm_eps=r.get("layer_norm_eps", 1e-5),
        mlp="plain",
        mlp_bias=True,
        act=activation(r, "hidden_act") if r.cfg.get("hidden_act") is not None else "gelu",
        pos="rope",
        rope=read_rope(r, max_pos, partial=True, theta_key="rotary_emb_base"),
        rotary_dim=rotary_dims(r, hidden // heads, key="rotary_pct", default=0.25),
        qkv_bias=bias,
        o_bias=bias,
        parallel_residual=bool(r.get("use_parallel_residual", True)),
        tie_word_embeddings=r.get("tie_word_embeddings", False),
    )


def to_hf(c: ModelConfig) -> dict[str, Any]:
    want = plain_wants(c, norm="layernorm", norm_bias=True, mlp="plain", mlp_bias=True, pos="rope", qk_norm=False,
                       o_bias=c.qkv_bias, num_kv_heads=c.num_heads, head_dim=c.hidden_size // c.num_heads,
                       sliding_window=None, scale_by_inverse_layer_idx=False, rotary_dim=c.rotary_dim,
                       parallel_residual=c.parallel_residual)
    refuse_inexpressible(c, want, scales={c.head_dim**-0.5}, acts=HF_ACTIVATIONS)
    rope = rope_to_hf(c.rope)
    return {
        **shape_to_hf(c, act_key="hidden_act", acts=HF_ACTIVATIONS, kv_heads=False),
        "layer_norm_eps": c.norm_eps,
        "rotary_emb_base": c.rope.theta,
        "rotary_pct": c.rotary_dim / c.head_dim,
        "rope_parameters": {**rope["rope_parameters"], "partial_rotary_factor": c.rotary_dim / c.head_dim},
        "use_parallel_residual": c.parallel_residual,
        "attention_bias": c.qkv_bias,
    }


def _weights() -> WeightMap:
    L = "gpt_neox.layers.{}."
    out = layer_pairs(L, [("attn_norm", "input_layernorm"), ("mlp_norm", "post_attention_layernorm"),
                          ("attn.o", "attention.dense"), ("mlp.up", "mlp.dense_h_to_4h"),
                          ("mlp.down", "mlp.dense_4h_to_h")])
    out |= layer_pairs(L, [("attn.qkv", "attention.query_key_value")], heads_interleaved=True)
    out["embed.weight"] = [Src("gpt_neox.embed_in.weight")]
    out["lm_head.weight"] = [Src("embed_out.weight")]
    out["norm.weight"], out["norm.bias"] = [Src("gpt_neox.final_layer_norm.weight")], [Src("gpt_neox.final_layer_norm.bias")]
    return out


DROPPED = (r"gpt_neox\.layers\.\d+\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)",)

FAMILIES = [Family("gpt_neox", "GPTNeoXForCausalLM", parse, to_hf, _weights(), DROPPED)]
