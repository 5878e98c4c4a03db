"""FlexAttention (--attn flex): the same logits as eager for every mask kind, in a prefill
and in cached decode steps, and block states that a brute-force count of the dense mask
confirms. Compiling flex on the CPU takes seconds per shape, so the variants here share
shapes (B 2, H 4, Hkv 2, D 8) and one test compiles them; the per-variant greedy runs are
marked slow."""

from __future__ import annotations

import pytest
import torch

from attncli.model.attention.flex import BLOCK, block_states
from attncli.model.attention.masks import and_masks, build_mask, causal, chunked, document, sliding_window
from attncli.model.build import build_model
from attncli.model.cache import KVCache
from attncli.model.config import ModelConfig
from hf_factory import VOCAB


def _batch(t=12, pad=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (2, t), generator=g)
    mask = torch.ones(2, t, dtype=torch.long)
    mask[1, :pad] = 0
    return ids, mask


def _chunked_model():
    cfg = ModelConfig(arch="llama", vocab_size=VOCAB, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                      intermediate_size=64, max_position_embeddings=64, layer_types=["chunked", "full"], chunk_size=4)
    torch.manual_seed(0)
    return build_model(cfg, device="cpu", dtype=torch.float32, random_weights=True)


def _assert_flex_matches_eager(model, ids, mask, **kw):
    with torch.no_grad():
        want = model(ids, attention_mask=mask, backend="eager", **kw).logits
        got = model(ids, attention_mask=mask, backend="flex", **kw).logits
    real = mask.bool() if mask is not None else torch.ones_like(ids, dtype=torch.bool)
    torch.testing.assert_close(got[real], want[real])


def _assert_cached_flex_matches_eager(model, cfg, ids, mask):
    with torch.no_grad():
        want = model(ids, attention_mask=mask, backend="eager").logits
        cache = KVCache(cfg, batch=2, max_len=16, dtype=torch.float32, device="cpu")
        got = [model(ids[:, :8], attention_mask=mask[:, :8], cache=cache, backend="flex").logits]
        for t in range(8, ids.shape[1]):
            got.append(model(ids[:, t:t + 1], attention_mask=mask[:, t:t + 1], cache=cache, backend="flex").logits)
    real = mask.bool()
    torch.testing.assert_close(torch.cat(got, 1)[real], want[real])


def test_flex_equals_eager_for_every_mask_kind(loaded):
    """causal + padding (llama), window (mistral, qwen2's sliding layers), soft-capped scores
    (gemma2), chunked layers, packed documents: prefill and cached decode past the window."""
    ids, mask = _batch()
    for name in ["llama", "mistral-window", "qwen2-sliding-layers", "gemma2"]:
        lm, _ = loaded(name)
        _assert_flex_matches_eager(lm.model, ids, mask)
        _assert_cached_flex_matches_eager(lm.model, lm.config, ids, mask)
    chunky = _chunked_model()
    _assert_flex_matches_eager(chunky, ids, mask)
    _assert_cached_flex_matches_eager(chunky, chunky.cfg, ids, mask)
    # three packed documents of 5, 4 and 3 tokens, positions restarting in each
    docs = torch.tensor([[0] * 5 + [1] * 4 + [2] * 3] * 2)
    pos = torch.tensor([list(range(5)) + list(range(4)) + list(range(3))] * 2)
    lm, _ = loaded("llama")
    _assert_flex_matches_eager(lm.model, ids, None, documents=docs, positions=pos)


def test_chunked_layers_match_a_model_that_only_sees_its_chunk():
    """Control for the chunked kind: with chunk 4, the last token of a 12-token sequence
    gives the logits of its own chunk alone in layer 0, so changing an earlier chunk's
    tokens changes the output only through layer 1 (full attention)."""
    model = _chunked_model()
    ids, _ = _batch()
    cut = model.cfg.with_(layer_types=["chunked", "chunked"])
    torch.manual_seed(0)
    only_chunks = build_model(cut, device="cpu", dtype=torch.float32, random_weights=True)
    other = ids.clone()
    other[:, :8] = (other[:, :8] + 1) % VOCAB  # the first two chunks
    with torch.no_grad():
        assert torch.equal(only_chunks(ids).logits[:, 8:], only_chunks(other).logits[:, 8:])
        assert not torch.allclose(model(ids).logits[:, 8:], model(other).logits[:, 8:])
        for backend in ("eager", "sdpa"):
            torch.testing.assert_close(model(ids, backend=backend).logits, model(ids, backend="eager").logits)


