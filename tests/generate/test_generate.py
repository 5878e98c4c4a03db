"""Generation: token-for-token parity with transformers, cache == no cache, batch ==
alone, seeded sampling, EOS, context limits."""

from __future__ import annotations

import pytest

from attncli.errors import BadInputError
from attncli.generate.loop import Generation, generate
from attncli.generate.sampling import Sampling
from hf_factory import VARIANTS, hf_greedy

PROMPT = [5, 17, 42, 9, 77, 31]  # 6 tokens: with 10 new ones, past the 4-token Mistral window
NEW = 10


def run(model, prompts, **kw) -> Generation:
    gen = generate(model, prompts, **kw)
    for _ in gen:
        pass
    return gen


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no-cache"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_greedy_tokens_equal_transformers(loaded, name, use_cache):
    lm, ref = loaded(name)
    want = hf_greedy(ref, [PROMPT], NEW, use_cache)
    got = run(lm.model, [PROMPT], max_new_tokens=NEW, use_cache=use_cache)
    assert [got.rows[0].tokens] == want
    assert got.rows[0].finish_reason == "length"


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_cached_equals_uncached(loaded, name, backend):
    lm, _ = loaded(name)
    a = run(lm.model, [PROMPT], max_new_tokens=NEW, use_cache=True, backend=backend)
    b = run(lm.model, [PROMPT], max_new_tokens=NEW, use_cache=False, backend=backend)
    assert a.rows[0].tokens == b.rows[0].tokens


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no-cache"])
@pytest.mark.parametrize("name", ["gpt2", "llama", "mistral-window", "qwen2-sliding-layers", "olmo2", "gemma2",
                                  "gemma3", "pythia", "phi3", "smollm3"])
def test_batched_rows_equal_each_prompt_alone(loaded, name, use_cache):
    lm, ref = loaded(name)
    prompts = [[7, 8], PROMPT + [11, 12, 13], [99, 3, 4, 60]]  # 2, 9 and 4 tokens
    batch = run(lm.model, prompts, max_new_tokens=NEW, use_cache=use_cache, pad_token_id=1)
    for p, row in zip(prompts, batch.rows):
        alone = run(lm.model, [p], max_new_tokens=NEW, use_cache=use_cache)
        assert row.tokens == alone.rows[0].tokens
    # and the batch equals transformers' batched generate on the same left padding
    assert [r.tokens for r in batch.rows] == hf_greedy(ref, prompts, NEW, use_cache, pad_id=1)


def test_seeded_sampling_is_reproducible(loaded):
    lm, _ = loaded("llama")
    s = Sampling(temperature=1.0, top_k=50, top_p=0.95, seed=1234)
    a = run(lm.model, [PROMPT], max_new_tokens=20, sampling=s)
    b = run(lm.model, [PROMPT], max_new_tokens=20, sampling=s)
    c = run(lm.model, [PROMPT], max_new_tokens=20, sampling=Sampling(temperature=1.0, seed=99))
    assert a.rows[0].tokens == b.rows[0].tokens != c.rows[0].tokens
    assert a.stats.seed == 1234
    fresh = run(lm.model, [PROMPT], max_new_tokens=2, sampling=Sampling(temperature=1.0))
    assert isinstance(fresh.stats.seed, int)  # reported, so the run can be repeated
    assert run(lm.model, [PROMPT], max_new_tokens=2).stats.seed is None  # greedy: no seed


def test_eos_stops_a_row_and_the_others_go_on(loaded):
    lm, _ = loaded("llama")
    prompts = [PROMPT, [7, 8, 9]]
    free = run(lm.model, prompts, max_new_tokens=NEW)
    eos = free.rows[0].tokens[3]  # the 4th greedy token of row 0 becomes "end of text"
    first = free.rows[0].tokens.index(eos)
    gen = run(lm.model, prompts, max_new_tokens=NEW, eos_token_ids=[eos])
    row0, row1 = gen.rows
    assert row0.tokens == free.rows[0].tokens[: first + 1] and row0.finish_reason == "eos"
    if eos not in free.rows[1].tokens:
        assert row1.tokens == free.rows[1].tokens and row1.finish_reason == "length"
    assert gen.stats.new_tokens == len(row0.tokens) + len(row1.tokens)


def test_all_rows_at_eos_end_the_run_early(loaded):
    lm, _ = loaded("llama")
    free = run(lm.model, [PROMPT], max_new_tokens=NEW)
    gen = run(lm.model, [PROMPT], max_new_tokens=NEW, eos_token_ids=[free.rows[0].tokens[0]])
    assert gen.rows[0].tokens == free.rows[0].tokens[:1] and gen.rows[0].finish_reason == "eos"


def test_steps_report_none_for_finished_rows(loaded):
    lm, _ = loaded("llama")
    free = run(lm.model, [PROMPT, [7, 8, 9]], max_new_tokens=4)
    eos = free.rows[0].tokens[0]
    steps = list(generate(lm.model, [PROMPT, [7, 8, 9]], max_new_tokens=4, eos_token_ids=[eos]))
    assert steps[0].tokens[0] == eos
    assert all(s.tokens[0] is None for s in steps[1:])


