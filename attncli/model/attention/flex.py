"""FlexAttention: the same masks as programs. A layer's mask predicate is FlexAttention's
``mask_mod``; the blocks of the score matrix that it leaves wholly empty are skipped, the
wholly visible ones computed without evaluating it, and only the rest evaluate it inside.
Soft-capping is a ``score_mod``. The kernel is compiled (on the CPU too, where eager flex
would materialise the scores): one compile per (B, H, T, S, D) shape.

Block masks come from the layer's ``MaskSpec`` (the parts the other backends build their
masks from): ``spec_states`` decides each block from the parts' bounds without a (T, S)
tensor; ``block_states`` counts a dense mask exactly (what ``inspect-mask`` shows, and the
fallback for ids out of order). A decode step (one query) reuses one block mask per bucket of
``BLOCK`` slots: the blocks any query of the bucket could see, all evaluated with the
predicate (a block full for one query of the bucket may hide keys from another).

Letters: B batch, H query heads, Hkv key/value heads, T queries, S keys, D head dim, n blocks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from attncli.model.attention.masks import LayerMask, MaskSpec, build_mask, spec_fn

Tensor = torch.Tensor

BLOCK = 128  # FlexAttention's default block (queries and keys)


# ---- block states: what a kernel with this block size may skip ----
@dataclass(frozen=True)
class BlockStates:
    """Per (B, query block, key block): ``full`` (every entry visible), ``partial`` (some),
    the rest ``empty`` (none: skipped). Over a (B, T, S) bool mask cut into blocks of ``size``."""

    full: Tensor  # (B, nQ, nKV) bool
    partial: Tensor  # (B, nQ, nKV) bool
    size: int
    inside: Tensor  # (nQ, nKV) entries of each block inside the T x S matrix (edge blocks hold fewer)

    @property
    def empty(self) -> Tensor:
        return ~(self.full | self.partial)

    def summary(self) -> dict:
        """Counts over the batch, and the share of the T x S matrix a kernel never computes
        (the entries of empty blocks)."""
        b, nq, nkv = self.full.shape
        skipped = (self.empty * self.inside).sum().item()
        total_blocks = b * nq * nkv
        return {"size": self.size, "full": int(self.full.sum()), "partial": int(self.partial.sum()),
                "empty": int(total_blocks - self.full.sum() - self.partial.sum()),
                "skipped_fraction": skipped / (b * self.inside.sum().item())}


def block_states(mask: Tensor, size: int = BLOCK) -> BlockStates:
    """mask (B, T, S) or (B, 1, T, S) bool -> per-block states; edges padded as masked."""
    if mask.dim() == 4:
        mask = mask[:, 0]
    b, t, s = mask.shape
    nq, nkv = -(-t // size), -(-s // size)
    padded = torch.zeros(b, nq * size, nkv * size, dtype=torch.bool, device=mask.device)
    padded[:, :t, :s] = mask
    tiles = padded.view(b, nq, size, nkv, size)
    seen = tiles.sum(dim=(2, 4))  # (B, nQ, nKV) visible entries per block
    # a block is full when every entry inside the matrix is visible (edge blocks are smaller)
    rows = torch.full((nq,), size, device=mask.device)
    rows[-1] = t - (nq - 1) * size
    cols = torch.full((nkv,), size, device=mask.device)
    cols[-1] = s - (nkv - 1) * size
    inside = rows[:, None] * cols[None, :]  # (nQ, nKV)
    full = seen == inside
    partial = (seen > 0) & ~full
    return BlockStates(full, partial, size, inside)


def spec_states(spec: MaskSpec, b: int, t: int, s: int, q_offset: int, size: int = BLOCK) -> BlockStates:
    """Block states from the mask's parts, block by block, without the dense (T, S) mask: each
    part is monotone in the slots (causal, window; chunks and documents whose ids never
    decrease; padding depends on the key alone), so a block's corners decide whether the part
    hides all of it, none, or some. The parts combine as the mask does: a block is full when
    every part leaves it whole, empty when any part hides it. O(blocks), not O(T x S): what
    keeps flex's cost linear in T under a window."""
    nq, nkv = -(-t // size), -(-s // size)
    dev = spec.kv_valid.device if spec.kv_valid is not None else "cpu"
    q_lo = q_offset + torch.arange(nq, device=dev) * size  # (nQ,) absolute slots
    q_hi = torch.clamp(q_lo + size, max=q_offset + t) - 1
    kv_lo = torch.arange(nkv, device=dev) * size  # (nKV,)
    kv_hi = torch.clamp(kv_lo + size, max=s) - 1
    full = (kv_hi[None, :] <= q_lo[:, None])[None].expand(b, nq, nkv)  # causal
    empty = (kv_lo[None, :] > q_hi[:, None])[None].expand(b, nq, nkv)
    if spec.window is not None:
        w = spec.window
        full = full & ((q_hi[:, None] - kv_lo[None, :]) < w)
        empty = empty | ((q_lo[:, None] - kv_hi[None, :]) >= w)
    groups = [spec.documents] if spec.documents is not None else []
    if spec.chunk is not None:  # chunk ids from positions (slot = position without padding)
        pos = spec.slot_pos if spec.slot_pos is not None else torch.arange(s, device=dev)[None].expand(b, s)
        groups.append(pos // spec.chunk)
    for ids in groups:
        f, e = _same_group(ids, q_lo, q_hi, kv_lo, kv_hi)
        full, empty = full & f, empty | e
    if spec.kv_valid is not None:  # padding: a key's validity alone
        padded = torch.zeros(b, nkv * size, dtype=torch.bool, device=dev)
        padded[:, :s] = spec.kv_valid
        seen = padded.view(b, nkv, size).sum(-1)  # valid keys per key block
        width = (kv_hi - kv_lo + 1)[None]
        full = full & (seen == width)[:, None, :]
        empty = empty | (seen == 0)[:, None, :]
    rows = (q_hi - q_lo + 1)[:, None]
    inside = rows * (kv_hi - kv_lo + 1)[None, :]
    return BlockStates(full & ~empty, ~full & ~empty, size, inside)


def _same_group(ids: Tensor, q_lo: Tensor, q_hi: Tensor, kv_lo: Tensor, kv_hi: Tensor) -> tuple[Tensor, Tensor]:
    """For group ids (B, S) that never decrease along the slots (documents, chunks): blocks
    whose queries and keys all share one group (full), and blocks whose groups cannot meet."""
    gq_lo, gq_hi = ids[:, q_lo], ids[:, q_hi]  # (B, nQ)
    gk_lo, gk_hi = ids[:, kv_lo], ids[:, kv_hi]  # (B, nKV)
    full = ((gq_lo == gq_hi)[:, :, None] & (gk_lo == gk_hi)[:, None, :] & (gq_lo[:, :, None] == gk_lo[:, None, :]))
    empty = (gk_hi[:, None, :] < gq_lo[:, :, None]) | (gk_lo[:, None, :] > gq_hi[:, :, None])
    return full, empty


def _monotone(ids: Tensor | None) -> bool:
    return ids is None or bool((ids[:, 1:] >= ids[:, :-1]).all())


def _indices(chosen: Tensor) -> tuple[Tensor, Tensor]:
    """(B, nQ, nKV) bool -> counts (B, 1, nQ) and indices (B, 1, nQ, nKV), chosen first."""
    counts = chosen.sum(-1, dtype=torch.int32)[:, None]
    order = torch.argsort((~chosen).to(torch.int8), dim=-1, stable=True).to(torch.int32)[:, None]
    return counts, order


def block_mask_from(states: BlockStates, mask_mod, t: int, s: int, *, all_partial: bool = False):
    from torch.nn.attention.flex_attention import BlockMask

    partial = states.partial | states.full if all_partial else states.partial
    kv_num, kv_idx = _indices(partial)
    if all_partial:
        full_num = full_idx = None
    else:
        full_num, full_idx = _indices(states.full)
    return BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=states.size, mask_mod=mask_mod,
                                    seq_lengths=(t, s))


# ---- the backend ----
_NEVER = 2**30  # a window or chunk no sequence reaches: the part is off


def _mask_mod(spec: MaskSpec, b: int, s: int, offset: Tensor, device):
    """The layer's predicate (masks.spec_fn) in one fixed shape: every part present, those
    the layer lacks given neutral values, every parameter a tensor. The compiled kernel then
    guards on tensor shapes alone, not on which parts a layer has: one compile per shape,
    whatever the mask."""
    slots = torch.arange(s, device=device)
    canon = spec_fn(MaskSpec(
        window=torch.tensor(spec.window or _NEVER, device=device),
        chunk=torch.tensor(spec.chunk or _NEVER, device=device),
        documents=spec.documents if spec.documents is not None else torch.zeros(b, s, dtype=torch.long, device=device),
        kv_valid=spec.kv_valid if spec.kv_valid is not None else torch.ones(b, s, dtype=torch.bool, device=device),
        slot_pos=spec.slot_pos if spec.slot_pos is not None else slots.expand(b, s),
    ))

    def mask_mod(b, h, q, kv):
        return canon(b, h, q + offset, kv)

    return mask_mod


_SCORE_MODS: dict = {}


def _softcap_mod(cap: float):
    if cap not in _SCORE_MODS:
        def score_mod(score, b, h, q, kv):
            return torch.tanh(score / cap) * cap

        _SCORE_MODS[cap] = score_mod
    return _SCORE_MODS[cap]


class FlexRunner:
    """Compiled flex_attention and the block masks of the current sequence, kept per model
    (one per layer kind and shape; decode per bucket of BLOCK slots). ``compile_s`` adds up
    the time of calls that compiled a new shape, so a caller can report it apart."""

    def __init__(self):
        self._fn = None
        self._masks: dict = {}
        self._shapes: set = set()
        self.compile_s = 0.0

    def reset(self) -> None:
        """A new sequence (a prefill from slot 0): its padding and documents differ."""
        self._masks.clear()

    def block_mask(self, lm: LayerMask, kind: str, b: int, t: int, s: int, device):
        offset = lm.spec.q_offset
        decode = t == 1
        # decode: one block mask per bucket of BLOCK slots, the blocks any of its queries sees
        # (one query block), every one evaluated with the predicate at the live offset
        start = offset // BLOCK * BLOCK if decode else offset
        key = (kind, b, t, s, start)
        hit = self._masks.get(key)
        if hit is None:
            states = self._states(lm, b, min(BLOCK, s - start) if decode else t, s, start, device)
            off = torch.tensor(offset, device=device)
            hit = (block_mask_from(states, _mask_mod(lm.spec, b, s, off, device), t, s, all_partial=decode), off)
            self._masks[key] = hit
        hit[1].fill_(offset)
        return hit[0]

    @staticmethod
    def _states(lm: LayerMask, b: int, t: int, s: int, offset: int, device) -> BlockStates:
        spec = lm.spec
        if _monotone(spec.documents) and _monotone(spec.slot_pos):
            return spec_states(spec, b, t, s, offset)
        dense = build_mask(spec_fn(spec), batch=b, q_len=t, kv_len=s, q_offset=offset, device=device)
        return block_states(dense)  # ids out of order: count from the dense mask

    def attend(self, q: Tensor, k: Tensor, v: Tensor, lm: LayerMask, kind: str, *, scale: float,
               softcap: float | None) -> Tensor:
        """q (B, H, T, D), k/v (B, Hkv, S, D) -> (B, H, T, D)."""
        if self._fn is None:
            from torch.nn.attention.flex_attention import flex_attention

            self._fn = torch.compile(flex_attention, dynamic=False)
        b, _, t, _ = q.shape
        s = k.shape[2]
        bm = self.block_mask(lm, kind, b, t, s, q.device)
        shape = (tuple(q.shape), tuple(k.shape), q.dtype, softcap)
        first = shape not in self._shapes
        started = time.perf_counter()
        # past the recompile limit dynamo would quietly run flex unfused (the full score
        # matrix) while we report a compiled run: fail instead
        with torch._dynamo.config.patch(recompile_limit=64, fail_on_recompile_limit_hit=True):
            out = self._fn(q, k, v, block_mask=bm, score_mod=None if softcap is None else _softcap_mod(softcap),
                           scale=scale, enable_gqa=q.shape[1] != k.shape[1])
        if first:
            self._shapes.add(shape)
            self.compile_s += time.perf_counter() - started
        return out