def _brute(mask, size):
    t, s = mask.shape
    counts = {"full": 0, "partial": 0, "empty": 0}
    skipped = 0
    for i in range(0, t, size):
        for j in range(0, s, size):
            tile = mask[i:i + size, j:j + size]
            if tile.all():
                counts["full"] += 1
            elif tile.any():
                counts["partial"] += 1
            else:
                counts["empty"] += 1
                skipped += tile.numel()  # the matrix's entries in a skipped block
    return counts, skipped / (t * s)


@pytest.mark.parametrize("t, size", [(256, 128), (300, 64), (100, 32), (7, 4)])
def test_block_states_equal_a_brute_force_count(t, size):
    q = torch.arange(t)[:, None]
    kv = torch.arange(t)[None, :]
    docs = (torch.arange(t) * 3 // t)[None]  # three documents
    pos = torch.arange(t)[None]
    for fn in [causal(), and_masks(causal(), sliding_window(max(t // 5, 1))), and_masks(causal(), chunked(max(t // 4, 1))),
               and_masks(causal(), document(docs)), and_masks(causal(), chunked(3, pos), sliding_window(5))]:
        mask = build_mask(fn, batch=1, q_len=t, kv_len=t)[0, 0]
        counts, skipped = _brute(mask, size)
        got = block_states(mask[None], size).summary()
        assert {k: got[k] for k in counts} == counts
        assert got["skipped_fraction"] == pytest.approx(skipped)
    assert (q >= kv).any()  # (the grid is non-trivial)


def test_the_kernel_block_is_128():
    assert BLOCK == 128


@pytest.mark.slow
@pytest.mark.parametrize("use_cache", [True])
def test_flex_greedy_tokens_equal_transformers(loaded, use_cache):
    from attncli.generate.loop import generate
    from hf_factory import VARIANTS, hf_greedy

    prompt, new = [5, 17, 42, 9, 77, 31], 10
    for name in VARIANTS:
        lm, ref = loaded(name)
        gen = generate(lm.model, [prompt], max_new_tokens=new, use_cache=use_cache, backend="flex")
        for _ in gen:
            pass
        assert [gen.rows[0].tokens] == hf_greedy(ref, [prompt], new, use_cache), name


def test_block_states_from_the_spec_equal_the_dense_count():
    """What flex builds its block masks from (the parts' monotone bounds, no dense mask)
    against the dense mask's exact count, over windows, chunks, documents, padding, offsets."""
    from attncli.model.attention.flex import spec_states
    from attncli.model.attention.masks import MaskSpec, spec_fn

    g = torch.Generator().manual_seed(0)
    for trial in range(40):
        b, s, size = 2, int(torch.randint(5, 90, (1,), generator=g)), int(torch.randint(2, 17, (1,), generator=g))
        t = int(torch.randint(1, s + 1, (1,), generator=g))
        offset = s - t
        pad = torch.randint(0, s // 2 + 1, (b,), generator=g)
        valid = torch.arange(s)[None] >= pad[:, None]
        cuts = torch.sort(torch.randint(0, s, (b, 3), generator=g)).values
        docs = (torch.arange(s)[None, :, None] >= cuts[:, None, :]).sum(-1)
        spec = MaskSpec(window=[None, 3, 7][trial % 3], chunk=[None, 4][trial % 2],
                        documents=docs if trial % 4 == 0 else None, kv_valid=valid if trial % 5 else None,
                        slot_pos=(valid.long().cumsum(-1) - 1).clamp(min=0) if trial % 2 else None, q_offset=offset)
        dense = build_mask(spec_fn(spec), batch=b, q_len=t, kv_len=s, q_offset=offset)
        want, got = block_states(dense, size), spec_states(spec, b, t, s, offset, size)
        # from the bounds, a block the parts hide only together may count as partial: never the reverse
        assert torch.equal(got.full, want.full & got.full) and not (want.partial & ~got.partial).any()
        assert not (got.full & ~want.full).any() and not ((got.full | got.partial) < (want.full | want.partial)).any()
        if spec.documents is None and spec.chunk is None:
            assert torch.equal(got.full, want.full) and torch.equal(got.partial, want.partial), trial


@pytest.mark.slow
def test_inspect_mask_check_passes_under_flex(capfd, model_dir):
    from helpers import LONG, SHORT, run

    code, out, err = run(capfd, "inspect-mask", "-m", model_dir("mistral-window"), LONG, SHORT, "--check",
                         "--attn", "flex")
    assert code == 0, err
    assert "behavioural (flex)" in out and "0 failed" in out
