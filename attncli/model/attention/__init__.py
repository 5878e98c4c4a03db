"""Attention: masks as index predicates (masks.py) and the backends that apply them
(backends.py). Both are re-exported here, so callers write ``attention.causal()`` or
``attention.eager_attention(...)`` without caring which file holds what."""

from attncli.model.attention.backends import (
    BACKENDS, AttnProbe, check_backend, eager_attention, sdpa_attention,
)
from attncli.model.attention.masks import (
    MASK_KINDS, LayerMask, MaskFn, and_masks, build_mask, causal, explicit, full, layer_mask, mask_fn,
    or_masks, padding, sliding_window, static_layer_mask,
)

__all__ = [
    "BACKENDS", "MASK_KINDS", "AttnProbe", "LayerMask", "MaskFn", "and_masks", "build_mask", "causal",
    "check_backend", "eager_attention", "explicit", "full", "layer_mask", "mask_fn", "or_masks", "padding",
    "sdpa_attention", "sliding_window", "static_layer_mask",
]
