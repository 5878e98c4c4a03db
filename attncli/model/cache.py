"""Static KV cache: preallocated per layer and written by slot, never concatenated.

Letters: B batch, Hkv key/value heads, S_max capacity in slots, D head dim.
Slot i of every row holds the token at sequence index i of that row's left-padded
input; ``valid`` marks the slots that hold real tokens (False at left padding).
"""

from __future__ import annotations

import torch

from attncli.errors import BadInputError
from attncli.model.config import ModelConfig

Tensor = torch.Tensor


class KVCache:
    def __init__(
        self,
        cfg: ModelConfig,
        *,
        batch: int,
        max_len: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ):
        shape = (batch, cfg.num_kv_heads, max_len, cfg.head_dim)  # (B, Hkv, S_max, D)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.num_layers)]
        self.valid = torch.ones(batch, max_len, dtype=torch.bool, device=device)  # (B, S_max)
        self.has_padding = False
        self.batch, self.max_len = batch, max_len
        self.length = 0  # slots filled so far

    @staticmethod
    def bytes_per_token(cfg: ModelConfig, dtype: torch.dtype) -> int:
        """Bytes one token adds to the cache across all layers (K and V), batch 1."""
        itemsize = torch.empty((), dtype=dtype).element_size()
        return 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * itemsize

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.k, *self.v))

    def reserve(self, t: int, attention_mask: Tensor | None) -> int:
        """Claim ``t`` new slots for the next forward; returns the first one.
        ``attention_mask`` (B, t) marks which of the new tokens are real."""
        start = self.length
        if start + t > self.max_len:
            raise BadInputError(f"KV cache holds {self.max_len} tokens; {start + t} were asked for")
        if attention_mask is not None:
            self.valid[:, start : start + t] = attention_mask.bool()
            self.has_padding = True
        return start

    def write(self, layer: int, k_new: Tensor, v_new: Tensor, start: int | Tensor,
              whole: bool = False) -> tuple[Tensor, Tensor]:
        """Store (B, Hkv, T, D) at slots start..start+T-1; return the filled prefix (views), or
        with ``whole`` every slot (FlexAttention: static shapes, the mask hides the rest).
        With ``start`` a (T,) tensor of slots (a compiled decode step): index_copy_ there
        and return every slot, so that shapes never change."""
        if isinstance(start, Tensor):
            self.k[layer].index_copy_(2, start, k_new)
            self.v[layer].index_copy_(2, start, v_new)
            return self.k[layer], self.v[layer]
        end = start + k_new.shape[2]
        self.k[layer][:, :, start:end] = k_new
        self.v[layer][:, :, start:end] = v_new
        if whole:
            return self.k[layer], self.v[layer]
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def commit(self, t: int) -> None:
        self.length += t

    def reset(self) -> None:
        """Empty, for a new sequence of the same shape. Old keys and values stay in the
        slots: every slot at or after ``length`` is masked as a future one until written."""
        with torch.inference_mode():  # a cache made under inference mode is written under it only
            self.valid.fill_(True)
        self.has_padding = False
        self.length = 0

    @property
    def tensors(self) -> list[Tensor]:
        """Every tensor a step reads or writes in place: K and V per layer, the valid slots."""
        return [*self.k, *self.v, self.valid]