def test_context_limit_refused_before_any_work(loaded):
    lm, _ = loaded("llama")  # context 64
    with pytest.raises(BadInputError, match=r"prompt \(6 tokens\) \+ --max-new-tokens \(59\) = 65 exceeds .* 64"):
        Generation(lm.model, [PROMPT], max_new_tokens=59)
    Generation(lm.model, [PROMPT], max_new_tokens=58)  # exactly the context: fine
    gpt2, _ = loaded("gpt2")
    with pytest.raises(BadInputError, match="exceeds"):
        Generation(gpt2.model, [PROMPT], max_new_tokens=100)


def test_windowed_model_may_run_past_its_context(loaded):
    lm, _ = loaded("mistral-window")  # every layer windowed: attends 4 keys at most
    gen = run(lm.model, [PROMPT], max_new_tokens=70)
    assert len(gen.rows[0].tokens) == 70
    assert run(lm.model, [PROMPT], max_new_tokens=70, use_cache=False).rows[0].tokens == gen.rows[0].tokens


@pytest.mark.parametrize("bad, words", [
    (dict(max_new_tokens=0), "max-new-tokens must be >= 1"),
    (dict(prompts=[[]]), "at least one token"),
    (dict(prompts=[]), "at least one token"),
])
def test_bad_generation_options(loaded, bad, words):
    lm, _ = loaded("llama")
    kw = {"prompts": [PROMPT], "max_new_tokens": 4, **bad}
    with pytest.raises(BadInputError, match=words):
        Generation(lm.model, kw.pop("prompts"), **kw)


def test_stats_are_consistent(loaded):
    lm, _ = loaded("llama")
    gen = run(lm.model, [PROMPT, [1, 2]], max_new_tokens=8)
    st = gen.stats
    assert st.prompt_tokens == 8 and st.new_tokens == 16
    assert 0 < st.ttft_s <= st.total_s and st.decode_s >= 0
    assert st.tokens_per_s == pytest.approx(14 / st.decode_s)
    assert st.kv_cache_bytes == gen.cache.nbytes == 2 * 2 * 2 * 2 * (6 + 8) * 8 * 4  # layers, K/V, B, Hkv, S, D, fp32
    assert st.peak_memory_bytes >= 0 and not st.interrupted
    nocache = run(lm.model, [PROMPT], max_new_tokens=3, use_cache=False).stats
    assert nocache.kv_cache_bytes == 0


def test_cache_is_written_in_place_not_reallocated(loaded):
    lm, _ = loaded("llama")
    gen = generate(lm.model, [PROMPT], max_new_tokens=6)
    it = iter(gen)
    next(it)
    ptrs = [t.data_ptr() for t in gen.cache.k]
    for _ in it:
        pass
    assert [t.data_ptr() for t in gen.cache.k] == ptrs and gen.cache.length == len(PROMPT) + 5
    assert gen.cache.k[0].shape[2] == len(PROMPT) + 6  # sized prompt + max_new_tokens


def test_prompt_ids_outside_the_vocabulary_are_refused(loaded):
    from attncli.errors import BadInputError

    lm, _ = loaded("llama")
    v = lm.config.vocab_size
    with pytest.raises(BadInputError, match=rf"token id {v} in prompt 2 is outside the model's vocabulary \(0..{v - 1}\)"):
        generate(lm.model, [[1, 2], [3, v]], max_new_tokens=2)
    with pytest.raises(BadInputError, match="token id -1 in the prompt"):
        generate(lm.model, [[-1, 2]], max_new_tokens=2)


@pytest.mark.parametrize("backend, padded, want", [
    ("sdpa", False, {"prefill": "sdpa/flash", "decode": "sdpa/flash"}),  # torch's CPU choice for both
    ("sdpa", True, {"prefill": "sdpa/flash", "decode": "sdpa/flash"}),
    ("eager", False, {"prefill": "eager", "decode": "eager"}),
])
def test_stats_name_the_attention_kernel_that_ran(loaded, backend, padded, want):
    lm, _ = loaded("llama")
    prompts = [[5, 17, 42], [7]] if padded else [[5, 17, 42]]
    gen = generate(lm.model, prompts, max_new_tokens=3, backend=backend)
    list(gen)
    assert gen.stats.attn_kernels == want
    assert not lm.model.kernels.active  # recording stops with the call


def test_kernel_names_follow_sdpas_own_choice(loaded, monkeypatch):
    """The name is SDPA's per-call choice, asked of torch, not assumed from the backend."""
    import torch

    lm, _ = loaded("gemma2")  # soft-capped scores: sdpa runs the eager math there
    gen = generate(lm.model, [[5, 17, 42]], max_new_tokens=2)
    list(gen)
    assert gen.stats.attn_kernels == {"prefill": "eager", "decode": "eager"}
    lm, _ = loaded("llama")
    monkeypatch.setattr(torch, "_fused_sdp_choice", lambda *a, **k: 2)
    gen = generate(lm.model, [[5, 17, 42]], max_new_tokens=2)
    list(gen)
    assert gen.stats.attn_kernels == {"prefill": "sdpa/efficient", "decode": "sdpa/efficient"}
