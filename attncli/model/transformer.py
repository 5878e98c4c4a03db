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
from typing import Callable

import torch
from torch import nn

from attncli.errors import BadInputError
from attncli.model.attention import AttnProbe, LayerMask, check_backend, layer_mask, static_layer_mask
from attncli.model.attention.masks import slot_positions
from attncli.model.attention.flex import FlexRunner
from attncli.model.attention.kernels import KernelLog
from attncli.model.blocks import Block
from attncli.model.cache import KVCache
from attncli.model.config import ModelConfig
from attncli.model.layers import Embedding, make_norm
from attncli.model.linear import Linear
from attncli.model.rope import rope_cos_sin, rope_inv_freq

Tensor = torch.Tensor
ProbeKeep = Callable[[int, AttnProbe], "AttnProbe | None"]


@dataclass
class ForwardOutput:
    logits: Tensor  # (B, T, V), or (B, 1, V) with last_only
    probes: list[AttnProbe | None] | None = None  # one per layer, when asked for (None: not kept)
    masks: dict[str, LayerMask] | None = None  # the masks applied, by layer kind


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig, tp=None):
        """``tp``: a tensor-parallel group (attncli.distributed); ``cfg`` is then this rank's
        (distributed.shard.local_config), and the vocabulary is split over the ranks."""
        super().__init__()
        self.cfg = cfg
        self.tp = tp
        if tp is not None:
            from attncli.distributed.shard import parallelize, vocab_rows
        rows = cfg.vocab_size if tp is None else vocab_rows(cfg, tp.world)  # this rank's vocabulary rows
        self.embed = Embedding(rows, cfg.hidden_size)
        if cfg.pos == "learned":
            self.pos_embed = Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.num_layers))
        # The distinct masks the layers apply: ("full", None) and/or ("sliding", W).
        # The distinct masks the layers apply, by layer kind: its window and chunk size.
        self.mask_kinds: dict[str, tuple[int | None, int | None]] = {}
        self.flex = FlexRunner()  # compiled FlexAttention and its block masks, for --attn flex
        self.kernels = KernelLog()  # which attention kernels ran, while recording (attention.kernels)
        for block in self.layers:
            self.mask_kinds.setdefault(block.kind, (block.window, block.chunk))
            block.attn.flex = self.flex
            block.attn.kernels = self.kernels
        self.norm = make_norm(cfg, cfg.hidden_size)
        self.lm_head = Linear(cfg.hidden_size, rows, bias=False)
        self.rope_kinds = sorted({block.rope for block in self.layers if block.rope is not None})
        self.init_buffers("cpu")
        if tp is not None:
            parallelize(self, tp)

    def init_buffers(self, device: torch.device | str) -> None:
        """Recompute non-checkpoint buffers on ``device`` (after a meta-device build): the
        inverse RoPE frequencies of each rotary table the layers use."""
        ropes = {"global": self.cfg.rope, "local": self.cfg.rope_local}
        self.inv_freqs = {kind: rope_inv_freq(ropes[kind], self.cfg.rotary_dim).to(device) for kind in self.rope_kinds}

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
        documents: Tensor | None = None,  # (B, T) document id per token: packed sequences (no cache)
        backend: str = "sdpa",
        probe: bool | ProbeKeep = False,
        last_only: bool = False,
    ) -> ForwardOutput:
        """``probe``: True keeps every layer's (B, H, T, S) scores and weights (eager math);
        a function ``keep(layer, AttnProbe) -> AttnProbe | None`` is handed each layer's as it
        is made and returns what to keep (one head, one query row, moved off the device; or
        nothing), so that at most one layer's full scores exist at a time."""
        check_backend(backend)
        b, t = input_ids.shape
        device = input_ids.device
        if documents is not None and cache is not None:
            raise BadInputError("packed documents run without a KV cache")
        if cache is not None:
            start = cache.reserve(t, attention_mask)
            kv_valid = cache.valid if cache.has_padding else None  # (B, S_max)
        else:
            start = 0
            kv_valid = attention_mask.bool() if attention_mask is not None else None  # (B, T)
        kv_len = start + t
        flex = backend == "flex" and not probe
        if flex and start == 0:
            self.flex.reset()  # a new sequence: new padding, new block masks
        if flex and cache is not None:
            kv_len = cache.max_len  # flex reads every slot; causality hides those not yet written
        if positions is None:
            positions = self.positions(kv_valid, start, t, b, device)

        x = self._embed(input_ids, positions)  # (B, T, C)
        ropes = self._ropes(positions, x.dtype)

        masks: dict[str, LayerMask] = {}
        slot_pos = None
        if kv_valid is not None and any(chunk for _, chunk in self.mask_kinds.values()):
            slot_pos = slot_positions(kv_valid)  # (B, S)
        for kind, (window, chunk) in self.mask_kinds.items():
            masks[kind] = layer_mask(window=window, chunk=chunk, batch=b, q_len=t, q_offset=start, kv_len=kv_len,
                                     kv_valid=kv_valid, device=device, need_explicit=bool(probe), dense=not flex,
                                     documents=documents, slot_pos=slot_pos)
        x, probes = self._blocks(x, ropes, masks, cache, start, backend, probe)
        if cache is not None:
            cache.commit(t)
        if last_only:
            x = x[:, -1:]
        return ForwardOutput(self._logits(x), probes if probe else None, masks)

    def _embed(self, ids: Tensor, positions: Tensor) -> Tensor:
        x = self.embed(ids)  # (B, T, C)
        if self.cfg.embed_scale is not None:
            # the factor rounded to the run dtype first, as the reference's buffer is
            x = x * torch.tensor(self.cfg.embed_scale, dtype=torch.float32).to(x.dtype)
        if self.cfg.pos == "learned":
            x = x + self.pos_embed(positions)
        return x

    def _ropes(self, positions: Tensor, dtype: torch.dtype) -> dict[str, tuple[Tensor, Tensor]]:
        if self.cfg.rope_in_float32:
            dtype = torch.float32
        # .to: a no-op on the model's device; after a user's model.to(...) (the tables are not
        # registered buffers) they follow the positions
        return {kind: rope_cos_sin(inv.to(positions.device), positions, dtype) for kind, inv in self.inv_freqs.items()}

    def _logits(self, x: Tensor) -> Tensor:
        logits = self.lm_head(self.norm(x))  # (..., V), or this rank's (..., ceil(V/N))
        if self.tp is not None:
            logits = self.tp.all_gather_last(logits)[..., : self.cfg.vocab_size]
        cap = self.cfg.final_softcap
        return logits if cap is None else torch.tanh(logits / cap) * cap

    def _blocks(self, x, ropes, masks, cache, start, backend, probe):
        probes: list[AttnProbe | None] = []  # by layer
        keep = probe if callable(probe) else None
        for i, block in enumerate(self.layers):
            lm = masks[block.kind]
            rope = ropes[block.rope] if block.rope is not None else None
            x, kept = block.step(x, rope, lm, cache, start, backend, bool(probe))
            if kept is not None:
                if self.tp is not None:  # every head, as one process would see them: (B, H, T, S)
                    kept = type(kept)(*(self.tp.all_gather_last(t.movedim(1, -1)).movedim(-1, 1)
                                        for t in (kept.scores, kept.weights)))
                probes.append(keep(i, kept) if keep is not None else kept)
        return x, probes

    def decode_step(
        self,
        ids: Tensor,  # (B, 1)
        positions: Tensor,  # (B, 1)
        slot: Tensor,  # (1,) the cache slot of the new token
        cache: KVCache,
        backend: str = "sdpa",
        filled: Tensor | None = None,  # (n,): its length n (symbolic under compile) = the slots read
    ) -> Tensor:
        """One decode step with static shapes, for torch.compile and CUDA graphs: the slot
        is a tensor, the cache is written with index_copy_, and attention reads all S_max
        slots through a mask (slots after the new token are masked as future ones), or with
        ``filled`` the first n (one graph for every n when its length is marked dynamic).
        Returns logits (B, V). The caller keeps cache.length."""
        b = ids.shape[0]
        # (B, C), not (B, 1, C): at batch 1 inductor hands each product a (1, C) row with a
        # zero stride that MKL's gemm path copies first (3 copies a layer, ~0.8 ms a step)
        x = self._embed(ids, positions)[:, 0]  # (B, C)
        ropes = self._ropes(positions, x.dtype)
        n = cache.max_len if filled is None else filled.shape[0]
        kv_valid = cache.valid[:, :n] if cache.has_padding else None
        masks = {kind: static_layer_mask(window=window, chunk=chunk, batch=b, slot=slot, kv_len=n,
                                         kv_valid=kv_valid)
                 for kind, (window, chunk) in self.mask_kinds.items()}
        x, _ = self._blocks(x, ropes, masks, cache, slot, backend, False)
        return self._logits(x)  # (B, V)

    @staticmethod
    def positions(kv_valid: Tensor | None, start: int, t: int, b: int, device: torch.device) -> Tensor:
        """Position ids (B, T) of the new tokens: count of real tokens before each slot,
        so a left-padded row starts at position 0 at its first real token."""
        if kv_valid is None:
            return torch.arange(start, start + t, device=device).expand(b, t)
        return slot_positions(kv_valid[:, : start + t])[:, start:]
