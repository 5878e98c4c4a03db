"""Qwen2 and Qwen3: the Llama layout with Qwen's switches. Qwen2 always has q/k/v biases
(no o bias); Qwen3 has per-head q/k RMSNorm and an explicit head_dim. Both carry a
sliding window that exists only when ``use_sliding_window`` is on, on the layers that
``layer_types`` (or, without it, ``max_window_layers``) marks."""

from __future__ import annotations

from typing import Any

from attncli.errors import ModelLoadError
from attncli.model.config import ModelConfig
from attncli.model.families.common import Reader
from attncli.model.families.llama import layout_family, layout_to_hf, layout_wants, parse_layout, refuse

_TYPE_NAMES = {"full_attention": "full", "sliding_attention": "sliding"}


def _window(r: Reader, num_layers: int) -> dict[str, Any]:
    # Qwen configs often carry sliding_window=32768 with use_sliding_window=false: as in
    # the reference, the window exists only when the switch is on, and then applies to
    # the layers that layer_types (or, without it, max_window_layers) marks as sliding.
    use = bool(r.get("use_sliding_window", False))
    configured = r.get("sliding_window", None)
    window = configured if use else None
    first = r.get("max_window_layers", num_layers)
    types = r.get("layer_types", None)
    if types is not None:
        bad = sorted({t for t in types if t not in _TYPE_NAMES})
        if bad:
            raise ModelLoadError(f"config.json layer_types has unsupported kind(s): {', '.join(bad)}")
        layer_types = [_TYPE_NAMES[t] for t in types]
    else:
        layer_types = ["sliding" if i >= first else "full" for i in range(num_layers)]
    if window is None or "sliding" not in layer_types:
        return {"sliding_window": None, "layer_types": ["full"] * len(layer_types)}
    return {"sliding_window": window, "layer_types": layer_types}


def _window_to_hf(c: ModelConfig) -> dict[str, Any]:
    names = {v: k for k, v in _TYPE_NAMES.items()}
    return dict(
        use_sliding_window=c.has_sliding_layers,
        sliding_window=c.sliding_window,
        max_window_layers=c.num_layers,  # superseded by layer_types, which is explicit
        layer_types=[names[t] for t in c.layer_types],
    )


def parse_qwen2(r: Reader) -> dict[str, Any]:
    out = parse_layout(r)
    out["qkv_bias"] = True  # Qwen2 always has q/k/v biases and no o bias
    out.update(_window(r, out["num_layers"]))
    return out


def qwen2_to_hf(c: ModelConfig) -> dict[str, Any]:
    refuse(c, layout_wants(c, qk_norm=False, qkv_bias=True, o_bias=False, mlp_bias=False))
    return {**layout_to_hf(c), **_window_to_hf(c)}


def parse_qwen3(r: Reader) -> dict[str, Any]:
    out = parse_layout(r)
    out["qkv_bias"] = out["o_bias"] = bool(r.get("attention_bias", False))
    out["qk_norm"] = True
    out.update(_window(r, out["num_layers"]))
    return out


def qwen3_to_hf(c: ModelConfig) -> dict[str, Any]:
    refuse(c, layout_wants(c, qk_norm=True, o_bias=c.qkv_bias, mlp_bias=False))
    return {**layout_to_hf(c), "attention_bias": c.qkv_bias, **_window_to_hf(c)}


FAMILIES = [
    layout_family("qwen2", "Qwen2ForCausalLM", parse_qwen2, qwen2_to_hf),
    layout_family("qwen3", "Qwen3ForCausalLM", parse_qwen3, qwen3_to_hf),
]
