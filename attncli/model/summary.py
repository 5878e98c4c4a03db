"""Facts about a model from its config alone: sizes, KV-cache cost, memory at a context.

Counts come from the model built on the meta device, so they are exactly the
parameters attncli allocates (a tied LM head counted once) and cost no memory.
"""

from __future__ import annotations

from typing import Any

import torch

from attncli.model.cache import KVCache
from attncli.model.config import ModelConfig
from attncli.model.transformer import Transformer


def parameter_count(cfg: ModelConfig, world: int = 1) -> int:
    """Parameters of the model, or, with ``world`` > 1, of one tensor-parallel rank's part."""
    tp = None
    if world > 1:
        from types import SimpleNamespace

        from attncli.distributed.shard import local_config

        cfg, tp = local_config(cfg, world), SimpleNamespace(world=world, rank=0)
    with torch.device("meta"):
        model = Transformer(cfg, tp)
    if cfg.tie_word_embeddings:
        model.tie_weights()
    return sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once


def _position(cfg: ModelConfig) -> str:
    if cfg.pos != "rope":
        return "learned"
    text = f"rope ({cfg.rope.kind}, theta {cfg.rope.theta:g}"
    if cfg.rope_local is not None:
        text += f"; sliding layers theta {cfg.rope_local.theta:g}"
    if cfg.rotary_dim != cfg.head_dim:
        text += f"; {cfg.rotary_dim} of {cfg.head_dim} dims rotate"
    return text + ")"


def tp_info(cfg: ModelConfig, world: int, *, dtype: torch.dtype, context: int, batch: int) -> dict[str, Any]:
    """What each of ``world`` ranks holds: weights, KV cache at the context, their sum."""
    from attncli.distributed.shard import check_split, local_config

    check_split(cfg, world)
    itemsize = torch.empty((), dtype=dtype).element_size()
    local = local_config(cfg, world)
    weights = parameter_count(cfg, world) * itemsize
    kv = KVCache.bytes_per_token(local, dtype) * context * batch
    return {"tp": world, "rank_heads": local.num_heads, "rank_kv_heads": local.num_kv_heads,
            "rank_weight_bytes": weights, "rank_kv_cache_bytes": kv, "rank_memory_bytes": weights + kv}


def model_info(cfg: ModelConfig, *, dtype: torch.dtype, context: int | None = None, batch: int = 1,
               tp: int = 1) -> dict[str, Any]:
    """A JSON-ready summary; ``context`` defaults to the model's context length; ``tp`` > 1
    adds what each rank holds under tensor parallelism."""
    params = parameter_count(cfg)
    itemsize = torch.empty((), dtype=dtype).element_size()
    kv_per_token = KVCache.bytes_per_token(cfg, dtype)
    context = context or cfg.context_length
    weight_bytes = params * itemsize
    kv_bytes = kv_per_token * context * batch
    return {
        "architecture": cfg.arch,
        "parameters": params,
        "layers": cfg.num_layers,
        "hidden_size": cfg.hidden_size,
        "heads": cfg.num_heads,
        "kv_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "intermediate_size": cfg.intermediate_size,
        "vocab_size": cfg.vocab_size,
        "context_length": cfg.context_length,
        "position": _position(cfg),
        "sliding_window": cfg.sliding_window,
        "sliding_layers": [i for i, k in enumerate(cfg.layer_types) if k == "sliding"],
        "nope_layers": list(cfg.nope_layers),  # no position encoding at all
        "rotary_dims": cfg.rotary_dim if cfg.pos == "rope" else None,  # of head_dim; fewer = partial rotary
        "attn_softcap": cfg.attn_softcap,  # scores -> cap * tanh(scores / cap)
        "final_softcap": cfg.final_softcap,
        "norms": cfg.norm_placement,
        "parallel_residual": cfg.parallel_residual,
        "tied_embeddings": cfg.tie_word_embeddings,
        "checkpoint_dtype": cfg.dtype,
        "dtype": str(dtype).replace("torch.", ""),
        "weight_bytes": weight_bytes,
        "kv_cache_bytes_per_token": kv_per_token,
        "context": context,
        "batch": batch,
        "kv_cache_bytes": kv_bytes,
        "memory_bytes": weight_bytes + kv_bytes,
        **(tp_info(cfg, tp, dtype=dtype, context=context, batch=batch) if tp > 1 else {}),
    }
