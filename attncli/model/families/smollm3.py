"""SmolLM3: the Llama layout with layers that apply no position encoding at all (NoPE):
``no_rope_layers`` (1 = RoPE, 0 = none; by default every ``no_rope_layer_interval``-th layer,
4, has none). A sliding window exists only with ``use_sliding_window``, on the layers that
``layer_types`` marks (by default the NoPE ones). Tied head."""

from __future__ import annotations

from typing import Any

from attncli.errors import ModelLoadError
from attncli.model.config import ModelConfig
from attncli.model.families.common import Family, Reader
from attncli.model.families.llama import DROPPED, layout_to_hf, layout_wants, layout_weights, parse_layout, refuse

_TYPE_NAMES = {"full_attention": "full", "sliding_attention": "sliding"}


def parse(r: Reader) -> dict[str, Any]:
    out = parse_layout(r)
    n = out["num_layers"]
    out["qkv_bias"] = out["o_bias"] = bool(r.get("attention_bias", False))
    out["mlp_bias"] = bool(r.get("mlp_bias", False))
    out["tie_word_embeddings"] = r.get("tie_word_embeddings", True)
    interval = r.get("no_rope_layer_interval", 4)
    flags = r.get("no_rope_layers", None)
    if flags is None:
        flags = [int((i + 1) % interval != 0) for i in range(n)]
    if len(flags) != n:
        raise ModelLoadError(f"config.json no_rope_layers has {len(flags)} entries for {n} layers")
    out["nope_layers"] = [i for i, f in enumerate(flags) if not f]
    configured = r.get("sliding_window", None)
    window = configured if r.get("use_sliding_window", False) else None  # a window only when switched on
    r.get("max_window_layers")  # SmolLM3 reads layer_types (below), not this leftover
    types = r.get("layer_types", None)
    if types is None:
        types = ["sliding_attention" if window is not None and not flags[i] else "full_attention" for i in range(n)]
    bad = sorted({t for t in types if t not in _TYPE_NAMES})
    if bad:
        raise ModelLoadError(f"config.json layer_types has unsupported kind(s): {', '.join(bad)}")
    layer_types = [_TYPE_NAMES[t] for t in types]
    if window is None or "sliding" not in layer_types:
        out.update(sliding_window=None, layer_types=["full"] * n)
    else:
        out.update(sliding_window=window, layer_types=layer_types)
    return out


def to_hf(c: ModelConfig) -> dict[str, Any]:
    refuse(c, layout_wants(c, qk_norm=False, o_bias=c.qkv_bias, nope_layers=c.nope_layers))
    names = {v: k for k, v in _TYPE_NAMES.items()}
    return {
        **layout_to_hf(c),
        "attention_bias": c.qkv_bias,
        "mlp_bias": c.mlp_bias,
        "no_rope_layers": [0 if i in c.nope_layers else 1 for i in range(c.num_layers)],
        "use_sliding_window": c.has_sliding_layers,
        "sliding_window": c.sliding_window,
        "layer_types": [names[t] for t in c.layer_types],
    }


FAMILIES = [Family("smollm3", "SmolLM3ForCausalLM", parse, to_hf, layout_weights(), DROPPED)]
