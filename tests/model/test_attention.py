"""Masks element by element against a plain-loop reference, row sums, and the
eager backend's guarantees (exact zeros, no NaN) in every dtype."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attncli.model.attention import (
    LayerMask, and_masks, build_mask, causal, eager_attention, explicit, full, layer_mask, mask_fn,
    or_masks, padding, sdpa_attention, sliding_window,
)
from attncli.errors import BadInputError


def reference(t, s, q_offset, window=None, valid=None):
    """(B, T, S) by loops: query slot q_offset+i sees key j iff j <= q, within the
    window (q - j < window), and key j is a real token."""
    b = 1 if valid is None else len(valid)
    out = torch.zeros(b, t, s, dtype=torch.bool)
    for r in range(b):
        for i in range(t):
            q = q_offset + i
            for j in range(s):
                ok = j <= q and (window is None or q - j < window) and (valid is None or valid[r][j])
                out[r, i, j] = ok
    return out


def test_causal_grid():
    m = build_mask(causal(), batch=1, q_len=5, kv_len=5)[0, 0]
    assert m.tolist() == [[j <= i for j in range(5)] for i in range(5)]
    assert m.sum(-1).tolist() == [1, 2, 3, 4, 5]


def test_sliding_window_row_sums_and_edge():
    w = 3
    m = build_mask(and_masks(causal(), sliding_window(w)), batch=1, q_len=8, kv_len=8)[0, 0]
    assert m.sum(-1).tolist() == [1, 2, 3, 3, 3, 3, 3, 3]
    # the off-by-one users hit: distance W-1 visible, distance W not
    assert m[5, 5 - (w - 1)] and not m[5, 5 - w]


def test_decode_rows_are_the_last_rows_of_the_prefill_mask():
    """With an offset, one builder serves cached decode: its rows equal the prefill mask's last rows."""
    fn = and_masks(causal(), sliding_window(4))
    whole = build_mask(fn, batch=1, q_len=10, kv_len=10)
    step = build_mask(fn, batch=1, q_len=2, kv_len=10, q_offset=8)
    assert torch.equal(step, whole[:, :, 8:])


def test_padding_mask_never_sees_a_pad():
    valid = torch.tensor([[True] * 6, [False, False, True, True, True, True]])
    m = build_mask(and_masks(causal(), padding(valid)), batch=2, q_len=6, kv_len=6)
    assert torch.equal(m[:, 0], reference(6, 6, 0, valid=valid.tolist()))
    assert not m[1, 0, :, :2].any()
    assert m[1, 0].sum(-1).tolist() == [0, 0, 1, 2, 3, 4]  # pad query rows: fully masked


@settings(max_examples=60, deadline=None)
@given(
    t=st.integers(1, 7), extra=st.integers(0, 6), window=st.one_of(st.none(), st.integers(1, 8)),
    pad=st.lists(st.integers(0, 5), min_size=1, max_size=3), use_pad=st.booleans(),
)
def test_layer_mask_equals_loop_reference(t, extra, window, pad, use_pad):
    s = t + extra  # queries are the last t of s slots (a cached step when extra > 0)
    valid = None
    if use_pad:
        valid = torch.tensor([[j >= min(p, s - 1) for j in range(s)] for p in pad])
    b = 1 if valid is None else len(pad)
    lm = layer_mask(window=window, batch=b, q_len=t, q_offset=extra, kv_len=s, kv_valid=valid, device="cpu")
    got = explicit(lm, t, s - lm.kv_start, "cpu")[:, 0]
    want = reference(t, s, extra, window, None if valid is None else valid.tolist())
    assert not want[..., : lm.kv_start].any()  # the keys a windowed call skips are seen by no query
    assert torch.equal(got.expand_as(want[..., lm.kv_start :]), want[..., lm.kv_start :])


