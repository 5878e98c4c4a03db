"""Attention masks: index predicates, the grids built from them, and the mask one layer applies.

Letters: B batch, H query heads, Hkv key/value heads, G = H // Hkv, T queries,
S keys, D head dim.

A mask is built from index predicates ``(b, h, q, kv) -> bool`` evaluated on
broadcast index tensors, never by looping over positions. ``q`` and ``kv`` are
absolute cache slots, so one builder serves a prefill (queries 0..T-1) and a cached
decode step (queries S-T..S-1) alike: only the offsets change. With left padding a
row's real tokens occupy contiguous slots, so distances in slot space are the
distances between positions and causal/window predicates stay correct.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from attncli.errors import BadInputError

Tensor = torch.Tensor
MaskFn = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]

MASK_KINDS = ("causal", "sliding", "padding", "full", "chunked")


# ---- predicates ----
def causal() -> MaskFn:
    return lambda b, h, q, kv: kv <= q


def sliding_window(window: int) -> MaskFn:
    """Keys strictly less than ``window`` slots behind the query: ``window`` keys,
    the query's own included (the convention of Mistral and transformers)."""
    if isinstance(window, int) and window < 1:
        raise BadInputError(f"window must be >= 1, got {window}")
    return lambda b, h, q, kv: kv > q - window


def padding(kv_valid: Tensor) -> MaskFn:
    """``kv_valid`` (B, S) is True where a key slot holds a real token."""
    return lambda b, h, q, kv: kv_valid[b, kv]


def document(doc_ids: Tensor) -> MaskFn:
    """``doc_ids`` (B, S): the document each slot belongs to (packed sequences): keys of the
    query's own document only."""
    return lambda b, h, q, kv: doc_ids[b, q] == doc_ids[b, kv]


def chunked(chunk: int, slot_pos: Tensor | None = None) -> MaskFn:
    """Keys in the query's own chunk of ``chunk`` positions (Llama 4's chunked attention).
    ``slot_pos`` (B, S): each slot's position (left padding subtracted); None: slot = position."""
    if isinstance(chunk, int) and chunk < 1:
        raise BadInputError(f"chunk must be >= 1, got {chunk}")
    if slot_pos is None:
        return lambda b, h, q, kv: q // chunk == kv // chunk
    return lambda b, h, q, kv: slot_pos[b, q] // chunk == slot_pos[b, kv] // chunk


def slot_positions(kv_valid: Tensor) -> Tensor:
    """(B, S) bool of real slots -> the position each slot holds (left padding at 0)."""
    return (kv_valid.long().cumsum(-1) - 1).clamp(min=0)


def full() -> MaskFn:
    return lambda b, h, q, kv: torch.ones((), dtype=torch.bool, device=q.device).expand(q.shape)


