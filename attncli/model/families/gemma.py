"""Gemma 2 and Gemma 3 (text). Both: RMSNorm as (1 + w) * x in float32, four norms per layer
(before and after attention, before and after the MLP), embeddings x sqrt(C) with the factor
rounded to the run dtype, scores scaled by ``query_pre_attn_scalar ** -0.5``, a GeGLU MLP
(tanh GELU), sliding and global layers as ``layer_types`` says, a tied head.

Gemma 2 soft-caps scores (cap * tanh(s / cap), before the mask; 50 by default) and the final
logits (30); its default pattern slides every even layer. Gemma 3 adds per-head q/k norms
before RoPE, gives its sliding layers their own RoPE base (``rope_local_base_freq``, or 5.x's
``rope_parameters["sliding_attention"]``; legacy ``rope_scaling`` applies to global layers
only), has no caps by default, and slides five layers in six. A multimodal ``gemma3``
checkpoint is read for its text decoder (weights under the language model's prefix); the
vision tower is skipped, and the load plan lists it.
"""

from __future__ import annotations

from typing import Any

from attncli.errors import ModelLoadError
from attncli.model.config import ModelConfig
from attncli.model.families.common import (
    HARMLESS, Family, Reader, Src, activation, plain_wants, read_rope, refuse_inexpressible, rope_from, rope_to_hf,
    shape_to_hf,
)
from attncli.model.families.llama import DROPPED, layout_weights

HF_ACTIVATIONS = {"gelu_tanh": "gelu_pytorch_tanh", "gelu": "gelu", "silu": "silu", "relu": "relu"}
_TYPE_NAMES = {"full_attention": "full", "sliding_attention": "sliding"}


def _layer_types(r: Reader, n: int, pattern: int) -> list[str]:
    """``layer_types`` as written, else every ``pattern``-th layer global (Gemma 2: 2, Gemma 3: 6)."""
    types = r.get("layer_types", None)
    if types is None:
        return ["sliding" if (i + 1) % pattern else "full" for i in range(n)]
    bad = sorted({t for t in types if t not in _TYPE_NAMES})
    if bad:
        raise ModelLoadError(f"config.json layer_types has unsupported kind(s): {', '.join(bad)}")
    return [_TYPE_NAMES[t] for t in types]


def _common(r: Reader, *, pattern: int, caps: tuple[float | None, float | None]) -> dict[str, Any]:
    """What Gemma 2 and 3 read alike; ``caps``: the default attention and final soft-caps
    (an explicit null in config.json turns a cap off)."""
    r.refuse_if("use_bidirectional_attention", bool(r.cfg.get("use_bidirectional_attention")),
                "bidirectional attention is for encoders (EmbeddingGemma)")
    r.refuse_if("attention_bias", bool(r.cfg.get("attention_bias")), "Gemma attention biases are not implemented")
    hidden = r.need("hidden_size")
    layers = r.need("num_hidden_layers")
    window = r.raw("sliding_window", 4096)  # an explicit null: no window at all
    types = _layer_types(r, layers, pattern)
    # older files write both; the model reads hidden_activation (default: tanh GELU)
    act_key = "hidden_activation" if r.cfg.get("hidden_activation") is not None else "hidden_act"
    r.used.update(("hidden_act", "hidden_activation"))
    return dict(
        vocab_size=r.need("vocab_size"),
        hidden_size=hidden,
        num_layers=layers,
        num_heads=r.need("num_attention_heads"),
        num_kv_heads=r.get("num_key_value_heads", None),
        head_dim=r.get("head_dim", 256),
        intermediate_size=r.need("intermediate_size"),
        max_position_embeddings=r.get("max_position_embeddings", 8192),
        norm="rmsnorm",
        norm_style="gemma",
        norm_placement="sandwich",
        norm_eps=r.get("rms_norm_eps", 1e-6),
        mlp="gated",
        act=activation(r, act_key) if r.cfg.get(act_key) is not None else "gelu_tanh",
        pos="rope",
        embed_scale=float(hidden) ** 0.5,
        attn_scale=float(r.get("query_pre_attn_scalar", 256)) ** -0.5,
        attn_softcap=r.raw("attn_logit_softcapping", caps[0]),
        final_softcap=r.raw("final_logit_softcapping", caps[1]),
        sliding_window=window if "sliding" in types and window is not None else None,
        layer_types=types if window is not None else ["full"] * layers,
        tie_word_embeddings=r.get("tie_word_embeddings", True),
    )


def parse_gemma2(r: Reader) -> dict[str, Any]:
    out = _common(r, pattern=2, caps=(50.0, 30.0))
    out["rope"] = read_rope(r, out["max_position_embeddings"])
    return out


def parse_gemma3(r: Reader) -> dict[str, Any]:
    # the legacy pattern; transformers 5 also writes it back as _sliding_window_pattern
    pattern = r.get("sliding_window_pattern", r.get("_sliding_window_pattern", 6))
    out = _common(r, pattern=pattern, caps=(None, None))
    max_pos = out["max_position_embeddings"]
    params = r.get("rope_parameters", None) or {}
    if "full_attention" in params or "sliding_attention" in params:  # 5.x: one table per layer type
        r.get("rope_scaling")
        r.get("rope_theta")
        r.get("rope_local_base_freq")
        glob = rope_from(params.get("full_attention", {}), max_pos, "rope_parameters", theta=1_000_000.0)
        local = rope_from(params.get("sliding_attention", {}), max_pos, "rope_parameters", theta=10_000.0)
    else:
        glob = read_rope(r, max_pos, default_theta=1_000_000.0)  # rope_scaling: global layers only
        local = rope_from({}, max_pos, "rope_local_base_freq", theta=r.get("rope_local_base_freq", 10_000.0))
    out.update(rope=glob, rope_local=local, qk_norm=True)
    return out