def test_is_causal_only_when_truly_valid():
    kw = dict(batch=1, device="cpu")
    assert layer_mask(window=None, q_len=4, q_offset=0, kv_len=4, kv_valid=None, **kw).is_causal
    assert layer_mask(window=8, q_len=4, q_offset=0, kv_len=4, kv_valid=None, **kw).is_causal  # window hides nothing
    assert not layer_mask(window=3, q_len=4, q_offset=0, kv_len=4, kv_valid=None, **kw).is_causal
    decode = layer_mask(window=None, q_len=1, q_offset=3, kv_len=4, kv_valid=None, **kw)
    assert decode.mask is None and not decode.is_causal  # the last slot sees every key
    assert torch.equal(explicit(decode, 1, 4, "cpu"), torch.ones(1, 1, 1, 4, dtype=torch.bool))
    windowed = layer_mask(window=3, q_len=1, q_offset=3, kv_len=4, kv_valid=None, **kw)
    assert windowed.mask is None and windowed.kv_start == 1  # reads the 3 keys it sees, unmasked
    kept = layer_mask(window=3, q_len=1, q_offset=3, kv_len=4, kv_valid=None, need_explicit=True, **kw)
    assert kept.kv_start == 0 and kept.mask is not None  # inspection keeps every key
    assert layer_mask(window=None, q_len=2, q_offset=2, kv_len=4, kv_valid=None, **kw).mask is not None
    assert not layer_mask(window=None, q_len=4, q_offset=0, kv_len=4, kv_valid=torch.ones(1, 4, dtype=torch.bool), **kw).is_causal


def test_mask_kinds_and_combinators():
    assert build_mask(full(), batch=1, q_len=3, kv_len=3).all()
    both = or_masks(causal(), lambda b, h, q, kv: kv == q + 1)
    assert build_mask(both, batch=1, q_len=3, kv_len=3)[0, 0].sum().item() == 6 + 2
    assert torch.equal(build_mask(mask_fn("sliding", window=2), batch=1, q_len=4, kv_len=4)[0, 0],
                       reference(4, 4, 0, window=2)[0])
    with pytest.raises(BadInputError, match="window"):
        mask_fn("sliding")
    with pytest.raises(BadInputError, match="window must be >= 1"):
        sliding_window(0)
    with pytest.raises(BadInputError, match="unknown mask kind"):
        mask_fn("diagonal")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_eager_masked_weights_exactly_zero_and_no_nan(dtype):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 5, 8, generator=g).to(dtype)
    k = torch.randn(2, 2, 5, 8, generator=g).to(dtype)
    v = torch.randn(2, 2, 5, 8, generator=g).to(dtype)
    valid = torch.tensor([[True] * 5, [False, False, True, True, True]])
    lm = layer_mask(window=None, batch=2, q_len=5, q_offset=0, kv_len=5, kv_valid=valid, device="cpu")
    out, probe = eager_attention(q, k, v, lm, scale=8**-0.5, probe=True)
    mask = lm.mask.expand(2, 4, 5, 5)
    assert probe.weights.dtype == dtype
    assert (probe.weights[~mask] == 0).all()
    assert torch.isinf(probe.scores[~mask]).all() and (probe.scores[~mask] < 0).all()
    assert torch.isfinite(out).all()
    assert (probe.weights[1, :, :2] == 0).all() and (out[1, :, :2] == 0).all()  # fully masked rows: zeros
    row_sums = probe.weights.float().sum(-1)
    torch.testing.assert_close(row_sums[0], torch.ones_like(row_sums[0]), atol=1e-2, rtol=0)


def test_eager_equals_sdpa_with_gqa_window_and_offset():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 6, 3, 16, generator=g)
    k = torch.randn(2, 2, 9, 16, generator=g)
    v = torch.randn(2, 2, 9, 16, generator=g)
    valid = torch.ones(2, 9, dtype=torch.bool)
    valid[1, :3] = False
    lm = layer_mask(window=4, batch=2, q_len=3, q_offset=6, kv_len=9, kv_valid=valid, device="cpu")
    eager, _ = eager_attention(q, k, v, lm, scale=0.25)
    torch.testing.assert_close(eager, sdpa_attention(q, k, v, lm, scale=0.25))


def test_sdpa_is_causal_path_equals_explicit_mask():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 2, 6, 8, generator=g) for _ in range(3))
    implicit = LayerMask(None, True)
    assert implicit.mask is None
    torch.testing.assert_close(sdpa_attention(q, k, v, implicit, scale=0.3),
                               sdpa_attention(q, k, v, LayerMask(explicit(implicit, 6, 6, "cpu"), False), scale=0.3))
