"""The Megatron layout of our model over N ranks, and which rows or columns of each of our
(global) parameters rank r holds.

  column-parallel (rows of our (out, in) matrix split): fused QKV by heads (q heads H/N,
      KV heads Hkv/N each; with fewer KV heads than ranks each rank keeps the one KV head its
      query heads read, replicated, as vLLM does), fused gate/up and plain up by columns of I;
      their biases alike; OLMo 2's q/k norms over the projection alike (their mean spans ranks);
  row-parallel (columns split): attention out and MLP down, one all-reduce each, bias once after;
  vocabulary-parallel: embedding and LM head by rows of V (padded to ceil(V/N)); the lookup
      sums one rank's row with zeros, the head's logits are gathered;
  replicated: norms, learned positions, per-head q/k norms.
Each rank reads only its own slices from the safetensors files (attncli.checkpoint.load).

Letters: H query heads, Hkv KV heads, D head dim, I MLP width, V vocab, N ranks, r rank.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from attncli.errors import BadInputError
from attncli.model.config import ModelConfig


@dataclass(frozen=True)
class Slice:
    """The part of one global parameter a rank holds: index ranges along ``dim`` (0 rows of
    our (out, in) matrix or of a vector, 1 columns), concatenated; ``rows`` pads dim 0 with
    zeros up to that many (the vocabulary's last shard)."""

    dim: int
    ranges: tuple[tuple[int, int], ...]
    rows: int | None = None


def check_split(cfg: ModelConfig, world: int, what: str = "--tp") -> None:
    """Refuse, before anything loads, a model that cannot be split ``world`` ways."""
    h, hkv, i = cfg.num_heads, cfg.num_kv_heads, cfg.intermediate_size
    if world < 1:
        raise BadInputError(f"{what} {world}: must be >= 1")
    if h % world:
        raise BadInputError(f"{what} {world}: {h} attention heads do not split into {world} equal parts")
    if hkv % world and world % hkv:
        raise BadInputError(f"{what} {world}: {hkv} KV heads neither split into {world} parts nor replicate "
                            f"evenly over {world} ranks")
    if i % world:
        raise BadInputError(f"{what} {world}: MLP width {i} does not split into {world} equal parts")


def local_config(cfg: ModelConfig, world: int) -> ModelConfig:
    """The config of one rank's model: H/N heads, max(1, Hkv/N) KV heads, I/N MLP width."""
    if world == 1:
        return cfg
    return dataclasses.replace(cfg, num_heads=cfg.num_heads // world, num_kv_heads=max(1, cfg.num_kv_heads // world),
                               intermediate_size=cfg.intermediate_size // world)


def vocab_rows(cfg: ModelConfig, world: int) -> int:
    return -(-cfg.vocab_size // world)


def kv_heads(cfg: ModelConfig, world: int, rank: int) -> tuple[int, int]:
    """The global KV heads [lo, hi) rank ``rank`` holds."""
    hkv = cfg.num_kv_heads
    if hkv >= world:
        per = hkv // world
        return rank * per, (rank + 1) * per
    k = rank * hkv // world  # replicated: the head this rank's query heads read
    return k, k + 1


def slice_of(ours: str, cfg: ModelConfig, world: int, rank: int) -> Slice | None:
    """Rank ``rank``'s part of our parameter ``ours`` (global config); None: replicated."""
    name = re.sub(r"^layers\.\d+\.", "", ours)
    d, qd, kvd, i = cfg.head_dim, cfg.q_dim, cfg.kv_dim, cfg.intermediate_size
    q_per, i_per = qd // world, i // world
    lo, hi = kv_heads(cfg, world, rank)
    q_rows = (rank * q_per, (rank + 1) * q_per)
    k_rows = (lo * d, hi * d)
    if name in ("attn.qkv.weight", "attn.qkv.bias"):
        return Slice(0, (q_rows, (qd + k_rows[0], qd + k_rows[1]), (qd + kvd + k_rows[0], qd + kvd + k_rows[1])))
    if cfg.qk_norm and cfg.qk_norm_scope == "projection" and name in ("attn.q_norm.weight", "attn.k_norm.weight"):
        return Slice(0, (q_rows,) if name.startswith("attn.q") else (k_rows,))
    if name == "attn.o.weight":
        return Slice(1, (q_rows,))
    if name in ("mlp.gate_up.weight", "mlp.gate_up.bias"):
        return Slice(0, ((rank * i_per, (rank + 1) * i_per), (i + rank * i_per, i + (rank + 1) * i_per)))
    if name in ("mlp.up.weight", "mlp.up.bias"):
        return Slice(0, ((rank * i_per, (rank + 1) * i_per),))
    if name == "mlp.down.weight":
        return Slice(1, ((rank * i_per, (rank + 1) * i_per),))
    if ours in ("embed.weight", "lm_head.weight"):
        per = vocab_rows(cfg, world)
        return Slice(0, ((min(cfg.vocab_size, rank * per), min(cfg.vocab_size, (rank + 1) * per)),), rows=per)
    return None


def parallelize(model, tp) -> None:
    """Wire a rank's model (built from local_config) for tensor parallelism: the row-parallel
    products sum over ranks, the embedding looks up its own rows, OLMo 2's projection-wide
    q/k norms take their mean over every rank. The LM head's gather is in Transformer._logits."""
    model.embed.tp, model.embed.start = tp, tp.rank * model.embed.weight.shape[0]
    for block in model.layers:
        block.attn.o.tp = tp
        block.mlp.down.tp = tp
        if block.attn.qk_proj_norm:
            block.attn.q_norm.tp = tp
            block.attn.k_norm.tp = tp
