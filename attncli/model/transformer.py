"""One config-driven decoder: GPT-2, the Llama family (Llama, Mistral, Qwen2, Qwen3) and OLMo 2.

Letters: B batch, T new tokens (queries), S keys (cache slots attended), C hidden size,
H query heads, Hkv key/value heads, D head dim, I MLP width, V vocab.

Q, K and V come from one fused projection (and gate/up from another) so that a decode
step runs one matrix product where the checkpoint stores two or three; the loader
writes the checkpoint's separate tensors into slices of the fused ones.
Norms and the embedding are in layers.py, rotary embedding in rope.py. This module
never reads files: see attncli.checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attncli.model.attention import (
    AttnProbe, LayerMask, check_backend, eager_attention, layer_mask, sdpa_attention, static_layer_mask,
)
from attncli.model.cache import KVCache
from attncli.model.config import ModelConfig
from attncli.model.layers import RMSNorm, Embedding, activation, make_norm
from attncli.model.linear import Linear
from attncli.model.rope import apply_rope, rope_cos_sin, rope_inv_freq

Tensor = torch.Tensor


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.h, self.hkv, self.d = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.qkv = Linear(cfg.hidden_size, cfg.q_dim + 2 * cfg.kv_dim, bias=cfg.qkv_bias)
        self.o = Linear(cfg.q_dim, cfg.hidden_size, bias=cfg.o_bias)
        self.qk_norm = cfg.qk_norm and cfg.qk_norm_scope == "head"
        self.qk_proj_norm = cfg.qk_norm and cfg.qk_norm_scope == "projection"
        if self.qk_norm:
            self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)
            self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)
        if self.qk_proj_norm:  # over all heads' q (or k) at once
            self.q_norm = RMSNorm(cfg.q_dim, cfg.norm_eps)
            self.k_norm = RMSNorm(cfg.kv_dim, cfg.norm_eps)
        self.scale = cfg.attn_scale / (layer + 1 if cfg.scale_by_inverse_layer_idx else 1)
        self.layer = layer

    def forward(
        self,
        x: Tensor,  # (B, T, C)
        rope: tuple[Tensor, Tensor] | None,
        lm: LayerMask,
        cache: KVCache | None,
        start: int,
        backend: str,
        probe: bool,
    ) -> tuple[Tensor, AttnProbe | None]:
        b, t, _ = x.shape
        qkv = self.qkv(x)  # (B, T, (H + 2 Hkv) D)
        if self.qk_proj_norm:
            q, k, v = qkv.split([self.h * self.d, self.hkv * self.d, self.hkv * self.d], dim=-1)
            qkv = torch.cat((self.q_norm(q), self.k_norm(k), v), dim=-1)
        qkv = qkv.view(b, t, self.h + 2 * self.hkv, self.d)  # (B, T, H + 2 Hkv, D)
        qk, v = qkv[:, :, : self.h + self.hkv], qkv[:, :, self.h + self.hkv :]
        if self.qk_norm:
            qk = torch.cat((self.q_norm(qk[:, :, : self.h]), self.k_norm(qk[:, :, self.h :])), dim=2)
        if rope is not None:
            qk = apply_rope(qk, *rope)  # q and k heads in one pass
        q = qk[:, :, : self.h].transpose(1, 2)  # (B, H, T, D)
        k = qk[:, :, self.h :].transpose(1, 2)  # (B, Hkv, T, D)
        v = v.transpose(1, 2)  # (B, Hkv, T, D)
        if cache is not None:
            k, v = cache.write(self.layer, k, v, start)  # (B, Hkv, S, D)
        if backend == "eager" or probe:
            out, kept = eager_attention(q, k, v, lm, scale=self.scale, probe=probe)
        else:
            out, kept = sdpa_attention(q, k, v, lm, scale=self.scale), None
        out = out.transpose(1, 2).reshape(b, t, self.h * self.d)  # (B, T, H*D)
        return self.o(out), kept


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gated = cfg.mlp == "gated"
        width = cfg.intermediate_size
        if self.gated:
            self.gate_up = Linear(cfg.hidden_size, 2 * width, bias=cfg.mlp_bias)  # [gate; up]
        else:
            self.up = Linear(cfg.hidden_size, width, bias=cfg.mlp_bias)
        self.down = Linear(width, cfg.hidden_size, bias=cfg.mlp_bias)
        self.act = activation(cfg.act)

    def forward(self, x: Tensor) -> Tensor:
        if self.gated:
            gate, up = self.gate_up(x).chunk(2, dim=-1)
            return self.down(self.act(gate).mul_(up))  # in place: one (B, T, I) buffer fewer
        return self.down(self.act(self.up(x)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.post = cfg.norm_placement == "post"
        if self.post:  # norms on the sublayer outputs (OLMo 2)
            self.attn_post_norm = make_norm(cfg, cfg.hidden_size)
            self.mlp_post_norm = make_norm(cfg, cfg.hidden_size)
        else:
            self.attn_norm = make_norm(cfg, cfg.hidden_size)
            self.mlp_norm = make_norm(cfg, cfg.hidden_size)
        self.attn = Attention(cfg, layer)
        self.mlp = MLP(cfg)
        self.window = cfg.window_of(layer)


@dataclass
class ForwardOutput:
    logits: Tensor  # (B, T, V), or (B, 1, V) with last_only
    probes: list[AttnProbe] | None = None  # one per layer, when asked for
    masks: dict[str, LayerMask] | None = None  # the masks applied, by layer kind


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = Embedding(cfg.vocab_size, cfg.hidden_size)
        if cfg.pos == "learned":
            self.pos_embed = Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.num_layers))
        # The distinct masks the layers apply: ("full", None) and/or ("sliding", W).
        self.mask_kinds: dict[str, int | None] = {}
        for block in self.layers:
            self.mask_kinds.setdefault("sliding" if block.window is not None else "full", block.window)
        self.norm = make_norm(cfg, cfg.hidden_size)
        self.lm_head = Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.pos == "rope":
            self.register_buffer("inv_freq", rope_inv_freq(cfg.rope, cfg.head_dim), persistent=False)

    def init_buffers(self, device: torch.device | str) -> None:
        """Recompute non-checkpoint buffers on ``device`` (after a meta-device build)."""
        if self.cfg.pos == "rope":
            self.inv_freq = rope_inv_freq(self.cfg.rope, self.cfg.head_dim).to(device)

    def tie_weights(self) -> None:
        self.lm_head.weight = self.embed.weight

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.weight.dtype

    def forward(
        self,
        input_ids: Tensor,  # (B, T)
        *,
        attention_mask: Tensor | None = None,  # (B, T) 1 = real token, 0 = left padding
        cache: KVCache | None = None,
        positions: Tensor | None = None,  # (B, T); derived from the padding when None
        backend: str = "sdpa",
        probe: bool = False,
        last_only: bool = False,
    ) -> ForwardOutput:
        check_backend(backend)
        b, t = input_ids.shape
        device = input_ids.device
        if cache is not None:
            start = cache.reserve(t, attention_mask)
            kv_valid = cache.valid if cache.has_padding else None  # (B, S_max)
        else:
            start = 0
            kv_valid = attention_mask.bool() if attention_mask is not None else None  # (B, T)
        kv_len = start + t
        if positions is None:
            positions = self.positions(kv_valid, start, t, b, device)

        x = self.embed(input_ids)  # (B, T, C)
        if self.cfg.pos == "learned":
            x = x + self.pos_embed(positions)
        rope = rope_cos_sin(self.inv_freq, positions, x.dtype) if self.cfg.pos == "rope" else None

        masks: dict[str, LayerMask] = {}
        for kind, window in self.mask_kinds.items():
            masks[kind] = layer_mask(window=window, batch=b, q_len=t, q_offset=start, kv_len=kv_len,
                                     kv_valid=kv_valid, device=device, need_explicit=probe)
        x, probes = self._blocks(x, rope, masks, cache, start, backend, probe)
        if cache is not None:
            cache.commit(t)
        if last_only:
            x = x[:, -1:]
        logits = self.lm_head(self.norm(x))
        return ForwardOutput(logits, probes if probe else None, masks)

    def _blocks(self, x, rope, masks, cache, start, backend, probe):
        probes: list[AttnProbe] = []
        for block in self.layers:
            lm = masks["sliding" if block.window is not None else "full"]
            if block.post:
                h, kept = block.attn(x, rope, lm, cache, start, backend, probe)
                x = x + block.attn_post_norm(h)
                x = x + block.mlp_post_norm(block.mlp(x))
            else:
                h, kept = block.attn(block.attn_norm(x), rope, lm, cache, start, backend, probe)
                x = x + h
                x = x + block.mlp(block.mlp_norm(x))
            if kept is not None:
                probes.append(kept)
        return x, probes

    def decode_step(
        self,
        ids: Tensor,  # (B, 1)
        positions: Tensor,  # (B, 1)
        slot: Tensor,  # (1,) the cache slot of the new token
        cache: KVCache,
        backend: str = "sdpa",
    ) -> Tensor:
        """One decode step with static shapes, for torch.compile and CUDA graphs: the slot
        is a tensor, the cache is written with index_copy_, and attention reads all S_max
        slots through a mask (slots after the new token are masked as future ones).
        Returns logits (B, V). The caller keeps cache.length."""
        b = ids.shape[0]
        x = self.embed(ids)  # (B, 1, C)
        if self.cfg.pos == "learned":
            x = x + self.pos_embed(positions)
        rope = rope_cos_sin(self.inv_freq, positions, x.dtype) if self.cfg.pos == "rope" else None
        kv_valid = cache.valid if cache.has_padding else None
        masks = {kind: static_layer_mask(window=window, batch=b, slot=slot, kv_len=cache.max_len, kv_valid=kv_valid)
                 for kind, window in self.mask_kinds.items()}
        x, _ = self._blocks(x, rope, masks, cache, slot, backend, False)
        return self.lm_head(self.norm(x))[:, -1]

    @staticmethod
    def positions(kv_valid: Tensor | None, start: int, t: int, b: int, device: torch.device) -> Tensor:
        """Position ids (B, T) of the new tokens: count of real tokens before each slot,
        so a left-padded row starts at position 0 at its first real token."""
        if kv_valid is None:
            return torch.arange(start, start + t, device=device).expand(b, t)
        pos = kv_valid[:, : start + t].long().cumsum(-1) - 1
        return pos[:, start:].clamp(min=0)