def and_masks(*fns: MaskFn) -> MaskFn:
    def both(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        out = fns[0](b, h, q, kv)
        for fn in fns[1:]:
            out = out & fn(b, h, q, kv)
        return out

    return both


def or_masks(*fns: MaskFn) -> MaskFn:
    def either(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        out = fns[0](b, h, q, kv)
        for fn in fns[1:]:
            out = out | fn(b, h, q, kv)
        return out

    return either


def build_mask(
    fn: MaskFn,
    *,
    batch: int,
    q_len: int,
    kv_len: int,
    q_offset: int = 0,
    kv_offset: int = 0,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Evaluate ``fn`` on the grid: returns bool (B, 1, T, S); True = may attend."""
    b = torch.arange(batch, device=device).view(batch, 1, 1, 1)
    h = torch.zeros(1, 1, 1, 1, dtype=torch.long, device=device)
    q = (torch.arange(q_len, device=device) + q_offset).view(1, 1, q_len, 1)
    kv = (torch.arange(kv_len, device=device) + kv_offset).view(1, 1, 1, kv_len)
    return fn(b, h, q, kv).expand(batch, 1, q_len, kv_len)


def mask_fn(kind: str, *, window: int | None = None, kv_valid: Tensor | None = None,
            chunk: int | None = None, slot_pos: Tensor | None = None) -> MaskFn:
    """The predicate of a named mask kind; padding is added whenever ``kv_valid`` is given."""
    if kind not in MASK_KINDS:
        raise BadInputError(f"unknown mask kind {kind!r}; known: {', '.join(MASK_KINDS)}")
    fns = [full()] if kind == "full" else [causal()]
    if kind == "sliding":
        if window is None:
            raise BadInputError("a sliding mask needs a window (--window W)")
        fns.append(sliding_window(window))
    if kind == "chunked":
        if chunk is None:
            raise BadInputError("a chunked mask needs a chunk size (--chunk C)")
        fns.append(chunked(chunk, slot_pos))
    if kind == "padding" and kv_valid is None:
        raise BadInputError("a padding mask needs padded prompts (give two or more of different lengths)")
    if kv_valid is not None:
        fns.append(padding(kv_valid))
    return and_masks(*fns)


@dataclass(frozen=True)
class MaskSpec:
    """The parameters of a layer's mask (causal always): what FlexAttention rebuilds it from."""

    window: int | None = None
    chunk: int | None = None
    documents: Tensor | None = None  # (B, S)
    kv_valid: Tensor | None = None  # (B, S)
    slot_pos: Tensor | None = None  # (B, S), for chunks under left padding
    q_offset: int = 0


@dataclass(frozen=True)
class LayerMask:
    """What one attention call needs: an explicit bool mask, or None with is_causal; and the
    parameters it was built from (queries from slot ``spec.q_offset``)."""

    mask: Tensor | None  # (B, 1, T, S - kv_start) bool
    is_causal: bool
    spec: MaskSpec = MaskSpec()
    kv_start: int = 0  # keys before this slot are outside every query's window: the call never reads them
    kv_stop: int | None = None  # keys from this slot on are not read (a compiled CPU step: the filled ones only)
    blocks: int | None = None  # a long windowed call: SDPA runs it this many queries at a time, no (T, S) mask


# A windowed call over at least this many windows of queries runs in blocks of W queries, each
# over the 2W - 1 keys its queries can see: T x 2W scores, not T x T.
BLOCKED_WINDOWS = 4


def layer_mask(
    *,
    window: int | None,
    batch: int,
    q_len: int,
    q_offset: int,
    kv_len: int,
    kv_valid: Tensor | None,
    device: torch.device | str,
    need_explicit: bool = False,
    dense: bool = True,
    chunk: int | None = None,
    documents: Tensor | None = None,
    slot_pos: Tensor | None = None,
) -> LayerMask:
    """The mask a decoder layer applies: causal, within ``window`` if given, within the
    query's chunk if ``chunk`` is given (``slot_pos``: positions per slot, for left padding),
    within the query's document if ``documents`` (B, S) is given, and over real keys only if
    ``kv_valid`` is given.

    SDPA gets no mask and ``is_causal=True`` only when that is exactly right: queries
    start at slot 0 and cover all keys, no padding, and the window (if any) hides nothing.

    A windowed call over a cache (dense, nothing kept for inspection) reads only the keys
    some query can see: from slot ``q_offset - window + 1`` on (``kv_start``). A decode
    step then costs W keys, not the whole cache, and with no padding needs no mask at all
    (SDPA's unmasked kernels: flash on a GPU).
    """
    window_hides = window is not None and window < kv_len
    chunk_hides = chunk is not None and chunk < kv_len
    spec = MaskSpec(window if window_hides else None, chunk if chunk_hides else None, documents,
                    None if kv_valid is None else kv_valid[:, :kv_len], slot_pos, q_offset)
    kv_start = max(0, q_offset - window + 1) if window_hides and dense and not need_explicit else 0
    window_hides = window_hides and window < kv_len - kv_start
    plain = kv_valid is None and documents is None and not window_hides and not chunk_hides
    if not need_explicit and plain and q_offset + q_len == kv_len:
        if q_offset == 0:
            return LayerMask(None, True, spec)  # a prefill: plain causal
        if q_len == 1:
            return LayerMask(None, False, spec, kv_start)  # one query in the last slot sees every key read
    if not dense:  # FlexAttention rebuilds the mask from the spec, block by block: no (T, S) tensor
        return LayerMask(None, False, spec)
    if window_hides and not need_explicit and q_len >= BLOCKED_WINDOWS * window:
        return LayerMask(None, False, spec, kv_start, None, window)  # backends.sdpa_attention's blocks
    mask = build_mask(spec_fn(spec), batch=batch, q_len=q_len, kv_len=kv_len - kv_start, q_offset=q_offset,
                      kv_offset=kv_start, device=device)
    return LayerMask(mask, False, spec, kv_start)


def spec_batch(spec: MaskSpec) -> int:
    """The rows a spec's per-row parts (padding, documents) hold; 1 when it has none (a mask
    that broadcasts over the batch)."""
    rows = next((t for t in (spec.kv_valid, spec.documents) if t is not None), None)
    return 1 if rows is None else rows.shape[0]


def spec_fn(spec: MaskSpec) -> MaskFn:
    """The predicate of a layer's mask: causal, and each part the spec has."""
    fns = [causal()]
    if spec.window is not None:
        fns.append(sliding_window(spec.window))
    if spec.chunk is not None:
        fns.append(chunked(spec.chunk, spec.slot_pos))
    if spec.documents is not None:
        fns.append(document(spec.documents))
    if spec.kv_valid is not None:
        fns.append(padding(spec.kv_valid))
    return and_masks(*fns)


# A module-level instance: torch.compile can read one, but not build a dataclass default
# inside the compiled step (it broke the step into four graphs).
_STATIC_SPEC = MaskSpec()


def static_layer_mask(
    *, window: int | None, batch: int, slot: Tensor, kv_len: int, kv_valid: Tensor | None,
    chunk: int | None = None,
) -> LayerMask:
    """The mask of one query at cache slot ``slot`` (a (1,) tensor, so that a compiled step
    does not specialise on it) over the first ``kv_len`` slots (all of them, or, symbolic,
    those filled): causal, windowed, chunked, padded."""
    fns = [causal()]
    if window is not None:
        fns.append(sliding_window(window))
    if chunk is not None:
        fns.append(chunked(chunk, slot_positions(kv_valid) if kv_valid is not None else None))
    if kv_valid is not None:
        fns.append(padding(kv_valid))
    mask = build_mask(and_masks(*fns), batch=batch, q_len=1, kv_len=kv_len, q_offset=slot, device=slot.device)
    return LayerMask(mask, False, _STATIC_SPEC, 0, kv_len)


def explicit(lm: LayerMask, q_len: int, kv_len: int, device: torch.device | str) -> Tensor:
    """The bool mask (B|1, 1, T, S) behind a LayerMask, materialising the implicit ones:
    causal (queries are the last T of S slots), a blocked windowed call's (from its spec),
    or, with neither, every key visible."""
    if lm.mask is not None:
        return lm.mask
    if lm.blocks:
        return build_mask(spec_fn(lm.spec), batch=spec_batch(lm.spec), q_len=q_len, kv_len=kv_len, q_offset=lm.spec.q_offset,
                          kv_offset=lm.kv_start, device=device)
    fn = causal() if lm.is_causal else full()
    return build_mask(fn, batch=1, q_len=q_len, kv_len=kv_len, q_offset=kv_len - q_len, device=device)