def _wants(c: ModelConfig, **more: Any) -> dict[str, Any]:
    return plain_wants(c, norm="rmsnorm", norm_bias=False, norm_style="gemma", norm_placement="sandwich",
                       mlp="gated", pos="rope", qkv_bias=False, o_bias=False, mlp_bias=False,
                       scale_by_inverse_layer_idx=False, embed_scale=float(c.hidden_size) ** 0.5,
                       attn_softcap=c.attn_softcap, final_softcap=c.final_softcap, **more)


def _scalar(scale: float) -> float | int:
    """query_pre_attn_scalar back from the scale it gives (an integer in every real config)."""
    value = scale**-2
    return round(value) if abs(value - round(value)) < 1e-6 * value else value


def _to_hf(c: ModelConfig) -> dict[str, Any]:
    names = {v: k for k, v in _TYPE_NAMES.items()}
    return {
        **shape_to_hf(c, act_key="hidden_activation", acts=HF_ACTIVATIONS),
        "rms_norm_eps": c.norm_eps,
        "query_pre_attn_scalar": _scalar(c.attn_scale),
        "attn_logit_softcapping": c.attn_softcap,
        "final_logit_softcapping": c.final_softcap,
        "sliding_window": c.sliding_window,
        "layer_types": [names[t] for t in c.layer_types],
    }


def gemma2_to_hf(c: ModelConfig) -> dict[str, Any]:
    refuse_inexpressible(c, _wants(c, qk_norm=False), scales={c.attn_scale}, acts=HF_ACTIVATIONS)
    return {**_to_hf(c), **rope_to_hf(c.rope)}


def gemma3_to_hf(c: ModelConfig) -> dict[str, Any]:
    extra = ["no local RoPE (Gemma 3 gives sliding layers their own base)"] if c.rope_local is None else []
    refuse_inexpressible(c, _wants(c, qk_norm=True, rope_local=c.rope_local), scales={c.attn_scale},
                         acts=HF_ACTIVATIONS, extra=extra)
    out = _to_hf(c)
    out["rope_parameters"] = {"full_attention": rope_to_hf(c.rope)["rope_parameters"],
                              "sliding_attention": rope_to_hf(c.rope_local)["rope_parameters"]}
    return out


def _weights():
    L = "model.layers.{}."
    out = {k: v for k, v in layout_weights().items() if "mlp_norm" not in k}
    out.update({
        "layers.{}.attn_post_norm.weight": [Src(L + "post_attention_layernorm.weight")],
        "layers.{}.mlp_norm.weight": [Src(L + "pre_feedforward_layernorm.weight")],
        "layers.{}.mlp_post_norm.weight": [Src(L + "post_feedforward_layernorm.weight")],
    })
    return out


def parse_gemma3_multimodal(r: Reader) -> dict[str, Any]:
    """A multimodal ``gemma3`` config.json: its text decoder (``text_config``), strictly; the
    vision tower and projector are not loaded (their tensors are listed as skipped)."""
    for key in ("vision_config", "mm_tokens_per_image", "boi_token_index", "eoi_token_index",
                "image_token_index", "initializer_range"):
        r.get(key)
    text = dict(r.need("text_config"))
    sub = Reader(text, set())
    out = parse_gemma3(sub)
    unknown = sorted(k for k in text if k not in sub.used and k not in HARMLESS)
    if unknown:
        raise ModelLoadError(f"config.json text_config field(s) not implemented by attncli for gemma3: {', '.join(unknown)}")
    if r.cfg.get("tie_word_embeddings") is not None:
        out["tie_word_embeddings"] = r.get("tie_word_embeddings")
    return out


# Where a multimodal Gemma 3 checkpoint keeps the text decoder: the spelling transformers
# saves to the Hub (4.5x's, which 5.x still writes), and 5.x's in-memory one.
_MULTIMODAL = (
    (("lm_head.", "language_model.lm_head."), ("model.", "language_model.model.")),
    (("lm_head.", "lm_head."), ("model.", "model.language_model.")),
)
_VISION = (r"(vision_tower|multi_modal_projector)\..*",)

FAMILIES = [
    Family("gemma2", "Gemma2ForCausalLM", parse_gemma2, gemma2_to_hf, _weights(), DROPPED),
    Family("gemma3_text", "Gemma3ForCausalLM", parse_gemma3, gemma3_to_hf, _weights(), DROPPED + _VISION,
           layouts=((), *_MULTIMODAL), skips="the vision tower and projector (attncli runs the text decoder)"),
    # the text decoder of a multimodal checkpoint: read as gemma3_text, saved as one
    Family("gemma3_text", "Gemma3ForCausalLM", parse_gemma3_multimodal, gemma3_to_hf, _weights(), DROPPED + _VISION,
           layouts=((), *_MULTIMODAL), model_type="gemma3",
           skips="the vision tower and projector (attncli runs the text decoder)"),
]
