"""OLMo 2: the Llama layout with its norms moved. There is no norm before the attention
or the MLP: each sublayer's output is normalised before the residual add
(``h + norm(attn(h))``, ``h + norm(mlp(h))``), and q and k are RMS-normalised over the
whole projection (all heads at once, H*D and Hkv*D wide) before the head split and RoPE.
Its reference scales RMSNorm in float32 before rounding, and rotates q/k in float32
(rounding once): the same math, rounded where it rounds. Untied head by default."""

from __future__ import annotations

from typing import Any

from attncli.model.config import ModelConfig
from attncli.model.families.common import Family, Reader, Src, WeightMap
from attncli.model.families.llama import DROPPED, layout_to_hf, layout_wants, layout_weights, parse_layout, refuse


def parse(r: Reader) -> dict[str, Any]:
    out = parse_layout(r)
    out["qkv_bias"] = out["o_bias"] = bool(r.get("attention_bias", False))
    out.update(qk_norm=True, qk_norm_scope="projection", norm_placement="post", norm_style="float32",
               rope_in_float32=True)
    return out


def to_hf(c: ModelConfig) -> dict[str, Any]:
    refuse(c, layout_wants(c, qk_norm=True, qk_norm_scope="projection", norm_placement="post", norm_style="float32",
                           rope_in_float32=True,
                           o_bias=c.qkv_bias,
                           mlp_bias=False, sliding_window=None))
    return {**layout_to_hf(c), "attention_bias": c.qkv_bias}


def _weights() -> WeightMap:
    L = "model.layers.{}."
    out = {k: v for k, v in layout_weights().items() if "attn_norm" not in k and "mlp_norm" not in k}
    out["layers.{}.attn_post_norm.weight"] = [Src(L + "post_attention_layernorm.weight")]
    out["layers.{}.mlp_post_norm.weight"] = [Src(L + "post_feedforward_layernorm.weight")]
    return out


FAMILIES = [Family("olmo2", "Olmo2ForCausalLM", parse, to_hf, _weights(), DROPPED)]
